"""The per-frame pipeline: detect -> crop -> classify -> smooth -> results. Every solver, the CLI and the
speed benchmark run frames through `FramePipeline`; nothing else wires these steps.

A result is the seed's dict (a `FaceResult`, whose `to_dict()` is JSON-ready): `box` (x, y, w, h in the frame's
pixels, the part of the detector's box inside the frame), `vector` (float32 probabilities), `result` (class index),
`probability` and `label`; a stream's results also carry `track_id` (the tracker's track, else
runtime.identities.FaceIds: a new one for a new face and after a scene cut), and `detector_score` when the
detector gives one (YuNet). Every result says how far it can be trusted (`assess`): `quality` in [0, 1], `reliable`,
the crop's `sharpness` and, where the detector gives landmarks, the head pose `yaw`, `pitch`, `roll` (degrees).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .boxes import clip_box, largest_box
from .identities import FaceIds
from .photos import PhotoDetector
from .pose import head_pose
from .quality import RELIABLE_QUALITY, face_quality, sharpness

if TYPE_CHECKING:
    from .classifier import ExpressionClassifier

STAGES = ("detect", "classify", "smooth")


class FaceResult(dict):
    """One face's result: the seed's dict (its `vector` a float32 numpy array), plus `to_dict()`, the same as plain
    JSON-ready values (`json.dumps([r.to_dict() for r in pipeline(frame)])`)."""

    def to_dict(self) -> dict:
        """The result with lists, ints and floats only."""
        return {key: _plain(value) for key, value in self.items()}


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def results_for(boxes, vectors: np.ndarray, labels: Sequence[str]) -> list[FaceResult]:
    """One result per (box, probability vector)."""
    return [FaceResult(box=tuple(int(v) for v in box), vector=vector, result=int(vector.argmax()),
                       probability=float(vector.max()), label=labels[int(vector.argmax())])
            for box, vector in zip(boxes, vectors)]


def landmarks_of(detector, boxes) -> list[np.ndarray | None]:
    """The five landmarks the detector's last call gave for each of `boxes` (None where it gave none)."""
    marks = getattr(detector, "last_landmarks", None) or {}
    return [marks.get(tuple(int(v) for v in box)) for box in boxes]


def classify_boxes(classifier: "ExpressionClassifier", frames: Sequence[np.ndarray], boxes_per_frame: Sequence,
                   landmarks_per_frame: Sequence | None = None,
                   reliable_quality: float = RELIABLE_QUALITY) -> list[list[dict]]:
    """Results for the boxes of several frames, all faces in one `predict` call; each face framed by
    `classifier.crop` (turned upright on its landmarks, where given) and assessed (`assess`). A box that lies
    entirely outside its frame is dropped."""
    kept, crops, signals = [], [], []
    if landmarks_per_frame is None:
        landmarks_per_frame = [[None] * len(boxes) for boxes in boxes_per_frame]
    for frame, boxes, marks in zip(frames, boxes_per_frame, landmarks_per_frame):
        kept.append([])
        for box, points in zip(boxes, marks):
            crop = classifier.crop(frame, box, points)
            if crop.size:
                kept[-1].append(box)
                crops.append(crop)
                signals.append((crop, points, frame.shape))
    vectors = classifier.predict(crops)
    out, start = [], 0
    for boxes in kept:
        out.append(results_for(boxes, vectors[start:start + len(boxes)], classifier.labels))
        start += len(boxes)
    for r, (crop, points, shape) in zip((r for results in out for r in results), signals):
        assess(r, crop, points, shape, reliable_quality)
    return out


def assess(result: dict, crop: np.ndarray, landmarks: np.ndarray | None, frame_shape: tuple[int, ...],
           reliable_quality: float = RELIABLE_QUALITY) -> None:
    """Add to one result its head pose (`yaw`, `pitch`, `roll` in degrees, where the detector gave landmarks), the
    `sharpness` of its crop, its `quality` in [0, 1] and whether it is `reliable` (quality >= `reliable_quality`):
    `runtime.pose`, `runtime.quality`."""
    pose = head_pose(landmarks, frame_shape) if landmarks is not None else None
    if pose is not None:
        result.update(yaw=pose.yaw, pitch=pose.pitch, roll=pose.roll)
    result["sharpness"] = sharpness(crop)
    result["quality"] = face_quality(result["probability"], min(result["box"][2:]), result["sharpness"], pose)
    result["reliable"] = result["quality"] >= reliable_quality


