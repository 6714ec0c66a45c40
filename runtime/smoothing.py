"""Exponential smoothing of expression vectors across video frames."""
from __future__ import annotations

import numpy as np

from .boxes import match_boxes


class LinearExponentialSmoothing:
    """`v = rate * v_now + (1 - rate) * v_prev` for each face of the previous frame seen again: the same `track_id`
    when the results carry one (a stream's: a new track, e.g. after a scene cut, starts fresh), else the face that
    overlaps it (IoU > 0.5), one-to-one. Unmatched faces start fresh; only the last frame is kept.

    skip_unreliable: a face flagged unreliable (`reliable: False`, `runtime.quality`) that was seen before keeps its
        previous smoothed vector and label, so a face turned away or blurred for a moment does not drag its track's
        label (`fer-camera --min-quality`)."""

    def __init__(self, rate: float = 0.3, iou_threshold: float = 0.5, skip_unreliable: bool = False):
        if not 0 < rate <= 1:
            raise ValueError(f"smoothing rate must be in (0, 1], got {rate}")
        self.rate, self.iou_threshold, self.skip_unreliable = rate, iou_threshold, skip_unreliable
        self._previous: list[dict] = []

    def reset(self) -> None:
        self._previous = []

    def __call__(self, results: list[dict]) -> list[dict]:
        """Smooth `results` (the classifier's dicts) in place and return them."""
        matches = _same_ids(self._previous, results) if results and all("track_id" in r for r in results) \
            else match_boxes([r["box"] for r in self._previous], [r["box"] for r in results], self.iou_threshold)
        for ci, pi in matches.items():
            rate = 0.0 if self.skip_unreliable and results[ci].get("reliable") is False else self.rate
            vector = rate * results[ci]["vector"] + (1 - rate) * self._previous[pi]["vector"]
            results[ci]["vector"] = vector.astype(np.float32)
            results[ci]["result"] = int(np.argmax(vector))
            results[ci]["probability"] = float(vector[results[ci]["result"]])
        self._previous = [{"box": r["box"], "vector": r["vector"], "track_id": r.get("track_id")} for r in results]
        return results


def _same_ids(previous: list[dict], current: list[dict]) -> dict[int, int]:
    """{current index: previous index} for the faces with the same track_id."""
    where = {r["track_id"]: i for i, r in enumerate(previous) if r.get("track_id") is not None}
    return {i: where[r["track_id"]] for i, r in enumerate(current) if r["track_id"] in where}
