"""Face detectors with one contract: `detect(frame) -> int array [K, 4]` of x, y, w, h boxes in the
frame's own pixels, for BGR, BGRA or grayscale frames."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

NO_BOXES = np.zeros((0, 4), dtype=np.int32)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """Grayscale view of a gray, BGR or BGRA frame."""
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY)


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """BGR copy (or view) of a gray, BGR or BGRA frame."""
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR) if frame.shape[2] == 4 else frame


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """RGB copy of a gray, BGR or BGRA frame (the channel order of 3-channel models)."""
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if frame.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def _scaled_copy(image: np.ndarray, detect_width: int | None) -> tuple[np.ndarray, float]:
    """`image` shrunk to `detect_width` pixels wide (never enlarged) and the factor back to it."""
    width = image.shape[1]
    if not detect_width or width <= detect_width:
        return image, 1.0
    scale = width / detect_width
    height = max(1, round(image.shape[0] / scale))
    return cv2.resize(image, (detect_width, height), interpolation=cv2.INTER_AREA), scale


class CascadeFaceDetector:
    """OpenCV Haar-cascade face detector (frontal faces)."""

    def __init__(self, cascade_path: str | os.PathLike | None = None, scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size: tuple[int, int] = (48, 48), detect_width: int | None = None):
        path = Path(cascade_path) if cascade_path else Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        if not path.is_file():
            raise FileNotFoundError(f"Haar cascade not found: {path}")
        try:
            self.cascade = cv2.CascadeClassifier(str(path))
        except (cv2.error, SystemError):
            self.cascade = None
        if self.cascade is None or self.cascade.empty():
            raise ValueError(f"cannot read Haar cascade {path}: not an OpenCV cascade XML file")
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.min_size, self.detect_width = tuple(min_size), detect_width

    def detect(self, frame: np.ndarray) -> np.ndarray:
        small, scale = _scaled_copy(to_gray(frame), self.detect_width)
        min_size = tuple(max(1, round(s / scale)) for s in self.min_size)
        boxes = self.cascade.detectMultiScale(small, scaleFactor=self.scale_factor,
                                              minNeighbors=self.min_neighbors, minSize=min_size)
        if len(boxes) == 0:
            return NO_BOXES.copy()
        return np.round(np.asarray(boxes, dtype=np.float64) * scale).astype(np.int32)


CV2FaceDetector = CascadeFaceDetector  # the seed's name


class YuNetFaceDetector:
    """OpenCV Zoo's YuNet DNN detector through `cv2.FaceDetectorYN` (model file given by the user)."""

    def __init__(self, model_path: str | os.PathLike, score_threshold: float = 0.7,
                 detect_width: int | None = None):
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"YuNet model not found: {path}")
        try:
            self.net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold)
        except cv2.error:
            raise ValueError(f"cannot load YuNet model {path}: not a YuNet ONNX file") from None
        self.detect_width = detect_width
        self._input_size: tuple[int, int] | None = None

    def detect(self, frame: np.ndarray) -> np.ndarray:
        small, scale = _scaled_copy(to_bgr(frame), self.detect_width)
        size = (small.shape[1], small.shape[0])
        if size != self._input_size:
            self.net.setInputSize(size)
            self._input_size = size
        _, faces = self.net.detect(small)
        if faces is None or len(faces) == 0:
            return NO_BOXES.copy()
        return np.round(faces[:, :4] * scale).astype(np.int32)
