"""Face boxes (x, y, w, h in frame pixels): overlap, one-to-one matching, widening and the largest box."""
from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]


def box_iou(a, b) -> float:
    """Intersection over union of two x, y, w, h boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def box_overlap(a, b) -> float:
    """The share of the smaller of two x, y, w, h boxes that lies inside the other (1.0: one contains the other)."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    smaller = min(a[2] * a[3], b[2] * b[3])
    return iw * ih / smaller if smaller > 0 else 0.0


def match_boxes(previous: list, current: list, threshold: float = 0.5) -> dict[int, int]:
    """Greedy one-to-one matching by IoU: {current index: previous index} for pairs above threshold."""
    pairs = sorted(((box_iou(c, p), ci, pi) for ci, c in enumerate(current) for pi, p in enumerate(previous)),
                   reverse=True)
    matched, used = {}, set()
    for iou, ci, pi in pairs:
        if iou <= threshold:
            break
        if ci not in matched and pi not in used:
            matched[ci] = pi
            used.add(pi)
    return matched


def clip_box(box, frame_shape) -> Box:
    """The part of an x, y, w, h box that lies in the frame."""
    return widen_box(box, 0.0, frame_shape)


def widen_box(box, margin: float, frame_shape) -> Box:
    """Widen an x, y, w, h box by `margin` of its size on every side, clipped to the frame."""
    x, y, w, h = (int(v) for v in box)
    dx, dy = round(w * margin), round(h * margin)
    height, width = frame_shape[:2]
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(width, x + w + dx), min(height, y + h + dy)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def largest_box(boxes: np.ndarray) -> np.ndarray:
    """The [1, 4] largest-area box of `boxes` [K, 4] (empty stays empty)."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    if len(boxes) < 2:
        return boxes
    return boxes[[int(np.argmax(boxes[:, 2].astype(np.int64) * boxes[:, 3]))]]
