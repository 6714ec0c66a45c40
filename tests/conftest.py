"""Shared fixtures: paths to the optional shared data and small models.

The runtime's tests need neither torch nor onnx: they use the committed `tests/data/tiny_expression.onnx`
(`tests/data/make_tiny_model.py` rebuilds it). Tests that need torch skip with a reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from runtime.classifier import SHIPPED_MODELS

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SHARED = ROOT.parent / "shared"
SHIPPED_ONNX = SHIPPED_MODELS["fp32"]  # runtime.classifier.DEFAULT_MODEL: the one name of the shipped model
SHIPPED_INT8 = SHIPPED_MODELS["int8"]
SHIPPED_PTH = SHIPPED_ONNX.with_suffix(".pth")
MODEL_CARD = ROOT / "ckpt" / "MODEL_CARD.md"
TINY_ONNX = DATA / "tiny_expression.onnx"
NEEDS_TORCH = "needs torch (the train extra: pip install -e '.[train]')"


def require_torch():
    """Skip the calling test (or module) with a reason when torch is not installed."""
    return pytest.importorskip("torch", reason=NEEDS_TORCH)


def ferplus_root() -> Path | None:
    root = Path(os.environ.get("FERPLUS_ROOT", SHARED / "datasets" / "ferplus"))
    return root if (root / "FER2013Test" / "label.csv").is_file() else None


def ferplus_test_faces(root: Path, labels: list[str], count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """`count` FER2013Test faces spread evenly over the split, and their majority labels (no torch needed)."""
    from training.datasets import load_dataset

    test = load_dataset(f"ferplus:{root}", "test", labels)
    picks = np.linspace(0, len(test) - 1, count).round().astype(int)
    return [test.read(test.items[i]) for i in picks], test.hard_labels[picks]


@pytest.fixture(scope="session")
def ferplus() -> Path:
    root = ferplus_root()
    if root is None:
        pytest.skip("FER+ data not found at ../shared/datasets/ferplus (set FERPLUS_ROOT to a copy)")
    return root


@pytest.fixture(scope="session")
def media() -> Path:
    path = SHARED / "media"
    if not (path / "two_people.jpg").is_file():
        pytest.skip("sample media not found at ../shared/media")
    return path


@pytest.fixture(scope="session")
def yunet_model() -> Path:
    """The YuNet file shipped in the package (the OpenCV Zoo's, as in ../shared/models)."""
    from runtime.models import BUNDLED

    return BUNDLED["yunet"].path


def write_class_folder(root: Path, per_class: int = 10, size: int = 48, seed: int = 0) -> Path:
    """A learnable 'plain folder' data set: each class is a bright band at its own height."""
    import cv2

    rng = np.random.default_rng(seed)
    names = ["surprised", "fear", "Disgust", "happy", "SAD", "angry", "neutral"]
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (size, size), dtype=np.uint8)
            band = k * size // 7
            image[band:band + size // 7] = 220
            cv2.imwrite(str(root / name / f"{i:03d}.png"), image)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-init 7-class checkpoint with full metadata."""
    torch = require_torch()
    from training.checkpoint import save_checkpoint
    from training.labels import LABELS_7
    from training.model import build_model

    torch.manual_seed(0)
    model = build_model("mobilenet_v3_small", 7, 1, 1)
    # Non-trivial BatchNorm statistics so that parity is tested on realistic activations.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 48, 48))
    meta = {"arch": "mobilenet_v3_small", "labels": LABELS_7, "input_size": 48, "channels": 1, "stem_stride": 1,
            "mean": [0.5], "std": [0.25], "face_margin": 0.1, "dataset": "test", "source_commit": "test"}
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(path, model.eval(), meta)
    return path


@pytest.fixture(scope="session")
def tiny_onnx() -> Path:
    """A 2 KB expression model with full metadata (committed; no torch needed)."""
    return TINY_ONNX


@pytest.fixture(scope="session")
def exported_tiny(tiny_checkpoint, tmp_path_factory) -> Path:
    """`tiny_checkpoint` through `python -m export.to_onnx`."""
    from export.to_onnx import main

    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert main(["--checkpoint", str(tiny_checkpoint), "--output", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def shipped_onnx() -> Path:
    if not SHIPPED_ONNX.is_file():
        pytest.fail(f"the shipped model {SHIPPED_ONNX} is missing")
    return SHIPPED_ONNX
