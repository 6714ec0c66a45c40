"""ONNX expression classifier: face crops in, class probabilities out.

Everything the model needs (labels, input size, channels, mean/std, face margin) is read from the ONNX
file's metadata (`runtime.metadata.ModelMetadata`), so a retrained model needs no code change.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnxruntime as ort

from .align import face_crop
from .image import preprocess
from .labels import canonical_label, known_label
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


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature) over each row, in the logits' own precision."""
    logits = np.asarray(logits)
    scaled = logits / logits.dtype.type(temperature) if logits.dtype.kind == "f" else logits / temperature
    shifted = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def check_device(device) -> None:
    """The seed's `device` argument: the runtime runs on the CPU only (onnxruntime's CPU provider)."""
    if device is not None and str(device).split(":")[0].lower() != "cpu":
        raise ValueError(f"device {device!r}: this runtime runs on the CPU only (onnxruntime's CPU provider); "
                         "leave device out or give 'cpu'")


def table_names(express_table) -> list[str]:
    """The class names of the seed's label tables: a list, or a dict of index -> name with indices 0..N-1."""
    if isinstance(express_table, dict):
        if sorted(express_table) != list(range(len(express_table))):
            raise ValueError(f"express_table's keys must be 0 to {len(express_table) - 1}, "
                             f"got {sorted(express_table)}")
        return [str(express_table[i]) for i in range(len(express_table))]
    if isinstance(express_table, (list, tuple)) and all(isinstance(n, str) for n in express_table):
        return list(express_table)
    raise TypeError(f"express_table must be a list of class names or a dict of index -> name (as the seed's "
                    f"rafdb_table and affectnet_table), got {type(express_table).__name__}")


class ExpressionClassifier:
    """An exported expression model: `predict(faces)` -> probabilities, `labels` names their columns.

    The seed's signature, positionally or by keyword:
    model: an ONNX file, or "fp32" / "int8" for the shipped models (default: fp32).
    express_table: the classes to report and their names, as the seed's tables (`["Neutral", "Happy", ...]` or
        `{0: "Happy", 1: "Sad", ...}`): matched to the model's labels by name with the usual synonyms (Happy /
        Happiness, Sad / Sadness, Angry / Anger), in the table's order, the probabilities renormalized over the chosen
        classes (as the seed did). A class the model lacks is a ValueError. Default: the model's own labels.
    smoother: the seed's way to smooth video (`VideoSolver(detector, ExpressionClassifier(model, table, smoother))`);
        the solvers use it when they are given none of their own.
    preprocesser: the seed's torchvision transform; the model's metadata says its preprocessing here, so only None.
    device: the seed's torch device; the runtime runs on the CPU only ("cpu" or None).
    threads: onnxruntime's intra-op threads (keyword only).
    """

    def __init__(self, model: str | os.PathLike | None = None, express_table=None,
                 smoother: Callable[[list[dict]], list[dict]] | None = None, preprocesser=None, device=None, *,
                 threads: int | None = None, model_path: str | os.PathLike | None = None):
        model = model if model is not None else model_path
        if smoother is not None and not callable(smoother):
            raise TypeError(f"smoother must be callable (e.g. LinearExponentialSmoothing(0.3)), got "
                            f"{type(smoother).__name__}")
        if preprocesser is not None:
            raise ValueError("preprocesser: the model's metadata says how faces are preprocessed "
                             "(runtime.image.preprocess); leave preprocesser out")
        check_device(device)
        path = SHIPPED_MODELS.get(str(model), Path(model)) if model else DEFAULT_MODEL
        if not path.is_file():
            raise ModelError(f"model not found: {path}")
        if path.suffix.lower() in (".pth", ".pt", ".ckpt"):
            raise ModelError(f"{path} is a training checkpoint (PyTorch); the runtime reads ONNX: export it with "
                             f"fer-export --checkpoint {path} --output {path.with_suffix('.onnx')}")
        self.path, self.smoother = path, smoother
        self.session = _session(path, threads)
        self.metadata = ModelMetadata.from_props(self.session.get_modelmeta().custom_metadata_map, path)
        self._input_name = self.session.get_inputs()[0].name
        self._buffer: np.ndarray | None = None
        self.labels: list[str] = list(self.metadata.labels)
        self._columns: list[int] | None = None  # the model's outputs reported, in order (None: all)
        if express_table is not None:
            self.labels, self._columns = self._choose(table_names(express_table))

    def _choose(self, names: list[str]) -> tuple[list[str], list[int]]:
        """The table's names and, for each, the model's output column of the same class."""
        model = {canonical_label(n) if known_label(n) else n: i for i, n in enumerate(self.metadata.labels)}
        columns = []
        for name in names:
            key = canonical_label(name) if known_label(name) else name
            if key not in model:
                raise ValueError(f"express_table names {name!r}, a class the model {self.path.name} lacks (its "
                                 f"classes: {', '.join(self.metadata.labels)})")
            columns.append(model[key])
        return names, columns

    def with_table(self, express_table) -> "ExpressionClassifier":
        """This classifier (the same model session) reporting the classes of `express_table` (see the class)."""
        other = copy.copy(self)
        other._buffer = None
        other.labels, other._columns = self._choose(table_names(express_table))
        return other

    @property
    def express_table(self) -> list[str]:
        """The seed's name for `labels`."""
        return self.labels

    def logits(self, faces: Sequence[np.ndarray]) -> np.ndarray:
        """The model's raw scores [N, model classes] for face crops (gray, BGR or BGRA, any size), in one
        onnxruntime call: every class of the model, before the temperature and the express_table."""
        for i, face in enumerate(faces):
            if not isinstance(face, np.ndarray) or face.size == 0 or face.ndim not in (2, 3):
                raise ValueError(f"face {i} is not a non-empty image array")
        m = self.metadata
        if len(faces) == 0:
            return np.zeros((0, len(m.labels)), np.float32)
        self._buffer = preprocess(faces, m.input_size, m.channels, m.mean, m.std, out=self._buffer)
        return self.session.run(None, {self._input_name: self._buffer[:len(faces)]})[0].astype(np.float32)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities [N, classes] of `labels` from raw `logits`: softmax(logits / temperature),
        the model's temperature from its metadata; renormalized over the express_table's classes, if given."""
        probabilities = softmax(np.asarray(logits, np.float32), self.metadata.temperature)
        if self._columns is None:
            return probabilities
        chosen = probabilities[:, self._columns]
        return chosen / chosen.sum(axis=1, keepdims=True)

    def predict(self, faces: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities [N, classes] (rows sum to 1, calibrated: see `probabilities`) for face crops (gray, BGR or
        BGRA, any size), in one onnxruntime call; the classes are `labels`."""
        if len(faces) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        return self.probabilities(self.logits(faces))

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
