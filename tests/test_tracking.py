"""Region search and the video tracker (runtime.tracking) on a real face moving over a canvas."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime import CascadeFaceDetector
from runtime.boxes import box_iou, widen_box
from runtime.tracking import IntervalDetector

from .conftest import DATA


class CountingDetector:
    """Passes calls through to a detector, counting whole-frame and region searches."""

    def __init__(self, inner):
        self.inner, self.full, self.regions = inner, 0, 0

    def detect(self, frame, roi=None, size_range=None):
        if roi is None:
            self.full += 1
        else:
            self.regions += 1
        return self.inner.detect(frame, roi=roi, size_range=size_range)

    def __getattr__(self, name):  # the detector's own settings (e.g. YuNet's search_margin)
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def face_patch() -> np.ndarray:
    """The portrait's face with some surroundings, 160 px wide."""
    portrait = cv2.imread(str(DATA / "obama-480p.jpg"))
    x, y, w, h = widen_box(CascadeFaceDetector().detect(portrait)[0], 0.3, portrait.shape)
    return cv2.resize(portrait[y:y + h, x:x + w], (160, round(160 * h / w)), interpolation=cv2.INTER_AREA)


def canvas(face: np.ndarray | None, x: int, y: int, background: int = 90) -> np.ndarray:
    frame = np.full((360, 640, 3), background, np.uint8)
    if face is not None:
        frame[y:y + face.shape[0], x:x + face.shape[1]] = face
    return frame


def test_region_search_finds_the_known_face_only_there(face_patch):
    detector = CascadeFaceDetector()
    frame = canvas(face_patch, 300, 100)
    full = detector.detect(frame)
    assert len(full) == 1
    box = full[0]
    width = int(box[2])
    near = detector.detect(frame, roi=widen_box(box, 0.35, frame.shape), size_range=(width / 1.3, width * 1.3))
    assert len(near) == 1 and box_iou(near[0], box) > 0.7
    assert len(detector.detect(frame, roi=(0, 0, 250, 360))) == 0  # a region away from the face
    assert len(detector.detect(frame, roi=widen_box(box, 0.35, frame.shape), size_range=(2 * width, 3 * width))) == 0


def test_moving_face_is_followed_between_full_detections(face_patch):
    counting = CountingDetector(CascadeFaceDetector())
    tracker = IntervalDetector(counting, every=15, follow_every=2)
    reference = CascadeFaceDetector()
    for i in range(30):
        frame = canvas(face_patch, 100 + 6 * i, 60 + i)
        boxes = tracker.detect(frame)
        assert boxes.shape == (1, 4) and boxes.dtype == np.int32, f"frame {i}"
        assert box_iou(boxes[0], reference.detect(frame)[0]) >= 0.5, f"frame {i}"
    assert counting.full == 2  # frames 0 and 15; the face was followed on the frames between
    assert 10 <= counting.regions <= 16  # every second frame


def test_scene_cut_drops_faces_and_detects_at_once(face_patch):
    counting = CountingDetector(CascadeFaceDetector())
    tracker = IntervalDetector(counting, every=15)
    for _ in range(4):
        assert len(tracker.detect(canvas(face_patch, 200, 100))) == 1
    assert counting.full == 1
    boxes = tracker.detect(canvas(face_patch, 400, 150, background=230))  # a cut to another scene
    assert counting.full == 2  # at once, not at frame 15
    assert len(boxes) == 1 and abs(int(boxes[0][0]) - 400) < 60  # the new face only, none carried over
    assert len(tracker.detect(canvas(None, 0, 0))) == 0 and counting.full == 3  # a cut to an empty scene
    assert tracker.tracks == []


def test_lost_face_is_looked_for_then_forgotten(face_patch):
    counting = CountingDetector(CascadeFaceDetector())
    tracker = IntervalDetector(counting, every=1000, follow_every=1, keep_lost=6, redetect_after=3)
    assert len(tracker.detect(canvas(face_patch, 200, 100))) == 1
    empty = canvas(None, 0, 0)  # the face is gone; the frame changes too little to count as a cut
    seen = [len(tracker.detect(empty)) for _ in range(8)]
    assert seen == [0] * 8
    assert counting.full == 2  # the first frame, and once after three searches missed the face
    assert tracker.tracks == []  # forgotten after keep_lost searches
    assert len(tracker.detect(canvas(face_patch, 200, 100))) == 0  # no full detection due: not found yet
    with pytest.raises(ValueError, match="every and follow_every must be >= 1"):
        IntervalDetector(CascadeFaceDetector(), every=0)


def test_yunet_is_tracked_on_the_clip(yunet_model, media):
    """With tracking, YuNet runs on the whole frame on a fraction of the frames and keeps most faces: at least 85%
    of the faces it finds on every whole frame (IoU >= 0.4; measured: 94.5%)."""
    from benchmarks.fps import recall
    from runtime import YuNetFaceDetector

    counting = CountingDetector(YuNetFaceDetector(yunet_model))
    tracker, reference = IntervalDetector(counting), YuNetFaceDetector(yunet_model)
    assert tracker.search_margin == 0.5  # YuNet's own wider search region
    capture = cv2.VideoCapture(str(media / "short_hamilton_clip.mp4"))
    found, expected = [], []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        found.append([tuple(b) for b in tracker.detect(frame)])
        expected.append([tuple(b) for b in reference.detect(frame)])
    assert len(found) == 275 and sum(map(len, expected)) > 600
    assert recall(found, expected) >= 0.85 and counting.full <= 40


