"""Solvers: a camera, a video file or a batch of images run through the per-frame pipeline
(`runtime.pipeline.FramePipeline`)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from .classifier import ExpressionClassifier
from .image import check_image
from .pipeline import FramePipeline
from .tracking import DEFAULT_DETECT_EVERY, tracked


class _Solver:
    """A solver's `pipeline`, with the seed's `detector` and `classifier` attributes."""

    pipeline: FramePipeline

    @property
    def detector(self):
        return self.pipeline.detector

    @property
    def classifier(self) -> ExpressionClassifier:
        return self.pipeline.classifier


class StreamSolver(_Solver):
    """Frames from a camera (`start(0)`) or a video file (`start("clip.mp4")`), each solved into
    (results, frame) by `get_solved_frame()` or by iterating; also a context manager.

    detect_every: the detector runs on the whole frame every N frames and at scene cuts, and known
        faces are followed in between (`runtime.tracking.IntervalDetector`); 1 runs it on every frame.
    smoother: smoothing across frames (e.g. `LinearExponentialSmoothing(0.3)`); by default the
        classifier's own `smoother`, if it has one (the seed's API).
    Each result carries a `track_id` that stays the same while a face is followed. `start()` forgets the faces,
    ids and smoothing state of the previous stream.
    """

    def __init__(self, detector, classifier: ExpressionClassifier, detect_every: int = DEFAULT_DETECT_EVERY,
                 smoother: Callable[[list[dict]], list[dict]] | None = None):
        self.pipeline = FramePipeline(tracked(detector, detect_every), classifier,
                                      smoother if smoother is not None else classifier.smoother, track_ids=True)
        self.capture: cv2.VideoCapture | None = None
        self.source: int | str | None = None

    def start(self, source: int | str | os.PathLike) -> "StreamSolver":
        """Open a camera (an int) or a video file; RuntimeError or FileNotFoundError when it cannot be."""
        self.close()
        if isinstance(source, int):
            what = f"camera {source}: check that it is connected and not used by another program"
        else:
            if not Path(source).is_file():
                raise FileNotFoundError(f"video not found: {source}")
            source, what = str(source), f"video {source}: not a video file OpenCV can decode"
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            capture.release()
            raise RuntimeError(f"cannot open {what}")
        self.capture, self.source = capture, source
        self.pipeline.reset()
        return self

    @property
    def fps(self) -> float:
        """The stream's frame rate (0.0 when it does not say)."""
        return float(self.capture.get(cv2.CAP_PROP_FPS)) if self.capture is not None else 0.0

    def get_solved_frame(self) -> tuple[list[dict], np.ndarray | None]:
        """(results, frame); ([], None) at the end of a video. A camera that stops delivering frames raises
        RuntimeError."""
        if self.capture is None:
            raise RuntimeError("call start() before reading frames")
        ok, frame = self.capture.read()
        if not ok:
            if isinstance(self.source, int):
                raise RuntimeError(f"camera {self.source} stopped delivering frames")
            return [], None
        return self.pipeline(frame), frame

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[tuple[list[dict], np.ndarray]]:
        while True:
            results, frame = self.get_solved_frame()
            if frame is None:
                return
            yield results, frame


class CameraSolver(StreamSolver):
    """A live camera: `start(cam_id)`, then `get_solved_frame()` or iterate."""

    def start(self, cam_id: int = 0) -> "CameraSolver":
        return super().start(int(cam_id))


class VideoSolver(StreamSolver):
    """A video file: `start(path)`; `get_solved_frame()` returns ([], None) at its end."""

    def start(self, path: str | os.PathLike) -> "VideoSolver":
        return super().start(Path(path))


class BatchSolver(_Solver):
    """Independent images, the largest face of each.

    `solve([(index, frame), ...])` returns {"Vector", "Class", "Boxes", "Exist", "Index"}. An image
    without a face gets an all-zero Vector, Class "" and Boxes [0, 0, 0, 0], Exist False. The faces of
    each chunk of `batch_size` images are classified in one call.
    """

    def __init__(self, detector, classifier: ExpressionClassifier, batch_size: int = 32):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.pipeline = FramePipeline(detector, classifier, largest_only=True)
        self.batch_size = batch_size

    def solve(self, imgs: Sequence[tuple[int, np.ndarray]]) -> dict:
        if len(imgs) == 0:
            raise ValueError("solve() needs at least one (index, frame) pair")
        for item in imgs:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ValueError(f"each item must be an (index, frame) pair, got {type(item).__name__}")
            check_image(item[1], f"image {item[0]}")
        empty = [0.0] * len(self.classifier.labels)
        out = {"Vector": [], "Class": [], "Boxes": [], "Exist": [], "Index": []}
        for start in range(0, len(imgs), self.batch_size):
            chunk = imgs[start:start + self.batch_size]
            for (index, _), results in zip(chunk, self.pipeline.solve_batch([frame for _, frame in chunk])):
                face = results[0] if results else None
                out["Vector"].append([round(float(v), 3) for v in face["vector"]] if face else empty)
                out["Class"].append(face["label"] if face else "")
                out["Boxes"].append(list(face["box"]) if face else [0, 0, 0, 0])
                out["Exist"].append(face is not None)
                out["Index"].append(int(index))
        return out

    def solve_in_json(self, imgs: Sequence[tuple[int, np.ndarray]]) -> str:
        return json.dumps(self.solve(imgs))
