"""ONNX expression classifier: face crops in, class probabilities out.

Everything the model needs (labels, input size, channels, mean/std, face margin) is read from the ONNX
file's metadata (`runtime.metadata.ModelMetadata`), so a retrained model needs no code change.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnxruntime as ort

from .align import face_crop
from .image import preprocess
from .metadata import ModelError, ModelMetadata
from .pipeline import FramePipeline

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "ckpt" / "ferplus_mobilenetv3_large075_72px.onnx"
# the shipped variants by name, usable from any working directory (`--model int8`)
SHIPPED_MODELS = {"fp32": DEFAULT_MODEL, "int8": DEFAULT_MODEL.with_name(DEFAULT_MODEL.stem + ".int8.onnx")}

__all__ = ["DEFAULT_MODEL", "SHIPPED_MODELS", "ExpressionClassifier", "ModelError"]


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


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class ExpressionClassifier:
    """An exported expression model: `predict(faces)` -> probabilities, `labels` names their columns.

    `model_path`: an ONNX file, or "fp32" / "int8" for the shipped models (default: fp32).

    `smoother` is the seed's way to smooth video (`VideoSolver(detector, ExpressionClassifier(smoother=...))`);
    the solvers use it when they are given none of their own.
    """

    def __init__(self, model_path: str | os.PathLike | None = None,
                 smoother: Callable[[list[dict]], list[dict]] | None = None, threads: int | None = None):
        path = SHIPPED_MODELS.get(str(model_path), Path(model_path)) if model_path else DEFAULT_MODEL
        if not path.is_file():
            raise ModelError(f"model not found: {path}")
        self.path, self.smoother = path, smoother
        self.session = _session(path, threads)
        self.metadata = ModelMetadata.from_props(self.session.get_modelmeta().custom_metadata_map, path)
        self.labels: list[str] = list(self.metadata.labels)
        self._input_name = self.session.get_inputs()[0].name
        self._buffer: np.ndarray | None = None

    @property
    def express_table(self) -> list[str]:
        """The seed's name for `labels`."""
        return self.labels

    def predict(self, faces: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities [N, classes] (rows sum to 1) for face crops (gray, BGR or BGRA, any size), in one
        onnxruntime call."""
        if len(faces) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        for i, face in enumerate(faces):
            if not isinstance(face, np.ndarray) or face.size == 0 or face.ndim not in (2, 3):
                raise ValueError(f"face {i} is not a non-empty image array")
        m = self.metadata
        self._buffer = preprocess(faces, m.input_size, m.channels, m.mean, m.std, out=self._buffer)
        logits = self.session.run(None, {self._input_name: self._buffer[:len(faces)]})[0]
        return softmax(logits.astype(np.float32))

    def crop(self, frame: np.ndarray, box, landmarks: np.ndarray | None = None) -> np.ndarray:
        """The face of `box` framed as the model wants it (`runtime.align.face_crop`): widened by the model's face
        margin and clipped to the frame (empty when the box lies outside it), turned upright when the detector's
        `landmarks` show a tilt above the model's `align_roll`."""
        m = self.metadata
        return face_crop(frame, box, m.face_margin, landmarks, m.align_roll, m.input_size)

    def detect(self, frame: np.ndarray, boxes) -> list[dict]:
        """The seed's call: one result dict per box that overlaps the frame (box, vector, result, probability,
        label), smoothed when this classifier has a smoother. It detects nothing: `boxes` come from a detector."""
        return FramePipeline(_Given(boxes), self, self.smoother)(frame)


class _Given:
    """A 'detector' that returns boxes found elsewhere (for `ExpressionClassifier.detect`)."""

    def __init__(self, boxes):
        self.boxes = boxes

    def detect(self, frame: np.ndarray):
        return self.boxes
