"""Solvers: a camera, a video file or a batch of images run through the per-frame pipeline
(`runtime.pipeline.FramePipeline`)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .classifier import ExpressionClassifier, check_device
from .image import check_image
from .pipeline import FramePipeline
from .sources import RECONNECT_S, FileFrames, LiveFrames, SourceSpec, open_frames, parse_source
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
    """Frames from a camera, a network stream, the Pi Camera Module or a video file (`runtime.sources`), each
    solved into (results, frame) by `get_solved_frame()` or by iterating; also a context manager.

    detect_every: the detector runs on the whole frame every N frames and at scene cuts, and known
        faces are followed in between (`runtime.tracking.IntervalDetector`); 1 runs it on every frame.
    smoother: smoothing across frames (e.g. `LinearExponentialSmoothing(0.3)`); by default the
        classifier's own `smoother`, if it has one (the seed's API).
    fps: the seed's third argument, the frame step: `get_solved_frame()` solves every fps-th frame of the source
        (1, the default: every frame); the frames in between are read and dropped.
    min_quality: the quality from which a face is flagged `reliable` (`runtime.quality`; default RELIABLE_QUALITY).
    Each result carries a `track_id`: one person, new at a scene cut. `start()` forgets the faces, ids and
    smoothing state of the previous stream.
    """

    def __init__(self, detector, classifier: ExpressionClassifier, fps: int = 1, *,
                 detect_every: int = DEFAULT_DETECT_EVERY, smoother: Callable[[list[dict]], list[dict]] | None = None,
                 min_quality: float | None = None):
        if not isinstance(fps, int) or isinstance(fps, bool) or fps < 1:
            raise ValueError(f"fps (the frame step: every fps-th frame is solved) must be an integer >= 1, got {fps!r}")
        self.step = fps
        self.pipeline = FramePipeline(tracked(detector, detect_every), classifier,
                                      smoother if smoother is not None else classifier.smoother, track_ids=True,
                                      min_quality=min_quality)
        self.frames: FileFrames | LiveFrames | None = None
        self.source: SourceSpec | None = None
        self.timestamp: float | None = None  # seconds from the start of the stream to the last frame
        self.read_seconds = 0.0  # time spent waiting for and decoding frames
        self._options: dict = {}

    def start(self, source: int | str | os.PathLike | SourceSpec, size: tuple[int, int] | None = None,
              fps: float | None = None, reconnect_s: float = RECONNECT_S,
              notify: Callable[[str], None] | None = None) -> "StreamSolver":
        """Open `source`: a camera index, "/dev/videoN", an rtsp/rtsps/http/https URL, "picamera[:N]" or a video
        file. `size` (width, height) and `fps` are asked of a camera; a live source that stops delivering is
        reopened for up to `reconnect_s` seconds, each attempt told to `notify`. SourceError (a RuntimeError) or
        FileNotFoundError when it cannot be opened."""
        self.close()
        spec = source if isinstance(source, SourceSpec) else \
            SourceSpec("file", str(source), str(source)) if isinstance(source, Path) else parse_source(source)
        self.frames = open_frames(spec, size, fps, reconnect_s, notify)
        self.source, self.timestamp = spec, None
        self._options = {"size": size, "fps": fps, "reconnect_s": reconnect_s, "notify": notify}
        self.pipeline.reset()
        return self

    def restart(self) -> "StreamSolver":
        """Open the same source again with the same options (a video played again from its start)."""
        if self.source is None:
            raise RuntimeError("call start() before restart()")
        return self.start(self.source, **self._options)

    @property
    def fps(self) -> float:
        """The stream's frame rate as the source states it (0.0 when it does not say)."""
        return self.frames.fps if self.frames is not None else 0.0

    def get_solved_frame(self) -> tuple[list[dict], np.ndarray | None]:
        """(results, frame); ([], None) at the end of a video. A live source that stopped delivering frames and did
        not come back raises SourceLost (a RuntimeError)."""
        if self.frames is None:
            raise RuntimeError("call start() before reading frames")
        started = time.perf_counter()
        for _ in range(self.step):  # the frames between two solved ones are dropped
            got = self.frames.read()
            if got is None:
                break
        self.read_seconds += time.perf_counter() - started
        if got is None:
            return [], None
        frame, self.timestamp = got
        return self.pipeline(frame), frame

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()
            self.frames = None

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
    """A live camera: `start(cam_id)` (an index, "/dev/videoN", a stream URL or "picamera"), then
    `get_solved_frame()` or iterate."""

    def start(self, cam_id: int | str = 0, **options) -> "CameraSolver":
        return super().start(cam_id, **options)


class VideoSolver(StreamSolver):
    """A video file: `start(path)`; `get_solved_frame()` returns ([], None) at its end."""

    def start(self, path: str | os.PathLike, **options) -> "VideoSolver":
        return super().start(Path(path), **options)


class BatchSolver(_Solver):
    """Independent images (photos of any size: `runtime.photos`), the largest face of each.

    `solve([(index, frame), ...])` returns {"Vector", "Class", "Boxes", "Exist", "Index"}. An image
    without a face gets an all-zero Vector, Class "" and Boxes [0, 0, 0, 0], Exist False. The faces of
    each chunk of `batch_size` images are classified in one call. The seed's signature: `device` ("cpu": the runtime
    runs on the CPU only), `label` (the seed's label table, as `ExpressionClassifier`'s express_table: the classes
    reported and their names; default the classifier's). `rotations` (keyword): look for faces in a photo turned by
    90, 180 and 270 degrees when none is found upright, and check each face's orientation.
    """

    def __init__(self, detector, classifier: ExpressionClassifier, device="cpu", label=None, batch_size: int = 128,
                 *, rotations: bool = True):
        check_device(device)
        if label is not None:  # the seed's label table: the classes reported and their names
            classifier = classifier.with_table(label)
        self.pipeline = FramePipeline(detector, classifier, largest_only=True, photos=True, rotations=rotations)
        self.set_batch_size(batch_size)

    def set_batch_size(self, batch_size: int) -> None:
        """The seed's call: how many images' faces go to the classifier in one call."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
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
