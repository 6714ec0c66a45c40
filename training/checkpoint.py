"""Checkpoints: a state_dict plus the metadata that export and the runtime need.

Loaded with `torch.load(weights_only=True)`: only tensors and plain containers, never pickled code.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import torch
from torch import nn

from runtime.metadata import ModelMetadata

from .model import build_model

# The schema's fields (runtime.metadata.ModelMetadata) plus how to rebuild the network; face_margin has a default.
REQUIRED_META = ("arch", "labels", "input_size", "channels", "mean", "std", "stem_stride")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The commit of the source tree: $FER_EDGE_COMMIT when set (a copy of the tree sent to a GPU machine, whose
    own git may name another commit), else git's HEAD, else 'unknown'."""
    if os.environ.get("FER_EDGE_COMMIT"):
        return os.environ["FER_EDGE_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=cwd or Path(__file__).resolve().parent, timeout=10)
        commit = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return commit or "unknown"


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict, **extra) -> None:
    """Write atomically (a crash mid-write never leaves a truncated checkpoint); the weights on the CPU, so that
    a checkpoint trained on a GPU loads anywhere, also with a plain `torch.load`."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"model": weights, "meta": meta, **extra}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint safely and check its metadata."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "meta" not in ckpt:
        raise CheckpointError(f"{path} is not a training checkpoint of this project (needs 'model' and 'meta')")
    missing = [k for k in REQUIRED_META if k not in ckpt["meta"]]
    if missing:
        raise CheckpointError(f"{path}: metadata lacks {', '.join(missing)}")
    return ckpt


def model_metadata(ckpt: dict) -> ModelMetadata:
    """The checkpoint's metadata in the schema the exporter and the runtime share."""
    return ModelMetadata.from_dict(ckpt["meta"])


def model_from_checkpoint(ckpt: dict, path: str | os.PathLike = "checkpoint") -> nn.Module:
    """Rebuild the network a checkpoint describes and load its weights (eval mode)."""
    meta = ckpt["meta"]
    try:
        model = build_model(meta["arch"], len(meta["labels"]), meta["channels"], meta["stem_stride"],
                            width_mult=meta.get("width_mult", 1.0))
        model.load_state_dict(ckpt["model"])
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit arch {meta['arch']!r}: "
                              f"{str(exc).strip().splitlines()[0]}") from None
    return model.eval()
