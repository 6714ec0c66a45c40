"""Cheaper detection for video: a full-frame detection every N frames, and in between each known
face is looked for only in a small region around its last box. A face not found there triggers
a full detection at once, so faces are not lost between full detections."""
from __future__ import annotations

import numpy as np

from .classifier import widen_box
from .detectors import NO_BOXES
from .smoothing import box_iou


class IntervalDetector:
    """Wraps any detector with the `detect(frame) -> [K, 4]` contract."""

    def __init__(self, detector, every: int = 5, search_margin: float = 0.5):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.detector, self.every, self.search_margin = detector, every, search_margin
        self.reset()

    def reset(self) -> None:
        self.boxes, self.since_full = NO_BOXES.copy(), None

    def _full(self, frame: np.ndarray) -> np.ndarray:
        self.boxes, self.since_full = self.detector.detect(frame), 0
        return self.boxes

    def _follow(self, frame: np.ndarray, box) -> np.ndarray | None:
        """The face nearest `box` inside the region around it, or None when it is gone."""
        x, y, w, h = widen_box(box, self.search_margin, frame.shape)
        found = self.detector.detect(frame[y:y + h, x:x + w])
        if len(found) == 0:
            return None
        found = found + np.array([x, y, 0, 0], dtype=found.dtype)
        return found[int(np.argmax([box_iou(f, box) for f in found]))]

    def detect(self, frame: np.ndarray) -> np.ndarray:
        if self.since_full is None or self.since_full + 1 >= self.every:
            return self._full(frame)
        self.since_full += 1
        followed = []
        for box in self.boxes:
            moved = self._follow(frame, box)
            if moved is None:
                return self._full(frame)
            followed.append(moved)
        self.boxes = np.array(followed, dtype=np.int32).reshape(-1, 4)
        return self.boxes
