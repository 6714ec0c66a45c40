"""Exponential smoothing of expression vectors across video frames."""
from __future__ import annotations

import numpy as np

from .boxes import match_boxes


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
