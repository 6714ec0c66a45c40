"""The one task function of `fer-batch`, the same for every engine: a `TaskRunner` (a detector and the model, loaded
once per worker) turns a task (one video, or a chunk of photos) into rows, one per face, and a summary per source.

A video goes through `VideoSolver` (frames in order, tracking and smoothing as `fer-camera` does); photos through
the photo path of `FramePipeline` (any size, EXIF orientation, turned photos), every face of each.
"""
from __future__ import annotations

import resource
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Callable

import cv2

from ..classifier import ExpressionClassifier
from ..detectors import VIDEO_DETECT_WIDTH, create_detector
from ..photos import read_photo
from ..pipeline import FramePipeline
from ..smoothing import LinearExponentialSmoothing
from ..solvers import VideoSolver
from ..sources import SourceError
from ..terminal import native_stderr, silence_opencv
from ..tracking import DEFAULT_DETECT_EVERY
from .sources import Source, Task

REPORT_EVERY = 25  # frames between two progress reports of a video


@dataclass(frozen=True)
class Settings:
    """Everything that decides a run's rows (recorded in the output folder: a rerun with other settings is refused)."""
    model: str
    detector: str = "auto"
    detector_model: str | None = None
    detect_every: int = DEFAULT_DETECT_EVERY
    smoothing: float = 0.3
    min_quality: float | None = None
    rotations: bool = True
    every: int = 1  # a video's frame step: every N-th frame is solved

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SourceResult:
    """What became of one source: "done" or "failed" (with `error`), its frames and faces, its duration (videos), its
    summary rows, and a `note` on a source done despite a damaged part (what the decoder said)."""
    source: Source
    status: str
    frames: int = 0
    faces: int = 0
    duration_s: float | None = None
    error: str | None = None
    summary: list[dict] = field(default_factory=list)
    note: str | None = None


@dataclass
class TaskOutput:
    """A finished task: the rows of its faces, what became of each of its sources, and the worker's peak RSS."""
    task: Task
    rows: list[dict]
    results: list[SourceResult]
    seconds: float
    peak_rss_mb: float


def face_row(source: str, frame: int, timestamp: float | None, result: dict, labels: list[str]) -> dict:
    """One face as a row: source, frame, timestamp, track_id, x, y, w, h, label, probability, one column per class,
    detector_score and the trust fields (quality, reliable, sharpness, yaw, pitch, roll); None where not known."""
    x, y, w, h = (int(v) for v in result["box"])
    row = {"source": source, "frame": frame, "timestamp": timestamp, "track_id": result.get("track_id"),
           "x": x, "y": y, "w": w, "h": h, "label": result["label"], "probability": float(result["probability"])}
    row.update({label: float(v) for label, v in zip(labels, result["vector"])})
    row["detector_score"] = result.get("detector_score")
    for key in ("quality", "reliable", "sharpness", "yaw", "pitch", "roll"):
        row[key] = result.get(key)
    return row


