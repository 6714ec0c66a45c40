"""Exponential smoothing of expression vectors across video frames."""
from __future__ import annotations

import numpy as np


def box_iou(a, b) -> float:
    """Intersection over union of two x, y, w, h boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


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


class LinearExponentialSmoothing:
    """`v = rate * v_now + (1 - rate) * v_prev` for each face that overlaps (IoU > 0.5) a face of
    the previous frame, one-to-one; unmatched faces start fresh. Only the last frame is kept."""

    def __init__(self, rate: float = 0.3, iou_threshold: float = 0.5):
        if not 0 < rate <= 1:
            raise ValueError(f"smoothing rate must be in (0, 1], got {rate}")
        self.rate, self.iou_threshold = rate, iou_threshold
        self._previous: list[dict] = []

    def reset(self) -> None:
        self._previous = []

    def __call__(self, results: list[dict]) -> list[dict]:
        """Smooth `results` (the classifier's dicts) in place and return them."""
        matches = match_boxes([r["box"] for r in self._previous], [r["box"] for r in results], self.iou_threshold)
        for ci, pi in matches.items():
            vector = self.rate * results[ci]["vector"] + (1 - self.rate) * self._previous[pi]["vector"]
            results[ci]["vector"] = vector.astype(np.float32)
            results[ci]["result"] = int(np.argmax(vector))
            results[ci]["probability"] = float(vector[results[ci]["result"]])
        self._previous = [{"box": r["box"], "vector": r["vector"]} for r in results]
        return results
