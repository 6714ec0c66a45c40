"""Face identities across the frames of a stream, for a detector that does not track (`--detect-every 1`):
`track_id`s that stay while a face overlaps its last box and change at a scene cut. A tracker
(`runtime.tracking.IntervalDetector`) numbers its own tracks the same way."""
from __future__ import annotations

import numpy as np

from .boxes import match_boxes
from .tracking import SceneCuts


class FaceIds:
    """Numbers the faces of consecutive frames: a face whose box overlaps (IoU > `threshold`) one of the previous
    frame's keeps that face's id, one-to-one; any other face, and every face after a scene cut (`SceneCuts`), gets
    the next new id (0, 1, 2, ...)."""

    def __init__(self, threshold: float = 0.3, cut_threshold: float = 20.0):
        self.threshold = threshold
        self.cuts = SceneCuts(cut_threshold)
        self.reset()

    def reset(self) -> None:
        """Forget every face (a new stream starts); ids start again at 0."""
        self.cuts.reset()
        self._previous: list[tuple] = []
        self._ids: list[int] = []
        self._next = 0

    def __call__(self, boxes: list, frame: np.ndarray | None = None) -> list[int]:
        """The ids of this frame's boxes, in order; with the `frame`, a scene cut starts every face afresh."""
        if frame is not None and self.cuts(frame):
            self._previous = []
        matched = match_boxes(self._previous, list(boxes), self.threshold)
        ids = []
        for i in range(len(boxes)):
            if i in matched:
                ids.append(self._ids[matched[i]])
            else:
                ids.append(self._next)
                self._next += 1
        self._previous, self._ids = [tuple(b) for b in boxes], ids
        return ids