def summarize(source: Source, rows: list[dict], labels: list[str], frames: int, duration_s: float | None,
              reliable_only: bool) -> list[dict]:
    """The source's summary rows: one per track for a video (one with track_id None for a photo): its faces, first
    and last time, the label seen most and the share of its faces per label (reliable faces only with
    `reliable_only`). A source without a face gets one row with faces 0."""
    tracks: dict = defaultdict(list)
    for row in rows:
        if not reliable_only or row["reliable"] is not False:
            tracks[row["track_id"]].append(row)
    base = {"source": source.path, "kind": source.kind, "frames": frames, "duration_s": duration_s}
    if not tracks:
        return [{**base, "track_id": None, "faces": 0, "start_s": None, "end_s": None, "label": None,
                 **{f"share_{label}": None for label in labels}}]
    out = []
    for track_id, faces in sorted(tracks.items(), key=lambda item: (item[0] is None, item[0] or 0)):
        counts = Counter(r["label"] for r in faces)
        times = [r["timestamp"] for r in faces if r["timestamp"] is not None]
        out.append({**base, "track_id": track_id, "faces": len(faces), "start_s": min(times, default=None),
                    "end_s": max(times, default=None), "label": counts.most_common(1)[0][0],
                    **{f"share_{label}": round(counts[label] / len(faces), 4) for label in labels}})
    return out


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TaskRunner:
    """A worker's detector and model, loaded once; `run(task)` does one task. Errors of one source become its
    "failed" result, never an exception: the other sources go on.

    single_thread: one OpenCV and one onnxruntime thread (a pool of worker processes, one per core).
    report: told (frames, faces) as a task advances, for a progress bar over frames.
    """

    def __init__(self, settings: Settings, single_thread: bool = True,
                 report: Callable[[int, int], None] | None = None):
        silence_opencv()
        if single_thread:
            cv2.setNumThreads(1)
        self.settings, self.report = settings, report or (lambda frames, faces: None)
        self.classifier = ExpressionClassifier(settings.model, threads=1 if single_thread else None)
        self.labels = list(self.classifier.labels)
        smoother = LinearExponentialSmoothing(settings.smoothing, skip_unreliable=settings.min_quality is not None) \
            if settings.smoothing > 0 else None
        self.video = VideoSolver(create_detector(settings.detector, settings.detector_model, VIDEO_DETECT_WIDTH),
                                 self.classifier, settings.every, detect_every=settings.detect_every,
                                 smoother=smoother, min_quality=settings.min_quality)
        self.photos = FramePipeline(create_detector(settings.detector, settings.detector_model), self.classifier,
                                    photos=True, rotations=settings.rotations, min_quality=settings.min_quality)

    def run(self, task: Task) -> TaskOutput:
        started = time.perf_counter()
        rows: list[dict] = []
        results = [self._video(task.sources[0], rows)] if task.kind == "video" else \
            [self._photo(source, rows) for source in task.sources]
        return TaskOutput(task, rows, results, time.perf_counter() - started, peak_rss_mb())

    def _summarized(self, result: SourceResult, rows: list[dict]) -> SourceResult:
        result.faces = len(rows)
        result.summary = summarize(result.source, rows, self.labels, result.frames, result.duration_s,
                                   self.settings.min_quality is not None)
        return result

    def _video(self, source: Source, rows: list[dict]) -> SourceResult:
        own: list[dict] = []
        frames = reported_frames = reported_faces = read = 0
        try:
            with native_stderr(True) as said:  # the decoder's own lines, kept off the terminal
                self.video.start(source.path)
                fps = self.video.fps
                while True:
                    results, frame = self.video.get_solved_frame()
                    read = self.video.frames.index
                    if frame is None:
                        break
                    number = read - 1  # with a frame step, the frames between are read and dropped
                    timestamp = round(number / fps, 3) if fps else None
                    own.extend(face_row(source.path, number, timestamp, r, self.labels) for r in results)
                    frames += 1
                    if frames - reported_frames >= REPORT_EVERY:
                        self.report(frames - reported_frames, len(own) - reported_faces)
                        reported_frames, reported_faces = frames, len(own)
        except Exception as exc:  # noqa: BLE001 - any failure of one video is its error entry; the others go on
            return SourceResult(source, "failed", frames, error=_reason(exc))
        finally:
            self.video.close()
            self.report(frames - reported_frames, len(own) - reported_faces)
        if frames == 0:
            return SourceResult(source, "failed", error="no frame could be decoded (not a video OpenCV can read?)")
        rows.extend(own)
        duration = round(read / fps, 3) if fps else None
        result = self._summarized(SourceResult(source, "done", frames, duration_s=duration), own)
        result.note = _decoder_note(said)
        return result

    def _photo(self, source: Source, rows: list[dict]) -> SourceResult:
        try:
            with native_stderr(True) as said:
                image = read_photo(source.path)
            if image is None:
                return SourceResult(source, "failed", error="not an image file OpenCV can decode")
            own = [face_row(source.path, 0, None, r, self.labels) for r in self.photos(image)]
        except Exception as exc:  # noqa: BLE001 - one photo's failure is its error entry
            return SourceResult(source, "failed", error=_reason(exc))
        finally:
            self.report(1, 0)
        self.report(0, len(own))
        rows.extend(own)
        result = self._summarized(SourceResult(source, "done", 1), own)
        result.note = _decoder_note(said)
        return result


def _decoder_note(said: list[str]) -> str | None:
    """What a decoder said of a damaged file that could still be read, as a note (None when it said nothing)."""
    return f"the decoder says {said[0].strip()!r} (the part it could read is used)" if said else None


def _reason(exc: BaseException) -> str:
    """An exception as one line for a warning and the manifest: ours (a source that cannot be opened) as it says,
    any other with its type."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (SourceError, OSError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
