"""Cheaper detection for video: a full-frame detection every N frames; in between, each known face
is looked for only in a small region around its last box (a local re-detection, a fraction of the
cost). A face not found there is not reported but is searched for again, around its last box, on
the next frames until the next full detection."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classifier import widen_box
from .detectors import NO_BOXES
from .smoothing import box_iou


@dataclass
class Track:
    box: np.ndarray
    missed: int = 0


class IntervalDetector:
    """Wraps any detector with the `detect(frame) -> [K, 4]` contract."""

    def __init__(self, detector, every: int = 5, search_margin: float = 0.5):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.detector, self.every, self.search_margin = detector, every, search_margin
        self.reset()

    def reset(self) -> None:
        self.tracks: list[Track] = []
        self.since_full: int | None = None

    def _search(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """The face nearest `box` inside the region around it, or None when there is none."""
        x, y, w, h = widen_box(box, self.search_margin, frame.shape)
        if w == 0 or h == 0:
            return None
        found = self.detector.detect(frame[y:y + h, x:x + w])
        if len(found) == 0:
            return None
        found = found + np.array([x, y, 0, 0], dtype=found.dtype)
        return found[int(np.argmax([box_iou(f, box) for f in found]))]

    def detect(self, frame: np.ndarray) -> np.ndarray:
        if self.since_full is None or self.since_full + 1 >= self.every:
            boxes = self.detector.detect(frame)
            self.tracks, self.since_full = [Track(box) for box in boxes], 0
            return boxes
        self.since_full += 1
        for track in self.tracks:
            moved = self._search(frame, track.box)
            if moved is None:
                track.missed += 1
            else:
                track.box, track.missed = moved, 0
        found = [t.box for t in self.tracks if t.missed == 0]
        return np.array(found, dtype=np.int32).reshape(-1, 4) if found else NO_BOXES.copy()
