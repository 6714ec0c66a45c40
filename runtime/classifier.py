"""ONNX expression classifier: face crops in, label probabilities out.

Everything the model needs (labels, input size, channels, mean/std, face margin) is read from
the ONNX file's metadata, so a retrained model needs no code change.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import onnxruntime as ort

from .detectors import to_gray, to_rgb

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "ckpt" / "ferplus_mobilenetv3_small.onnx"
REQUIRED_METADATA = ("labels", "input_size", "channels", "mean", "std", "face_margin")


class ModelError(ValueError):
    """An ONNX file that is not a usable expression model."""


def _session(path: Path, threads: int | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0][:200]}") from None


def read_metadata(session: ort.InferenceSession, path: Path) -> dict:
    """Parse and check the model's metadata_props."""
    raw = session.get_modelmeta().custom_metadata_map
    for key in REQUIRED_METADATA:
        if key not in raw:
            raise ModelError(f"{path} lacks the metadata key {key!r}; export it with `python -m export.to_onnx`")
    meta = dict(raw)
    try:
        meta["labels"] = json.loads(raw["labels"])
        meta["mean"], meta["std"] = json.loads(raw["mean"]), json.loads(raw["std"])
        meta["input_size"], meta["channels"] = int(raw["input_size"]), int(raw["channels"])
        meta["face_margin"] = float(raw["face_margin"])
    except ValueError as exc:
        raise ModelError(f"{path} has malformed metadata: {exc}") from None
    return meta


def widen_box(box, margin: float, frame_shape) -> tuple[int, int, int, int]:
    """Widen an x, y, w, h box by `margin` of its size on every side, clipped to the frame."""
    x, y, w, h = (int(v) for v in box)
    dx, dy = round(w * margin), round(h * margin)
    height, width = frame_shape[:2]
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(width, x + w + dx), min(height, y + h + dy)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class ExpressionClassifier:
    """Classify face crops with an exported model; optional smoothing across frames."""

    def __init__(self, model_path: str | os.PathLike | None = None,
                 smoother: Callable[[list[dict]], list[dict]] | None = None, threads: int | None = None):
        path = Path(model_path) if model_path else DEFAULT_MODEL
        if not path.is_file():
            raise ModelError(f"model not found: {path}")
        self.path, self.smoother = path, smoother
        self.session = _session(path, threads)
        self.metadata = read_metadata(self.session, path)
        self.express_table: list[str] = self.metadata["labels"]
        self.input_size, self.channels = self.metadata["input_size"], self.metadata["channels"]
        self.face_margin = self.metadata["face_margin"]
        self._mean = np.float32(255) * np.asarray(self.metadata["mean"], np.float32).reshape(1, -1, 1, 1)
        self._scale = 1 / (np.float32(255) * np.asarray(self.metadata["std"], np.float32).reshape(1, -1, 1, 1))
        self._input_name = self.session.get_inputs()[0].name
        self._buffer = np.empty((0, self.channels, self.input_size, self.input_size), np.float32)

    def preprocess(self, faces: Sequence[np.ndarray]) -> np.ndarray:
        """Face images (gray, BGR or BGRA, any size) -> the model's normalised [N, C, H, W] batch.

        The returned array is a reused buffer: it is valid until the next call."""
        n, size = len(faces), self.input_size
        if self._buffer.shape[0] < n:
            self._buffer = np.empty((n, self.channels, size, size), np.float32)
        batch = self._buffer[:n]
        for i, face in enumerate(faces):
            pixels = to_gray(face) if self.channels == 1 else to_rgb(face)
            if pixels.shape[:2] != (size, size):
                pixels = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA)
            batch[i] = pixels.reshape(size, size, -1).transpose(2, 0, 1)
        batch -= self._mean
        batch *= self._scale
        return batch

    def predict(self, faces: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities [N, C] (rows sum to 1) for cropped faces, in one onnxruntime call."""
        if len(faces) == 0:
            return np.zeros((0, len(self.express_table)), np.float32)
        for i, face in enumerate(faces):
            if not isinstance(face, np.ndarray) or face.size == 0 or face.ndim not in (2, 3):
                raise ValueError(f"face {i} is not a non-empty image array")
        return self.classify(self.preprocess(faces))

    def classify(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for an already preprocessed [N, C, H, W] batch (one onnxruntime call)."""
        logits = self.session.run(None, {self._input_name: batch})[0]
        return softmax(logits.astype(np.float32))

    def crop(self, frame: np.ndarray, box) -> np.ndarray:
        """The face region of `box`, widened by the model's face margin and clipped to the frame."""
        x, y, w, h = widen_box(box, self.face_margin, frame.shape)
        return frame[y:y + h, x:x + w]

    def crop_faces(self, frame: np.ndarray, boxes) -> tuple[list[tuple[int, int, int, int]], list[np.ndarray]]:
        """(boxes, crops) for the boxes that overlap the frame; boxes entirely outside are dropped."""
        kept, crops = [], []
        for box in boxes:
            crop = self.crop(frame, box)
            if crop.size:
                kept.append(tuple(int(v) for v in box))
                crops.append(crop)
        return kept, crops

    def to_results(self, boxes, vectors: np.ndarray) -> list[dict]:
        """The seed's result dicts (box, vector, result, probability) plus the label."""
        return [{"box": box, "vector": vector, "result": int(vector.argmax()), "probability": float(vector.max()),
                 "label": self.express_table[int(vector.argmax())]} for box, vector in zip(boxes, vectors)]

    def smooth(self, results: list[dict]) -> list[dict]:
        """Apply the smoother (if any) and refresh the labels of the results it changed."""
        if self.smoother is None:
            return results
        results = self.smoother(results)
        for r in results:
            r["label"] = self.express_table[r["result"]]
        return results

    def detect(self, frame: np.ndarray, boxes) -> list[dict]:
        """One dict per box: box, vector, result, probability, label (smoothed if a smoother is set).
        Crops are widened by the face margin and clipped; boxes entirely outside the frame are skipped."""
        boxes, crops = self.crop_faces(frame, boxes)
        return self.smooth(self.to_results(boxes, self.predict(crops)))
