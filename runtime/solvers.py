"""Solvers: detector + classifier over a camera, a video file, or a batch of images."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from .classifier import ExpressionClassifier
from .tracking import DEFAULT_DETECT_EVERY, IntervalDetector


class _StreamSolver:
    """Frames from a cv2.VideoCapture, each solved into (results, frame).

    With `detect_every` > 1 (the default, 15) the detector runs on the whole frame only every N
    frames and follows the known faces in between (see `runtime.tracking.IntervalDetector`)."""

    def __init__(self, detector, classifier: ExpressionClassifier, detect_every: int = DEFAULT_DETECT_EVERY):
        if detect_every > 1 and not isinstance(detector, IntervalDetector):
            detector = IntervalDetector(detector, every=detect_every)
        self.detector, self.classifier = detector, classifier
        self.capture: cv2.VideoCapture | None = None
        self.frame_index = -1

    def _open(self, source, what: str) -> None:
        self.close()
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            capture.release()
            raise RuntimeError(f"cannot open {what}")
        self.capture, self.frame_index = capture, -1
        for stateful in (self.detector, self.classifier.smoother):
            if hasattr(stateful, "reset"):
                stateful.reset()

    def _read(self) -> np.ndarray | None:
        if self.capture is None:
            raise RuntimeError("call start() before reading frames")
        ok, frame = self.capture.read()
        return frame if ok else None

    def solve(self, frame: np.ndarray) -> list[dict]:
        self.frame_index += 1
        return self.classifier.detect(frame, self.detector.detect(frame))

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


class CameraSolver(_StreamSolver):
    """Live camera: `start(cam_id)`, then `get_solved_frame()` or iterate."""

    def start(self, cam_id: int = 0) -> "CameraSolver":
        self.cam_id = cam_id
        self._open(cam_id, f"camera {cam_id}: check that it is connected and not used by another program")
        return self

    def get_solved_frame(self) -> tuple[list[dict], np.ndarray]:
        frame = self._read()
        if frame is None:
            raise RuntimeError(f"camera {self.cam_id} stopped delivering frames")
        return self.solve(frame), frame


class VideoSolver(_StreamSolver):
    """Video file: `start(path)`; `get_solved_frame()` returns ([], None) at the end of the video."""

    def start(self, path: str | os.PathLike) -> "VideoSolver":
        if not Path(path).is_file():
            raise FileNotFoundError(f"video not found: {path}")
        self._open(str(path), f"video {path}: not a video file OpenCV can decode")
        return self

    @property
    def fps(self) -> float:
        """The video's frame rate (0.0 when the container does not say)."""
        return float(self.capture.get(cv2.CAP_PROP_FPS)) if self.capture is not None else 0.0

    def get_solved_frame(self) -> tuple[list[dict], np.ndarray | None]:
        frame = self._read()
        return ([], None) if frame is None else (self.solve(frame), frame)


def check_image(index, frame) -> None:
    """Raise ValueError naming `index` unless `frame` is a non-empty uint8 gray/BGR/BGRA image."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"image {index}: expected a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"image {index}: expected dtype uint8, got {frame.dtype}")
    if frame.size == 0 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image {index}: expected a non-empty HxW, HxWx3 or HxWx4 image, got shape {frame.shape}")


class BatchSolver:
    """Independent images, the largest face of each.

    `solve([(index, frame), ...])` returns {"Vector", "Class", "Boxes", "Exist", "Index"}. An image
    without a face gets an all-zero Vector, Class "" and Boxes [0, 0, 0, 0], Exist False.
    """

    def __init__(self, detector, classifier: ExpressionClassifier, batch_size: int = 32):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.detector, self.classifier, self.batch_size = detector, classifier, batch_size

    def _largest_face(self, frame: np.ndarray) -> tuple[int, int, int, int] | None:
        boxes = self.detector.detect(frame)
        if len(boxes) == 0:
            return None
        return tuple(int(v) for v in boxes[np.argmax(boxes[:, 2] * boxes[:, 3])])

    def solve(self, imgs: Sequence[tuple[int, np.ndarray]]) -> dict:
        if len(imgs) == 0:
            raise ValueError("solve() needs at least one (index, frame) pair")
        for item in imgs:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ValueError(f"each item must be an (index, frame) pair, got {type(item).__name__}")
            check_image(*item)
        classes = len(self.classifier.express_table)
        out = {"Vector": [], "Class": [], "Boxes": [], "Exist": [], "Index": []}
        for start in range(0, len(imgs), self.batch_size):
            chunk = imgs[start:start + self.batch_size]
            boxes = [self._largest_face(frame) for _, frame in chunk]
            crops = [self.classifier.crop(frame, box) for (_, frame), box in zip(chunk, boxes) if box]
            vectors = iter(self.classifier.predict(crops))
            for (index, _), box in zip(chunk, boxes):
                vector = next(vectors) if box else np.zeros(classes, np.float32)
                out["Vector"].append([round(float(v), 3) for v in vector])
                out["Class"].append(self.classifier.express_table[int(vector.argmax())] if box else "")
                out["Boxes"].append(list(box) if box else [0, 0, 0, 0])
                out["Exist"].append(box is not None)
                out["Index"].append(int(index))
        return out

    def solve_in_json(self, imgs: Sequence[tuple[int, np.ndarray]]) -> str:
        return json.dumps(self.solve(imgs))
