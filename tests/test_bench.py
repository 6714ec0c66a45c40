"""benchmarks/fps.py on a few frames: the report has every field and sane values (speed is not asserted)."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from benchmarks.fps import recall

from .conftest import ROOT, SHIPPED_PTH, require_torch, write_class_folder


def _bench(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "benchmarks.fps", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_fps_report_fields(tiny_onnx, media, tmp_path):
    out = tmp_path / "bench.json"
    done = _bench("--source", media / "short_hamilton_clip.mp4", "--model", tiny_onnx, "--frames", "20",
                  "--threads", "1", "--json", out)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["machine"]["cores"] >= 1 and report["machine"]["onnxruntime"]
    run = report["runs"][0]
    assert run["frames"] == 20 and set(run["ms_per_frame"]) == {"decode", "detect", "classify", "smooth", "draw"}
    assert all(v >= 0 for v in run["ms_per_frame"].values())
    assert run["fps"] > 0 and run["decode_only_fps"] > run["fps"] * 0.5 and run["faces"] > 0
    assert run["ms_per_frame"]["classify"] > 0 and run["ms_per_frame"]["detect"] > 0
    assert 0 < run["classifier_ms_per_face_p50"] <= run["classifier_ms_per_face_p95"]
    assert report["peak_rss_mb"] > 10
    assert "FPS" in done.stdout


def test_fps_missing_video(tmp_path):
    done = _bench("--source", tmp_path / "none.mp4", timeout=120)
    assert done.returncode == 2 and "video not found" in done.stderr and "Traceback" not in done.stderr
    done = _bench("--source", ROOT / "tests" / "data" / "portrait_pan.mp4", "--rounds", "0", timeout=120)
    assert done.returncode == 2 and "--rounds 0: give 1 or more" in done.stderr and "Traceback" not in done.stderr


def test_recall_counts_one_to_one_matches():
    reference = [[(0, 0, 100, 100), (200, 0, 100, 100)], [(0, 0, 100, 100)], []]
    assert recall(reference, reference) == 1.0
    found = [[(10, 0, 100, 100)], [(60, 0, 100, 100)], [(5, 5, 10, 10)]]  # IoU 0.82 hit; IoU 0.25 miss; extra box
    assert recall(found, reference) == pytest.approx(1 / 3)
    assert recall([[(0, 0, 100, 100), (1, 1, 100, 100)], [], []], reference) == pytest.approx(1 / 3)  # one box, one face


@pytest.mark.slow
def test_fps_compare_rows_and_recall(tiny_onnx, media, yunet_model, tmp_path):
    out = tmp_path / "compare.json"
    done = _bench("--source", media / "short_hamilton_clip.mp4", "--model", tiny_onnx, "--frames", "12",
                  "--threads", "1", "--compare", "--detector-model", yunet_model, "--json", out, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    runs = {r["name"]: r for r in report["runs"]}
    assert {"fp32 auto (YuNet) fast (default)", "fp32 auto fast, faces never turned upright", "fp32 haar fast", "fp32 haar every frame, full size",
            "fp32 yunet fast", "fp32 yunet every frame, full size"} <= set(runs)
    assert all(0.0 <= r["recall"] <= 1.0 and r["frames"] == 12 for r in runs.values())
    # the reference is YuNet on every whole frame: the same detection finds all of its faces, Haar far fewer
    assert report["reference"].startswith("YuNet on the whole of every frame") and report["reference_faces"] > 12
    assert runs["fp32 yunet every frame, full size"]["recall"] == 1.0
    assert runs["fp32 haar every frame, full size"]["recall"] < 0.6
    assert "no INT8 model" in done.stdout  # the tiny model has no INT8 copy: that row is left out, said so


def test_train_speed_report(tmp_path):
    """benchmarks/train_speed.py with the shipped checkpoint as student and teacher: every row, sane times."""
    require_torch()
    out = tmp_path / "train_speed.json"
    ckpt = SHIPPED_PTH
    done = subprocess.run([sys.executable, "-m", "benchmarks.train_speed", "--student", ckpt, "--teacher", ckpt,
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
    require_torch()
    done = subprocess.run([sys.executable, "-m", "benchmarks.train_speed", "--student", tmp_path / "none.pth"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "checkpoint not found" in done.stderr and "Traceback" not in done.stderr


def test_latency_compares_models_in_one_run(tiny_onnx):
    done = subprocess.run([sys.executable, "-m", "benchmarks.latency", str(tiny_onnx), "fp32", "--repeats", "20"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:3]]
    assert rows[0][-2] == "1.00" and float(rows[1][1]) > 0 and "1 onnxruntime thread(s)" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "benchmarks.latency", "nope.onnx"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "model not found: nope.onnx" in missing.stderr


def test_tracking_choices_on_a_few_frames(media, yunet_model):
    done = subprocess.run([sys.executable, "-m", "benchmarks.tracking_choices", "--source",
                           str(media / "short_hamilton_clip.mp4"), "--detector-model", str(yunet_model),
                           "--frames", "30", "--widths", "0", "48"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:3]]
    assert [r[0] for r in rows] == ["full", "48"] and all(r[-1].endswith("%") for r in rows)
    assert "agrees with classifying every frame on" in done.stdout.splitlines()[-1]


def test_tracking_choices_needs_yunet(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.tracking_choices", "--detector-model",
                           str(tmp_path / "none.onnx")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("tracking_choices: error: needs YuNet")


def test_train_speed_times_fresh_architectures(tmp_path):
    require_torch()
    out = tmp_path / "arch.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.train_speed", "--arch", "mobilenet_v3_small:48",
                           "--batch-size", "4", "--steps", "1", "--warmup", "0", "--threads", "1", "--json", out],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["rows"][-1]["name"] == "mobilenet_v3_small at 48 px, step (batch 4)"
    assert report["input_size"] == 72  # the student's (the shipped model), not the timed network's
    bad = subprocess.run([sys.executable, "-m", "benchmarks.train_speed", "--arch", "resnet50:96"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "expected ARCH:SIZE" in bad.stderr and "Traceback" not in bad.stderr


def test_train_speed_times_data_loading_per_size_and_process_count(tmp_path):
    require_torch()
    data = write_class_folder(tmp_path / "data", per_class=10)
    out = tmp_path / "loading.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.train_speed", "--arch", "mobilenet_v3_small:48",
                           "--data", f"folder:{data}", "--workers", "0", "2", "--batch-size", "4", "--steps", "2",
                           "--warmup", "0", "--threads", "1", "--json", out],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    for size in (48, 72):  # the timed network's and the student's input sizes
        for workers in (0, 2):
            row = rows[f"data loading at {size} px, {workers} processes (batch 4)"]
            assert 0 < row["min_s"] <= row["median_s"] < 30
    for bad_args, message in [(["--data", f"folder:{tmp_path / 'none'}"], "image folder not found"),
                              (["--workers", "-1"], "--workers at least 0")]:
        bad = subprocess.run([sys.executable, "-m", "benchmarks.train_speed", *bad_args, "--steps", "1"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr


def test_photos_benchmark_solves_one_photo_as_fer_camera_does(shipped_onnx):
    done = subprocess.run([sys.executable, "-m", "benchmarks.photos", "--one", ROOT / "tests" / "data" / "biden.jpg"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["size"] == [970, 2204] and len(report["faces"]) == 1 and report["solve_s"] > 0
    missing = subprocess.run([sys.executable, "-m", "benchmarks.photos", "--media", ROOT / "nothing-here"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "lacks obama-1080p.jpg" in missing.stderr


def test_aligned_ferplus_chooses_on_valid_and_reports_test(ferplus):
    done = subprocess.run([sys.executable, "-m", "benchmarks.aligned_ferplus", "--data", ferplus, "--count", "40"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("FER2013Valid: 40 faces, found") for line in lines)
    assert sum("never turned" in line for line in lines) == 2  # valid and test
    chosen = next(line for line in lines if "chosen on FER2013Valid" in line).split()[-1]
    assert any(line.strip().startswith(f"align_roll {chosen}:") for line in lines[lines.index(
        next(line for line in lines if line.startswith("FER2013Test"))):])


def test_quality_benchmark_chooses_on_valid_and_reports_test(ferplus, tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.quality", "--count", "16", "--skip-clip", "--out",
                           tmp_path], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "threshold chosen on FER2013Valid" in done.stdout and "FER2013Test, 16 faces x 5 variants" in done.stdout
    assert re.search(r"\| all 5 \| [\d.]+% \| [\d.]+% \|", done.stdout)
    rows = json.loads((tmp_path / "faces_test.json").read_text())
    assert len(rows) == 16 * 5 and {"clean", "blur 3", "16 px"} <= {r["variant"] for r in rows}
    # the saved rows re-scored with every pair of ramps tried, without the pipeline: five rows, most kept first
    search = subprocess.run([sys.executable, "-m", "benchmarks.quality", "--from-rows", "--search", "--skip-clip",
                             "--out", tmp_path], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert search.returncode == 0, search.stderr
    found = re.findall(r"^\d+-\d+ px \| [\d.]+-[\d.]+ \| [\d.]+ \| ([\d.]+)%, [\d.]+% \|", search.stdout, re.M)
    assert len(found) == 5 and [float(x) for x in found] == sorted((float(x) for x in found), reverse=True)


def test_quality_benchmark_runs_only_the_variants_asked_for(ferplus, tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.quality", "--count", "8", "--skip-clip", "--variants",
                           "clean,16 px", "--out", tmp_path], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "FER2013Test, 8 faces x 2 variants" in done.stdout and "| all 2 |" in done.stdout
    assert "| blur 3 |" not in done.stdout
    rows = json.loads((tmp_path / "faces_valid.json").read_text())
    assert len(rows) == 16 and {r["variant"] for r in rows} == {"clean", "16 px"}
    bad = subprocess.run([sys.executable, "-m", "benchmarks.quality", "--variants", "clean,blur 9", "--out", tmp_path],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown blur 9" in bad.stderr and "Traceback" not in bad.stderr


def test_quality_threshold_rule_needs_confidence_and_every_degraded_kind():
    """benchmarks.quality.choose_threshold: 90% right with 95% confidence among clean and all reliable faces, and 90%
    among each degraded kind with 20 reliable faces or more."""
    from benchmarks.quality import choose_threshold, wilson_lower

    def faces(variant, quality, count, right):
        return [{"variant": variant, "found": True, "quality": quality, "right": i < right} for i in range(count)]

    assert wilson_lower(96, 100) == pytest.approx(0.9016, abs=1e-4) and wilson_lower(0, 0) == 0.0
    clean = faces("clean", 0.9, 500, 480) + faces("clean", 0.5, 500, 300)  # 96% right above 0.5, 78% with them
    assert choose_threshold(clean) == 0.51
    assert choose_threshold(faces("clean", 0.9, 40, 37)) == 1.0  # 92.5% right, but of 40: not 90% with confidence
    # a degraded kind read 70% right at 0.8: the threshold rises above it; with 19 such faces it does not count
    assert choose_threshold(clean + faces("blur 3", 0.8, 20, 14)) == 0.81
    assert choose_threshold(clean + faces("blur 3", 0.8, 19, 13)) == 0.51
