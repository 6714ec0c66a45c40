"""Training smoke tests (a few steps, never a real run), losses, model budget and eval's table."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from training.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from training.distill import Teacher, distilled_targets
from training.eval import report_from_predictions
from training.labels import LABELS_7
from training.losses import SoftTargetLoss
from training.model import count_mflops, count_parameters
from training.train import main as train_main, mixup

from .conftest import ROOT, SHIPPED_ONNX, SHIPPED_PTH, write_class_folder


def _losses(out):
    with open(out / "metrics.csv") as f:
        return [float(r["train_loss"]) for r in csv.DictReader(f)]


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


def test_eval_record_only_stores_test_accuracy_of_a_checkpoint(tiny_onnx, tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=4)
    for model, split in [(str(tiny_onnx), "test"), (str(SHIPPED_PTH), "valid")]:
        done = subprocess.run([sys.executable, "-m", "training.eval", "--model", model, "--data", f"folder:{data}",
                               "--split", split, "--record", "--out", str(tmp_path / "eval")],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert "--record stores the test accuracy of a checkpoint" in done.stderr


def test_eval_averages_several_checkpoints_as_an_ensemble(tiny_checkpoint, tiny_onnx, tmp_path):
    data = write_class_folder(tmp_path / "data", per_class=4)

    def evaluate(*models: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "training.eval", "--model", *models, "--data", f"folder:{data}",
                               "--flip", "--out", str(tmp_path / "eval")],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)

    single, pair = evaluate(str(tiny_checkpoint)), evaluate(str(tiny_checkpoint), str(tiny_checkpoint))
    assert single.returncode == 0 and pair.returncode == 0, pair.stderr
    # A model averaged with itself predicts what it predicts alone: the same table, line for line.
    assert pair.stdout.splitlines()[:9] == single.stdout.splitlines()[:9]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["model"] == [str(tiny_checkpoint)] * 2
    mixed = evaluate(str(tiny_checkpoint), str(tiny_onnx))
    assert mixed.returncode == 2 and "Traceback" not in mixed.stderr
    assert "an ensemble takes checkpoints (.pth) only" in mixed.stderr


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
