"""Faces turned upright on their landmarks before they are classified.

A detector that gives five landmarks (YuNet: eyes, nose tip, mouth corners) tells how far a face is tilted: the angle
of its eye line. A model's metadata says from what tilt on it wants faces turned upright (`ModelMetadata.align_roll`,
degrees): such a face is cut out as the square of its widened box (the model's `face_margin`, the framing it was
trained on), rotated about the box's centre until the eye line is horizontal. A face tilted less is cut out as it
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


def rotated_square(frame: np.ndarray, centre: tuple[float, float], side: float, degrees: float,
                   size: int) -> np.ndarray:
    """`upright_view`'s image only."""
    return upright_view(frame, centre, side, degrees, size)[0]


def to_frame(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points [..., 2] of an `upright_view` back in the frame's coordinates (`matrix`: the view's)."""
    inverse = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
    points = np.asarray(points, np.float64)
    return points @ inverse[:, :2].T + inverse[:, 2]


def face_crop(frame: np.ndarray, box, margin: float, landmarks: np.ndarray | None = None,
              align_roll: float | None = None, size: int | None = None) -> np.ndarray:
    """The face of `box` as the model wants it: the box widened by `margin` on every side and clipped to the frame
    (a view, no copy); or, when `landmarks` show an eye line tilted more than `align_roll` degrees, the widened box's
    square turned upright, `size` pixels wide (default: the box's own width)."""
    if landmarks is not None and align_roll is not None:
        roll = roll_degrees(landmarks)
        if abs(roll) > align_roll:
            x, y, w, h = (float(v) for v in box)
            side = max(w, h) * (1 + 2 * margin)
            return rotated_square(frame, (x + w / 2, y + h / 2), side, roll, size or max(1, round(side)))
    x, y, w, h = widen_box(box, margin, frame.shape)
    return frame[y:y + h, x:x + w]
