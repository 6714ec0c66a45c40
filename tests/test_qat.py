"""Quantization-aware fine-tuning (training.qat) and the INT8 export it feeds (fer-export --int8-from)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra: pip install -e '.[train]')")
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from training import qat  # noqa: E402
from training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint  # noqa: E402

from .conftest import ROOT, write_class_folder


def test_folding_batchnorm_changes_no_output_and_survives_a_checkpoint(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint)
    model, reloaded = model_from_checkpoint(ckpt), model_from_checkpoint(ckpt)
    batch = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        before = model(batch)
        state = qat.prepare(model)
        state.remove()  # folded, no rounding: the float network
        model.train()  # frozen BatchNorm: training mode uses the stored statistics too
        after = model(batch)
        reloaded.load_state_dict(model.state_dict())  # a plain network, as export.to_onnx rebuilds it
        plain = reloaded.eval()(batch)
    assert torch.allclose(before, after, atol=1e-4) and torch.allclose(before, plain, atol=1e-4)
    bn = model.features[1].block[0][1]
    assert torch.all(bn.weight == 1) and torch.all(bn.running_mean == 0)


def test_weights_are_rounded_as_onnxruntime_quantizes_them(tmp_path):
    """The fake-quantized weight equals onnxruntime's DequantizeLinear of the INT8 export's weight, in range -64..64."""
    conv = torch.nn.Conv2d(8, 16, 3)
    torch.nn.init.normal_(conv.weight, std=0.3)
    assert (qat.WEIGHT_QMIN, qat.WEIGHT_QMAX) == (-64, 64)  # 2 * 255 * 64 < 32767: no int16 saturation on AVX2
    fp32, int8 = tmp_path / "conv.onnx", tmp_path / "conv.int8.onnx"
    torch.onnx.export(conv, torch.randn(1, 8, 12, 12), str(fp32), input_names=["input"], dynamo=False)
    from onnxruntime.quantization import CalibrationMethod, quantize_static

    batches = iter([{"input": np.random.default_rng(i).normal(size=(1, 8, 12, 12)).astype(np.float32)}
                    for i in range(4)])
    reader = type("Reader", (), {"get_next": lambda self: next(batches, None)})()
    quantize_static(str(fp32), str(int8), reader, calibrate_method=CalibrationMethod.MinMax, **qat.INT8_SCHEME)
    init = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(int8)).graph.initializer}
    q = next(v for v in init.values() if v.dtype == np.int8 and v.ndim == 4)
    scale = next(v for k, v in init.items() if k.startswith("weight") and "scale" in k)
    assert q.min() >= -64 and q.max() <= 64 and np.abs(q).max() == 64
    expected = q.astype(np.float32) * scale.reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(qat.fake_quantize_weight(conv.weight).detach().numpy(), expected, rtol=1e-6, atol=1e-7)


def test_activation_range_is_symmetric_for_signed_tensors_and_rounds_to_256_levels():
    signed, positive = qat.ActivationRange(), qat.ActivationRange()
    x = torch.linspace(-1, 3, 10001)
    y = signed(x, training=True)
    assert signed.signed and signed.magnitude == pytest.approx(3.0)
    assert len(torch.unique(y)) <= 256 and y.min() >= -3.0 - 1e-6  # [-3, 3] in 255 steps
    z = positive(x.clamp(min=0), training=True)
    assert not positive.signed and len(torch.unique(z)) == 256  # [0, 3]: every level used
    positive(10 * x, training=False)  # evaluation does not move the range
    assert positive.magnitude == pytest.approx(3.0)


def test_prepared_model_passes_gradients_through_the_rounding_and_keeps_its_batchnorm_frozen(tiny_checkpoint):
    model = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    state = qat.prepare(model)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model.train()
    batch = torch.randn(16, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    model(batch).logsumexp(1).mean().backward()
    assert model.features[0][0].weight.grad.abs().sum() > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())
    assert "input" in state.ranges and len(state.ranges) > 20  # the input and the activations inside
    model.eval()
    with torch.no_grad():
        rounded = model(batch)
    state.remove()
    with torch.no_grad():
        plain = model(batch)
    assert not torch.equal(rounded, plain) and torch.allclose(rounded.softmax(1), plain.softmax(1), atol=0.1)


def test_qat_training_and_int8_export_from_it(tiny_checkpoint, tmp_path):
    from training.train import FER_MEAN, FER_STD

    ckpt = load_checkpoint(tiny_checkpoint)  # with the preprocessing fer-train gives every model
    tiny_checkpoint = tmp_path / "tiny_fer.pth"
    save_checkpoint(tiny_checkpoint, model_from_checkpoint(ckpt),
                    {**ckpt["meta"], "mean": [FER_MEAN], "std": [FER_STD]})
    data = write_class_folder(tmp_path / "data", per_class=6)
    out = tmp_path / "qat"
    train = subprocess.run([sys.executable, "-m", "training.train", "--data", f"folder:{data}", "--epochs", "1",
                            "--batch-size", "8", "--workers", "0", "--lr", "1e-4", "--pretrained",
                            str(tiny_checkpoint), "--qat", "--out", str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    trained = load_checkpoint(out / "best.pth")
    assert trained["meta"]["qat"] is True
    onnx_path = tmp_path / "m.onnx"
    export = subprocess.run([sys.executable, "-m", "export.to_onnx", "--checkpoint", str(tiny_checkpoint),
                             "--output", str(onnx_path), "--int8", "--calib", f"folder:{data}", "--calib-count", "20",
                             "--int8-from", str(out / "best.pth")], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert export.returncode == 0, export.stderr[-2000:]
    int8 = tmp_path / "m.int8.onnx"
    # The fp32 file is the checkpoint's own; the INT8 copy holds the fine-tuned weights, with the fp32 metadata.
    fp32_meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert {p.key: p.value for p in onnx.load(str(int8)).metadata_props} == fp32_meta
    batch = np.random.default_rng(0).normal(size=(4, 1, 48, 48)).astype(np.float32)
    original = model_from_checkpoint(load_checkpoint(tiny_checkpoint))(torch.from_numpy(batch)).detach().numpy()
    got = ort.InferenceSession(str(onnx_path)).run(None, {"input": batch})[0]
    assert np.abs(got - original).max() < 1e-4
    assert ort.InferenceSession(str(int8)).run(None, {"input": batch})[0].shape == (4, 7)


def test_int8_from_refuses_a_checkpoint_not_trained_with_qat_before_writing(tiny_checkpoint, tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=2)
    out = tmp_path / "m.onnx"
    done = subprocess.run([sys.executable, "-m", "export.to_onnx", "--checkpoint", str(tiny_checkpoint),
                           "--output", str(out), "--int8", "--calib", f"folder:{data}",
                           "--int8-from", str(tiny_checkpoint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"fer-export: error: --int8-from {tiny_checkpoint} was not trained with --qat "
                                   "(fer-train --qat --pretrained CHECKPOINT)")
    assert not out.exists()


def test_qat_needs_a_trained_model(tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=2)
    done = subprocess.run([sys.executable, "-m", "training.train", "--data", f"folder:{data}", "--qat",
                           "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == ("fer-train: error: --qat fine-tunes a trained model: give it with --pretrained "
                                   "CHECKPOINT")


def test_class_balance_shift_restores_the_reference_class_frequencies():
    from export.to_onnx import class_balance_shift

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(3000, 4)).astype(np.float32)
    reference[:, 3] -= 1.5  # a rare class
    quantized = reference + rng.normal(scale=0.3, size=reference.shape).astype(np.float32)
    quantized[:, 3] -= 0.5  # rounding that hurts the rare class
    shift = class_balance_shift(reference, quantized)
    count = lambda logits: np.bincount(logits.argmax(1), minlength=4)  # noqa: E731
    rare, balanced = count(reference)[3], count(quantized + shift)[3]
    assert abs(int(balanced) - int(rare)) <= 10 < rare - count(quantized)[3]
    agreement = lambda logits: (logits.argmax(1) == reference.argmax(1)).mean()  # noqa: E731
    assert agreement(quantized + shift) > agreement(quantized)
