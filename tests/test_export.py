"""ONNX export: parity, metadata, INT8, and clear errors for bad checkpoints."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra: pip install -e '.[train]')")
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from export.to_onnx import main as export_main
from training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from training.labels import LABELS_7
from training.model import build_model

from .conftest import ROOT, write_class_folder


def test_graph_metadata_and_parity(tiny_checkpoint, exported_tiny):
    proto = onnx.load(str(exported_tiny))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["logits"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 48, 48]
    meta = {p.key: p.value for p in proto.metadata_props}
    for key in ("labels", "input_size", "channels", "mean", "std", "face_margin", "arch", "dataset", "accuracy",
                "source_commit"):
        assert key in meta
    assert json.loads(meta["labels"]) == LABELS_7 and json.loads(meta["std"]) == [0.25]
    model = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    batch = torch.randn(5, 1, 48, 48)
    got = ort.InferenceSession(str(exported_tiny)).run(None, {"input": batch.numpy()})[0]
    assert got.shape == (5, 7)
    assert np.abs(got - model(batch).detach().numpy()).max() < 1e-4


def test_int8_runs_and_agrees(tiny_checkpoint, tmp_path):
    data = write_class_folder(tmp_path / "calib", per_class=8)
    out = tmp_path / "m.onnx"
    assert export_main(["--checkpoint", str(tiny_checkpoint), "--output", str(out), "--int8",
                        "--calib", f"folder:{data}", "--calib-count", "40"]) == 0
    int8 = tmp_path / "m.int8.onnx"
    assert int8.stat().st_size < out.stat().st_size / 2
    assert {p.key for p in onnx.load(str(int8)).metadata_props} >= {"labels", "face_margin"}
    batch = np.random.default_rng(0).normal(size=(32, 1, 48, 48)).astype(np.float32)
    fp32 = ort.InferenceSession(str(out)).run(None, {"input": batch})[0]
    q = ort.InferenceSession(str(int8)).run(None, {"input": batch})[0]
    assert (fp32.argmax(1) == q.argmax(1)).mean() >= 0.7


def _run_export(*args):
    return subprocess.run([sys.executable, "-m", "export.to_onnx", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_checkpoint_missing_key(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"model": {}, "meta": {"arch": "mobilenet_v3_small", "labels": LABELS_7}}, path)
    done = _run_export("--checkpoint", str(path), "--output", str(tmp_path / "x.onnx"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "metadata lacks input_size" in done.stderr


def test_checkpoint_wrong_architecture(tiny_checkpoint, tmp_path):
    ckpt = load_checkpoint(tiny_checkpoint)
    ckpt["meta"]["arch"] = "mobilenet_v3_large"
    path = tmp_path / "wrong.pth"
    save_checkpoint(path, model_from_checkpoint(load_checkpoint(tiny_checkpoint)), ckpt["meta"])
    done = _run_export("--checkpoint", str(path), "--output", str(tmp_path / "x.onnx"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "weights do not fit arch 'mobilenet_v3_large'" in done.stderr


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    done = _run_export("--checkpoint", str(path), "--output", str(tmp_path / "x.onnx"))
    assert done.returncode == 2 and done.stderr.startswith("fer-export: error: cannot read checkpoint")
    done = _run_export("--checkpoint", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "x.onnx"))
    assert done.returncode == 2 and "checkpoint not found" in done.stderr


def test_flip_tta_graph_averages_face_and_mirror(tiny_checkpoint, tmp_path):
    out = tmp_path / "flip.onnx"
    assert export_main(["--checkpoint", str(tiny_checkpoint), "--output", str(out), "--flip-tta"]) == 0
    assert {p.key: p.value for p in onnx.load(str(out)).metadata_props}["flip_tta"] == "1"
    model = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    batch = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        expected = (model(batch).softmax(1) + model(batch.flip(3)).softmax(1)).numpy() / 2
    session = ort.InferenceSession(str(out))
    got = session.run(None, {"input": batch.numpy()})[0]
    assert got.shape == (3, 7)
    assert np.abs(np.exp(got) - expected).max() < 1e-5
    # The averaged model cannot tell a face from its mirror image.
    mirrored = session.run(None, {"input": batch.flip(3).numpy()})[0]
    assert np.abs(mirrored - got).max() < 1e-5
