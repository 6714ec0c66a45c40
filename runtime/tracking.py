"""Cheaper detection for video.

The face detector runs on the whole frame only every N frames, at once after a scene cut, and
when a known face has been lost for a few frames. In between, each known face is looked for in a
small region around its last box at sizes near its own (a fraction of a full pass), every
`follow_every` frames, its box carried over on the frames in between.

A face the detector misses for a while (Haar cascades flicker) is still looked for around where it
was last seen, for `keep_lost` searches, so it is found again the moment the detector sees it.

Each track is one person: it keeps its `id` while its face is found near its last box (in its search region,
or overlapping it in a full detection); a face found anywhere else, and every face after a scene cut, starts a
new track with a new id.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .boxes import box_iou, box_overlap, match_boxes, widen_box
from .detectors import NO_BOXES
from .image import to_gray

DEFAULT_DETECT_EVERY = 15
THUMBNAIL = (64, 36)  # the frame size at which scene cuts are measured


@dataclass
class Track:
    """A known face: its id, its last box and how many searches in a row have missed it."""
    id: int
    box: np.ndarray
    lost: int = 0
    score: float | None = None  # the detector's score when it last found the face (None: it gives none)
    landmarks: np.ndarray | None = None  # the detector's five landmarks when it last found the face


class SceneCuts:
    """`cuts(frame)` is True when the frame differs from the previous one as a whole (a cut, a camera switch):
    the mean absolute change of a 64x36 gray thumbnail (0-255) above `threshold` (0 turns this off)."""

    def __init__(self, threshold: float = 20.0):
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._thumbnail: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> bool:
        previous = self._thumbnail
        self._thumbnail = to_gray(cv2.resize(frame, THUMBNAIL, interpolation=cv2.INTER_AREA))
        if previous is None or not self.threshold:
            return False
        return float(cv2.absdiff(self._thumbnail, previous).mean()) > self.threshold


def tracked(detector, every: int = DEFAULT_DETECT_EVERY):
    """`detector` with full detection every `every` frames and tracking in between (an IntervalDetector);
    `every=1`, or a detector that already is one, is returned as it is."""
    if every < 1:
        raise ValueError(f"detect_every must be >= 1, got {every}")
    if every == 1 or isinstance(detector, IntervalDetector):
        return detector
    return IntervalDetector(detector, every=every)


class IntervalDetector:
    """Wraps any detector with the `detect(frame, roi=None, size_range=None) -> [K, 4]` contract.

    every: full-frame detection every N frames (1: every frame, no tracking).
    follow_every: look for the known faces every N frames, carrying their boxes in between.
    search_margin: the region searched around a known face, as a share of its size on each side (default:
        the detector's own `search_margin`, else 0.35; YuNet needs more context around a face than Haar).
    size_change: faces between size / size_change and size * size_change wide are looked for.
    keep_lost: searches in a row that may miss a face before it is forgotten.
    redetect_after: a face missed by this many searches in a row triggers a full-frame detection.
    cut_threshold: mean absolute change of a 64x36 gray thumbnail (0-255) that counts as a scene
        cut (`SceneCuts`): known faces are dropped and the whole frame searched at once (0 turns this off).
    After `detect(frame)`, `last_ids` holds the track id of each returned box (in order) and `scene_cut` says
    whether the frame was a cut.
    """

    def __init__(self, detector, every: int = DEFAULT_DETECT_EVERY, follow_every: int = 2,
                 search_margin: float | None = None, size_change: float = 1.3, keep_lost: int = 30,
                 redetect_after: int = 5, cut_threshold: float = 20.0):
        if every < 1 or follow_every < 1:
            raise ValueError(f"every and follow_every must be >= 1, got {every} and {follow_every}")
        self.detector, self.every, self.follow_every = detector, every, follow_every
        if search_margin is None:
            search_margin = getattr(detector, "search_margin", 0.35)
        self.search_margin, self.size_change = search_margin, size_change
        self.keep_lost, self.redetect_after = keep_lost, redetect_after
        self.cuts = SceneCuts(cut_threshold)
        self.reset()

    def reset(self) -> None:
        """Forget every face (a new video starts); track ids start again at 0."""
        self.tracks: list[Track] = []
        self.since_full: int | None = None
        self.cuts.reset()
        self.carried_over = False  # True when the last frame's boxes were carried over, not searched for
        self.scene_cut = False  # True when the last frame was a scene cut
        self.last_ids: list[int] = []  # the track id of each box the last detect() returned
        self._next_id = 0

    def _follow(self, frame: np.ndarray, tracks: list[Track]) -> None:
        """Look for each track's face near its last box, at sizes near its own (not another track's face)."""
        for track in tracks:
            width = int(track.box[2])
            roi = widen_box(track.box, self.search_margin, frame.shape)
            found = self.detector.detect(frame, roi=roi, size_range=(width / self.size_change,
                                                                     width * self.size_change))
            others = [t.box for t in self.tracks if t is not track and t.lost == 0]
            found = [f for f in found if not any(box_overlap(f, other) > 0.7 for other in others)]
            if len(found) == 0:
                track.lost += 1
            else:
                track.box, track.lost = found[int(np.argmax([box_iou(f, track.box) for f in found]))], 0
                track.score, track.landmarks = self._score(track.box), self._landmarks(track.box)

    def _full(self, frame: np.ndarray, cut: bool) -> None:
        """Detect on the whole frame: found faces renew the tracks they overlap or start new ones;
        the tracks it did not see are looked for as on other frames."""
        found = self.detector.detect(frame)
        seen = [(self._score(box), self._landmarks(box)) for box in found]  # before the searches below replace them
        if cut:
            self.tracks = []
        matched = match_boxes([t.box for t in self.tracks], list(found), threshold=0.3)  # found -> track
        unseen = [t for i, t in enumerate(self.tracks) if i not in matched.values()]
        self._follow(frame, unseen)
        renewed = []
        for i, box in enumerate(found):
            if i in matched:  # the same face, found again
                track = self.tracks[matched[i]]
                track.box, track.lost = box, 0
            else:
                self._next_id += 1
                track = Track(self._next_id - 1, box)
            track.score, track.landmarks = seen[i]
            renewed.append(track)
        self.tracks = renewed + unseen
        self.since_full = 0

    def _score(self, box) -> float | None:
        return getattr(self.detector, "last_scores", {}).get(tuple(int(v) for v in box))

    def _landmarks(self, box) -> np.ndarray | None:
        return getattr(self.detector, "last_landmarks", {}).get(tuple(int(v) for v in box))

    @property
    def last_landmarks(self) -> dict[tuple[int, int, int, int], np.ndarray]:
        """box -> the five landmarks where the detector last found each face of the last frame (when it gives them)."""
        return {tuple(int(v) for v in t.box): t.landmarks for t in self.tracks
                if t.lost == 0 and t.landmarks is not None}

    @property
    def last_scores(self) -> dict[tuple[int, int, int, int], float]:
        """box -> the detector's latest score for each face of the last frame (when the detector gives scores)."""
        return {tuple(int(v) for v in t.box): t.score for t in self.tracks if t.lost == 0 and t.score is not None}

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """Boxes [K, 4] of the faces seen (or carried over) in this frame."""
        cut = self.scene_cut = self.cuts(frame)
        lost_a_face = any(t.lost == self.redetect_after for t in self.tracks)
        self.carried_over = False
        if cut or lost_a_face or self.since_full is None or self.since_full + 1 >= self.every:
            self._full(frame, cut)
        else:
            self.since_full += 1
            if self.since_full % self.follow_every == 0:
                self._follow(frame, self.tracks)
            else:
                self.carried_over = True
        kept: list[Track] = []
        for track in self.tracks:  # forget faces lost too long, and a track that found another's face
            if track.lost <= self.keep_lost and not any(box_iou(k.box, track.box) > 0.5 for k in kept):
                kept.append(track)
        self.tracks = kept
        seen = [t for t in kept if t.lost == 0]
        self.last_ids = [t.id for t in seen]
        return np.array([t.box for t in seen], dtype=np.int32).reshape(-1, 4) if seen else NO_BOXES.copy()