def test_carried_over_says_which_frames_were_not_searched(face_patch):
    counting = CountingDetector(CascadeFaceDetector())
    tracker = IntervalDetector(counting, every=15, follow_every=2)
    carried = []
    for i in range(20):
        calls = counting.full + counting.regions
        tracker.detect(canvas(face_patch, 100 + 6 * i, 60))
        searched = counting.full + counting.regions > calls
        assert tracker.carried_over is not searched, f"frame {i}"
        carried.append(tracker.carried_over)
    assert carried[:4] == [False, True, False, True]  # full detection, then a search every second frame
    tracker.reset()
    assert tracker.carried_over is False


def test_yunet_region_search_shrinks_the_region_to_the_face_size(yunet_model, face_patch):
    from runtime import YuNetFaceDetector

    detector = YuNetFaceDetector(yunet_model)
    frame = canvas(cv2.resize(face_patch, (320, round(320 * face_patch.shape[0] / face_patch.shape[1]))), 200, 0)
    box = detector.detect(frame)[0]
    width = int(box[2])
    roi = widen_box(box, detector.search_margin, frame.shape)
    near = detector.detect(frame, roi=roi, size_range=(width / 1.3, width * 1.3))
    assert len(near) == 1 and box_iou(near[0], box) > 0.8
    # the smallest face sought (width / 1.3) is searched for at 48 px: YuNet sees a far smaller image
    scale = (width / 1.3) / detector.region_face_width
    assert detector._input_size == (round(roi[2] / scale), round(roi[3] / scale)) and scale > 3
    detector.region_face_width = None  # full resolution
    assert box_iou(detector.detect(frame, roi=roi, size_range=(width / 1.3, width * 1.3))[0], box) > 0.8
    assert detector._input_size == (roi[2], roi[3])


def test_a_track_keeps_its_id_while_followed_and_found_again(face_patch):
    tracker = IntervalDetector(CascadeFaceDetector(), every=15, follow_every=1, redetect_after=3)
    ids = []
    for i in range(20):  # a face moving slowly across the frame: one track
        boxes = tracker.detect(canvas(face_patch, 100 + 6 * i, 60 + i))
        assert len(boxes) == 1 and len(tracker.last_ids) == 1, f"frame {i}"
        ids.append(tracker.last_ids[0])
    assert set(ids) == {0}
    empty = canvas(None, 0, 0)  # the face is gone for a few frames (too little change to be a cut) ...
    for _ in range(3):
        assert len(tracker.detect(empty)) == 0 and tracker.last_ids == []
    for i in range(6):  # ... and back where it was: the same track, found again near its last box
        boxes = tracker.detect(canvas(face_patch, 220, 80))
    assert len(boxes) == 1 and tracker.last_ids == [0]


def test_a_scene_cut_and_a_face_far_away_start_new_tracks(face_patch):
    tracker = IntervalDetector(CascadeFaceDetector(), every=15)
    for _ in range(3):
        tracker.detect(canvas(face_patch, 200, 100))
    assert tracker.last_ids == [0] and not tracker.scene_cut
    tracker.detect(canvas(face_patch, 220, 100, background=230))  # a cut: a face at almost the same place
    assert tracker.scene_cut and tracker.last_ids == [1]  # is another person: a new track
    for _ in range(3):
        tracker.detect(canvas(face_patch, 220, 100, background=230))
    assert tracker.last_ids == [1] and not tracker.scene_cut
    tracker.cuts.threshold = 0  # no cut detection: a face that jumps beyond its search region, found by the
    for _ in range(15):  # next full detection, is a new track too
        boxes = tracker.detect(canvas(face_patch, 450, 150, background=230))
    assert len(boxes) == 1 and abs(int(boxes[0][0]) - 450) < 60 and tracker.last_ids == [2]
    tracker.reset()
    tracker.detect(canvas(face_patch, 200, 100))
    assert tracker.last_ids == [0]  # a new video: ids start again


def test_a_track_never_takes_over_another_tracks_face(face_patch):
    """Two faces side by side; one of them leaves. Its track, still searching around its last box, finds the face
    that stayed (its region reaches it) but that face has its own track: the lost track is not moved onto it."""
    small = cv2.resize(face_patch, (120, round(120 * face_patch.shape[0] / face_patch.shape[1])))
    both = canvas(small, 120, 100)
    both[100:100 + small.shape[0], 250:370] = small
    tracker = IntervalDetector(CascadeFaceDetector(), every=1000, follow_every=1, keep_lost=20, redetect_after=100)
    tracker.detect(both)
    assert len(tracker.last_ids) == 2
    stayed = dict(zip(tracker.last_ids, (int(b[0]) for b in tracker.detect(both))))
    one = canvas(small, 120, 100)
    for _ in range(10):
        boxes = tracker.detect(one)
        assert len(boxes) == 1, "the face that stayed is reported once"
    kept = [i for i, x in stayed.items() if x < 200]
    assert tracker.last_ids == kept
