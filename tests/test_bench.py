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
