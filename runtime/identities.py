"""Face identities across the frames of a stream: `track_id`s that stay while a face is followed."""
from __future__ import annotations

from .boxes import match_boxes


class FaceIds:
    """Numbers the faces of consecutive frames: a face whose box overlaps (IoU > `threshold`) one of the previous
    frame's keeps that face's id, one-to-one; any other face gets the next new id (0, 1, 2, ...)."""

    def __init__(self, threshold: float = 0.3):
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        """Forget every face (a new stream starts); ids start again at 0."""
        self._previous: list[tuple] = []
        self._ids: list[int] = []
        self._next = 0

    def __call__(self, boxes: list) -> list[int]:
        """The ids of this frame's boxes, in order."""
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