class FramePipeline:
    """Frames in, results out: `pipeline(frame)` for a stream (smoothed when a smoother is given),
    `pipeline.solve_batch(frames)` for independent images (one classifier call for all their faces).

    detector: anything with `detect(frame) -> int [K, 4]`; wrap it in `runtime.tracking.IntervalDetector`
        to follow faces between full detections.
    smoother: a callable on one frame's results (e.g. `LinearExponentialSmoothing`), or None.
    largest_only: keep only the largest face of each frame.
    track_ids: number the faces across frames (`track_id` in each result), for streams: a tracker's own track ids
        (`IntervalDetector.last_ids`), else `FaceIds`. The smoother sees the ids, so a new track starts afresh.
    classify_every_frame: classify on every frame. By default, on a frame whose boxes the tracker carried over
        unchanged (`IntervalDetector.carried_over`: every second frame between searches), the faces keep the
        previous frame's probabilities, which halves the classifier's work on video; `--detect-every 1`
        (no tracker) classifies every frame anyway.
    photos: the frames are photos (`runtime.photos.PhotoDetector`): searched at several scales, whatever their size,
        and, with `rotations`, turned when no face is found upright. Not for video.
    min_quality: the quality from which a face is `reliable` (default `runtime.quality.RELIABLE_QUALITY`).
    `seconds` adds up the time spent in each stage (detect, classify = crop + preprocess + model, smooth).
    """

    def __init__(self, detector, classifier: "ExpressionClassifier",
                 smoother: Callable[[list[dict]], list[dict]] | None = None, largest_only: bool = False,
                 track_ids: bool = False, classify_every_frame: bool = False, photos: bool = False,
                 rotations: bool = True, min_quality: float | None = None):
        if photos and not isinstance(detector, PhotoDetector):
            detector = PhotoDetector(detector, rotations=rotations)
        self.detector, self.classifier, self.smoother = detector, classifier, smoother
        self.largest_only, self.classify_every_frame = largest_only, classify_every_frame
        self.ids = FaceIds() if track_ids else None
        self.reliable_quality = RELIABLE_QUALITY if min_quality is None else float(min_quality)
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._last: tuple[np.ndarray, list[dict]] | None = None  # the last frame's boxes and unsmoothed results

    def reset(self) -> None:
        """Forget what earlier frames said (a new video starts): tracked faces and smoothing state."""
        self._last = None
        for stateful in (self.detector, self.smoother, self.ids):
            if hasattr(stateful, "reset"):
                stateful.reset()

    def _classify(self, frame: np.ndarray, boxes: np.ndarray) -> list[dict]:
        """The unsmoothed results for `boxes`: the last frame's when the tracker carried the same boxes over."""
        carried = getattr(self.detector, "carried_over", False) and not self.classify_every_frame
        if carried and self._last is not None and np.array_equal(self._last[0], boxes):
            results = self._last[1]
        else:
            results = classify_boxes(self.classifier, [frame], [boxes], [landmarks_of(self.detector, boxes)],
                                     self.reliable_quality)[0]
        self._last = boxes, results
        return [FaceResult(r) for r in results]  # the smoother and the caller get their own dicts

    def _track_ids(self, frame: np.ndarray, boxes: np.ndarray, results: list[dict]) -> list[int]:
        """The track id of each result: the tracker's when it numbers its faces, else FaceIds'."""
        ids = getattr(self.detector, "last_ids", None)
        if ids is None:
            return self.ids([r["box"] for r in results], frame)
        by_box = {tuple(int(v) for v in box): track_id for box, track_id in zip(boxes, ids)}
        return [by_box[r["box"]] for r in results]

    def detect(self, frame: np.ndarray) -> np.ndarray:
        boxes = self.detector.detect(frame)
        return largest_box(boxes) if self.largest_only else boxes

    def __call__(self, frame: np.ndarray) -> list[dict]:
        t0 = time.perf_counter()
        boxes = self.detect(frame)
        t1 = time.perf_counter()
        results = self._classify(frame, boxes)
        if self.ids is not None:
            for r, track_id in zip(results, self._track_ids(frame, boxes, results)):
                r["track_id"] = track_id
        t2 = time.perf_counter()
        if self.smoother is not None:
            results = self.smoother(results)
            for r in results:  # the smoother may change the winning class
                r["label"] = self.classifier.labels[r["result"]]
        scores = getattr(self.detector, "last_scores", None)
        if scores:
            for r in results:
                if r["box"] in scores:
                    r["detector_score"] = scores[r["box"]]
        for r in results:  # the detector's box may reach past the frame's edge (a face cut off): its part in it
            r["box"] = clip_box(r["box"], frame.shape)
        t3 = time.perf_counter()
        for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2)):
            self.seconds[stage] += seconds
        return results

    def solve_batch(self, frames: Sequence[np.ndarray]) -> list[list[dict]]:
        """Results for independent images (no smoothing), every face in one classifier call."""
        boxes, marks = [], []
        for frame in frames:
            boxes.append(self.detect(frame))
            marks.append(landmarks_of(self.detector, boxes[-1]))
        out = classify_boxes(self.classifier, frames, boxes, marks, self.reliable_quality)
        for frame, results in zip(frames, out):
            for r in results:
                r["box"] = clip_box(r["box"], frame.shape)
        return out
