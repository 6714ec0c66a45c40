"""benchmarks/fps.py on a few frames: the report has every field and sane values (speed is not asserted)."""
from __future__ import annotations

import json
import subprocess
import sys

from .conftest import ROOT


def test_fps_report_fields(tiny_onnx, media, tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "benchmarks/fps.py", "--source", media / "short_hamilton_clip.mp4",
                           "--model", tiny_onnx, "--frames", "20", "--threads", "1", "--json", out],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["machine"]["cores"] >= 1 and report["machine"]["onnxruntime"]
    run = report["runs"][0]
    assert run["frames"] == 20 and set(run["ms_per_frame"]) == {"decode", "detect", "preprocess", "classify",
                                                                "smooth", "draw"}
    assert all(v >= 0 for v in run["ms_per_frame"].values())
    assert run["fps"] > 0 and run["decode_only_fps"] > run["fps"] * 0.5
    assert 0 < run["classifier_ms_per_face_p50"] <= run["classifier_ms_per_face_p95"]
    assert report["peak_rss_mb"] > 10
    assert "FPS" in done.stdout


def test_fps_missing_video(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/fps.py", "--source", tmp_path / "none.mp4"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "video not found" in done.stderr and "Traceback" not in done.stderr


def test_fps_compare_rows_and_recall(tiny_onnx, media, tmp_path):
    out = tmp_path / "compare.json"
    done = subprocess.run([sys.executable, "benchmarks/fps.py", "--source", media / "short_hamilton_clip.mp4",
                           "--model", tiny_onnx, "--frames", "12", "--threads", "1", "--compare", "--json", out],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    runs = {r["name"]: r for r in json.loads(out.read_text())["runs"]}
    assert {"fp32 haar fast (default)", "fp32 haar every frame, full size",
            "fp32 haar fast, follow every frame", "fp32 haar fast, no cut detection"} <= set(runs)
    assert all(0.0 <= r["recall"] <= 1.0 and r["frames"] == 12 for r in runs.values())
    # the variant that runs exactly the reference's detection finds exactly its faces
    assert runs["fp32 haar every frame, full size"]["recall"] == 1.0
    assert "no INT8 model" in done.stdout  # the tiny model has no INT8 copy: that row is left out, said so


def test_train_speed_report(tmp_path):
    """benchmarks/train_speed.py with the shipped checkpoint as student and teacher: every row, sane times."""
    out = tmp_path / "train_speed.json"
    ckpt = ROOT / "ckpt" / "ferplus_mobilenetv3_small.pth"
    done = subprocess.run([sys.executable, "benchmarks/train_speed.py", "--student", ckpt, "--teacher", ckpt,
                           "--batch-size", "4", "--steps", "2", "--warmup", "1", "--threads", "1", "--json", out],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    names = [r["name"] for r in report["rows"]]
    assert len(names) == 4 and "teacher forward, onnxruntime (4 faces + mirrors)" in names
    assert all(0 < r["min_s"] <= r["median_s"] and r["calls"] == 2 for r in report["rows"])
    assert report["machine"]["torch"] and report["input_size"] >= 48 and report["threads"] == 1
    assert "median s" in done.stdout


def test_train_speed_missing_checkpoint(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/train_speed.py", "--student", tmp_path / "none.pth"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "checkpoint not found" in done.stderr and "Traceback" not in done.stderr
