"""Faces turned upright on their landmarks before they are classified.

A detector that gives five landmarks (YuNet: eyes, nose tip, mouth corners) tells how far a face is tilted: the angle
of its eye line. A model's metadata says from what tilt on it wants faces turned upright (`ModelMetadata.align_roll`,
degrees): such a face is cut out as the rectangle a level face gets (its box widened by the model's `face_margin`,
the framing it was trained on, clipped to the frame) of the frame turned about the box's centre until the eye line
is horizontal. A face tilted less is cut out as it
is: the shipped model was trained on FER+'s own crops, tilted as they come (median 5 degrees, one in ten above 18)
and randomly turned by up to 15 degrees more, and on FER2013Valid turning faces upright only from 20 degrees on is as
accurate as never turning them, turning every face 1 point worse (`python -m benchmarks.aligned_ferplus`).
"""
from __future__ import annotations

import cv2
import numpy as np

from .boxes import widen_box


def roll_degrees(landmarks: np.ndarray) -> float:
    """The eye line's angle in degrees, -180 to 180 (image y points down: positive when the face is turned clockwise
    on the screen, 180 for an upside-down face). YuNet's order: the eye on the image's left first."""
    first, second = np.asarray(landmarks, np.float64).reshape(-1, 2)[:2]
    dx, dy = second - first
    return float(np.degrees(np.arctan2(dy, dx)))


def upright_view(frame: np.ndarray, centre: tuple[float, float], side: float, degrees: float,
                 size: int) -> tuple[np.ndarray, np.ndarray]:
    """The square of `side` pixels about `centre`, turned by `degrees` (counter-clockwise on the screen, OpenCV's
    sense), as a `size` x `size` image with the frame's channels, edges beyond the frame replicated; and the 2x3
    matrix that maps the frame's pixel coordinates into it. Only the square's own region is resampled (a large face
    is first shrunk with area interpolation, so the warp does not alias)."""
    cx, cy = centre
    half = side / np.sqrt(2) + 2  # the square's circumscribed circle, whatever the angle
    height, width = frame.shape[:2]
    x0, y0 = max(0, int(np.floor(cx - half))), max(0, int(np.floor(cy - half)))
    x1, y1 = min(width, int(np.ceil(cx + half))), min(height, int(np.ceil(cy + half)))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return np.zeros((size, size, *frame.shape[2:]), frame.dtype), np.zeros((2, 3))
    region = frame[y0:y1, x0:x1]
    to_region = np.array([[1.0, 0, -x0], [0, 1.0, -y0], [0, 0, 1]])  # frame -> region pixels
    shrink = min(1.0, 2.0 * size / side)  # keep at least twice the output's resolution, then warp
    if shrink < 1.0:
        shape = (max(1, round(region.shape[1] * shrink)), max(1, round(region.shape[0] * shrink)))
        sx, sy = shape[0] / region.shape[1], shape[1] / region.shape[0]
        region = cv2.resize(region, shape, interpolation=cv2.INTER_AREA)
        to_region = np.diag([sx, sy, 1.0]) @ to_region
    (rx, ry), scale = to_region[:2] @ (cx, cy, 1.0), size / (side * to_region[0, 0])
    turn = cv2.getRotationMatrix2D((float(rx), float(ry)), degrees, scale)
    turn[:, 2] += (size / 2 - rx, size / 2 - ry)
    out = cv2.warpAffine(region, turn, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(size, size, *frame.shape[2:]), (np.vstack([turn, (0, 0, 1)]) @ to_region)[:2]


def to_frame(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points [..., 2] of an `upright_view` back in the frame's coordinates (`matrix`: the view's)."""
    inverse = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
    points = np.asarray(points, np.float64)
    return points @ inverse[:, :2].T + inverse[:, 2]


def turned_rect(frame: np.ndarray, rect, centre: tuple[float, float], degrees: float, size: int) -> np.ndarray:
    """The rectangle `rect` (x, y, w, h) of the frame turned by `degrees` about `centre` (counter-clockwise on the
    screen, OpenCV's sense), edges beyond the frame replicated, with at most twice `size` pixels on its longer side
    (a larger face is first shrunk with area interpolation, so the warp does not alias)."""
    x, y, w, h = (float(v) for v in rect)
    cx, cy = centre
    reach = max(np.hypot(px - cx, py - cy) for px in (x, x + w) for py in (y, y + h)) + 2
    height, width = frame.shape[:2]
    x0, y0 = max(0, int(np.floor(cx - reach))), max(0, int(np.floor(cy - reach)))
    x1, y1 = min(width, int(np.ceil(cx + reach))), min(height, int(np.ceil(cy + reach)))
    region = frame[y0:y1, x0:x1]
    scale = min(1.0, 2.0 * size / max(w, h))
    if scale < 1.0:
        shape = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
        region = cv2.resize(region, shape, interpolation=cv2.INTER_AREA)
    turn = cv2.getRotationMatrix2D(((cx - x0) * scale, (cy - y0) * scale), degrees, 1.0)
    turn[:, 2] -= ((x - x0) * scale, (y - y0) * scale)
    out_size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = cv2.warpAffine(region, turn, out_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(out_size[1], out_size[0], *frame.shape[2:])


def face_crop(frame: np.ndarray, box, margin: float, landmarks: np.ndarray | None = None,
              align_roll: float | None = None, size: int | None = None) -> np.ndarray:
    """The face of `box` as the model wants it: the box widened by `margin` on every side and clipped to the frame
    (a view, no copy); or, when `landmarks` show an eye line tilted more than `align_roll` degrees, that same
    rectangle of the frame turned upright about the box's centre (`turned_rect`; `size`, default the rectangle's
    longer side, bounds its resolution). Tilted faces are thus framed as level ones are, clipped at the same edges:
    on 1000 FER2013Test faces shown as photos turned by +-30 degrees this reads 0.9-1.6 points more faces right than
    the unclipped square about the box turned upright (`benchmarks.photos`)."""
    x, y, w, h = widen_box(box, margin, frame.shape)
    if landmarks is not None and align_roll is not None and w > 0 and h > 0:
        roll = roll_degrees(landmarks)
        if abs(roll) > align_roll:
            bx, by, bw, bh = (float(v) for v in box)
            return turned_rect(frame, (x, y, w, h), (bx + bw / 2, by + bh / 2), roll, size or max(w, h))
    return frame[y:y + h, x:x + w]
