"""The shipped model against its model card: accuracy on FER2013Test, INT8 agreement, real faces."""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from runtime import BatchSolver, CascadeFaceDetector, ExpressionClassifier

from .conftest import DATA, MODEL_CARD, SHIPPED_INT8, SHIPPED_PTH, ferplus_test_faces, require_torch


def card_accuracy(kind: str) -> float:
    """The FER2013Test accuracy the model card states for `kind`: 'checkpoint' (torch, one view per face), 'fp32'
    or 'int8' (the ONNX models through the runtime, with the mirror image when the graph adds it)."""
    match = re.search(rf"Test accuracy \({kind}\): \*\*([\d.]+)%\*\*", MODEL_CARD.read_text())
    assert match, f"the model card has no 'Test accuracy ({kind}): **NN.NN%**' line"
    return float(match.group(1))


def _test_subset(ferplus, labels, count):
    return ferplus_test_faces(ferplus, labels, count)


def test_checkpoint_accuracy_matches_card(ferplus):
    torch = require_torch()
    from training.checkpoint import load_checkpoint, model_from_checkpoint
    from training.transforms import ModelInput

    ckpt = load_checkpoint(SHIPPED_PTH)
    meta = ckpt["meta"]
    faces, truth = _test_subset(ferplus, meta["labels"], 500)
    to_input = ModelInput(meta["input_size"], meta["channels"], meta["mean"], meta["std"])
    with torch.no_grad():
        predicted = model_from_checkpoint(ckpt)(torch.stack([to_input(f) for f in faces])).argmax(1).numpy()
    accuracy = 100 * (predicted == truth).mean()
    assert abs(accuracy - card_accuracy("checkpoint")) <= 2.0, accuracy


@pytest.mark.parametrize("path, kind", [("onnx", "fp32"), ("int8", "int8")])
def test_runtime_predict_accuracy_matches_card(ferplus, shipped_onnx, path, kind):
    classifier = ExpressionClassifier(shipped_onnx if path == "onnx" else SHIPPED_INT8)
    faces, truth = _test_subset(ferplus, classifier.labels, 1000)  # 300 faces: +-2.3 points of noise
    probs = classifier.predict(faces)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-4)
    assert abs(100 * (probs.argmax(1) == truth).mean() - card_accuracy(kind)) <= 3.0


def test_int8_close_to_fp32(ferplus, shipped_onnx):
    """On this machine's INT8 kernels (VNNI or AVX2; the others under emulation: tests/arm64/check.py, the same
    limits on the same faces)."""
    fp32, int8 = ExpressionClassifier(shipped_onnx), ExpressionClassifier(SHIPPED_INT8)
    faces, truth = _test_subset(ferplus, fp32.labels, 1000)
    fp32_labels, int8_labels = fp32.predict(faces).argmax(1), int8.predict(faces).argmax(1)
    assert (fp32_labels == int8_labels).mean() >= 0.95
    assert 100 * ((fp32_labels == truth).mean() - (int8_labels == truth).mean()) <= 0.5
    assert SHIPPED_INT8.stat().st_size < min(shipped_onnx.stat().st_size / 2, 5e6)


def test_metadata_says_what_the_card_says(shipped_onnx):
    meta = ExpressionClassifier(shipped_onnx).metadata
    assert meta.labels == ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
    assert meta.accuracy == pytest.approx(card_accuracy("fp32"), abs=0.01)
    assert meta.dataset == "ferplus" and meta.arch in MODEL_CARD.read_text()


def test_real_portraits(shipped_onnx):
    solver = BatchSolver(CascadeFaceDetector(), ExpressionClassifier(shipped_onnx))
    frames = [(i, cv2.imread(str(DATA / name))) for i, name in enumerate(["obama-480p.jpg", "obama-1080p.jpg",
                                                                         "biden.jpg"])]
    out = json.loads(solver.solve_in_json(frames))
    assert out["Exist"] == [True, True, True]
    # Obama smiles in his official portrait; Biden's is neutral. Same label at both resolutions.
    assert out["Class"] == ["Happiness", "Happiness", "Neutral"]
    assert max(out["Vector"][0]) > 0.8
