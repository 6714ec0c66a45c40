"""The model's self-description: one schema that training checkpoints, the exporter and the runtime share.

A checkpoint stores it as a plain dict (beside training-only keys); an ONNX file as `metadata_props`
(strings, lists as JSON). `ModelMetadata.from_props` is what the runtime trusts about a model file.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Mapping

DEFAULT_FACE_MARGIN = 0.1  # crops are widened by this share of the detector's box on every side
# faces whose eye line (from a detector's landmarks) is tilted more than this many degrees are turned upright before
# they are cropped (runtime.align); chosen on FER2013Valid by `python -m benchmarks.aligned_ferplus`
DEFAULT_ALIGN_ROLL = 20.0


class ModelError(ValueError):
    """An ONNX file that is not a usable expression model."""


@dataclass(frozen=True)
class ModelMetadata:
    """What a model needs to be run: its labels and preprocessing, and where it came from.

    accuracy: FER2013Test accuracy in percent of the graph as exported (None when not measured).
    flip_tta: the graph averages each face with its mirror image.
    temperature: the model's logits are divided by it before the softmax, so that a probability of 0.8 is right about
        80% of the time (fitted on a validation split by `python -m export.calibrate`; 1.0: not calibrated).
    face_margin, align_roll: the framing the model expects (`runtime.align.face_crop`): the detector's box widened by
        `face_margin` on every side, turned upright when its landmarks show a tilt above `align_roll` degrees
        (None: never turned; a model file exported before this key existed).
    """
    labels: list[str]
    input_size: int
    channels: int
    mean: list[float]
    std: list[float]
    face_margin: float = DEFAULT_FACE_MARGIN
    align_roll: float | None = DEFAULT_ALIGN_ROLL
    arch: str = "unknown"
    dataset: str = "unknown"
    accuracy: float | None = None
    flip_tta: bool = False
    temperature: float = 1.0
    source_commit: str = "unknown"
    extra: dict = field(default_factory=dict, compare=False)  # training-only keys of a checkpoint

    REQUIRED = ("labels", "input_size", "channels", "mean", "std", "face_margin")

    @classmethod
    def from_dict(cls, meta: Mapping) -> "ModelMetadata":
        """From a checkpoint's metadata dict; keys that are not fields go to `extra`."""
        names = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in meta.items() if k in names},
                   extra={k: v for k, v in meta.items() if k not in names})

    def to_dict(self) -> dict:
        """The checkpoint form: every field, with `extra` merged in."""
        out = asdict(self)
        return {**out.pop("extra"), **out}

    def to_props(self) -> dict[str, str]:
        """The ONNX metadata_props (lists as JSON, numbers as text)."""
        return {"labels": json.dumps(list(self.labels)), "input_size": str(self.input_size),
                "channels": str(self.channels), "mean": json.dumps(list(self.mean)), "std": json.dumps(list(self.std)),
                "face_margin": str(self.face_margin),
                "align_roll": "none" if self.align_roll is None else str(self.align_roll),
                "arch": self.arch, "dataset": self.dataset,
                "accuracy": "unknown" if self.accuracy is None else str(self.accuracy),
                "flip_tta": str(int(self.flip_tta)), "temperature": str(self.temperature),
                "source_commit": self.source_commit}

    @classmethod
    def from_props(cls, raw: Mapping[str, str], source: object = "model") -> "ModelMetadata":
        """Parse and check an ONNX model's metadata_props; ModelError names what is missing or malformed."""
        for key in cls.REQUIRED:
            if key not in raw:
                raise ModelError(f"{source} lacks the metadata key {key!r}; export it with `python -m export.to_onnx`")
        try:
            meta = cls(labels=json.loads(raw["labels"]), input_size=int(raw["input_size"]),
                       channels=int(raw["channels"]), mean=json.loads(raw["mean"]), std=json.loads(raw["std"]),
                       face_margin=float(raw["face_margin"]),
                       align_roll=None if raw.get("align_roll", "none") == "none" else float(raw["align_roll"]),
                       arch=raw.get("arch", "unknown"),
                       dataset=raw.get("dataset", "unknown"),
                       accuracy=None if raw.get("accuracy", "unknown") == "unknown" else float(raw["accuracy"]),
                       flip_tta=raw.get("flip_tta", "0") == "1", temperature=float(raw.get("temperature", "1.0")),
                       source_commit=raw.get("source_commit", "unknown"))
        except ValueError as exc:
            raise ModelError(f"{source} has malformed metadata: {exc}") from None
        if not (isinstance(meta.labels, list) and meta.labels and all(isinstance(x, str) for x in meta.labels)):
            raise ModelError(f"{source} has malformed metadata: labels must be a non-empty list of names")
        if meta.channels not in (1, 3) or len(meta.mean) != meta.channels or len(meta.std) != meta.channels:
            raise ModelError(f"{source} has malformed metadata: channels {meta.channels} with mean {meta.mean}, "
                             f"std {meta.std}")
        if not 0.05 <= meta.temperature <= 20:
            raise ModelError(f"{source} has malformed metadata: temperature {meta.temperature} (expected 0.05 to 20)")
        return meta
