"""`python -m runtime.camera`: headless outputs and one-line user errors with exit code 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import pytest

from .conftest import DATA, ROOT


def _camera(*args, timeout=300, model_home=ROOT / "tests" / "no-such-model-folder"):
    """fer-camera with FER_EDGE_HOME set (an empty model folder by default: --detector auto picks Haar)."""
    env = {**os.environ, "FER_EDGE_HOME": str(model_home)}
    return subprocess.run([sys.executable, "-m", "runtime.camera", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_headless_video_writes_playable_video_and_json(tiny_onnx, media, tmp_path):
    out, lines = tmp_path / "out" / "annotated.mp4", tmp_path / "faces.jsonl"
    done = _camera("--source", media / "short_hamilton_clip.mp4", "--model", tiny_onnx, "--headless",
                   "--output", out, "--json", lines, "--max-frames", 40)
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout and str(lines) in done.stdout
    video = cv2.VideoCapture(str(out))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    ok, frame = video.read()
    assert ok and frame.shape == (360, 640, 3)
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(40))
    assert records[1]["timestamp"] == pytest.approx(1 / 29.97, abs=1e-3)
    faces = [f for r in records for f in r["faces"]]
    assert faces and set(faces[0]) == {"box", "label", "probability", "vector"} and len(faces[0]["vector"]) == 7


def test_image_folder_and_single_image(tiny_onnx, tmp_path):
    out = tmp_path / "annotated"
    done = _camera("--source", DATA, "--model", tiny_onnx, "--output", out, "--json", tmp_path / "r.jsonl")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["biden.jpg", "obama-1080p.jpg", "obama-480p.jpg"]
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [len(r["faces"]) for r in records] == [1, 1, 1] and records[0]["image"] == "biden.jpg"
    single = tmp_path / "one.png"
    assert _camera("--source", DATA / "obama-480p.jpg", "--model", tiny_onnx, "--output", single).returncode == 0
    assert cv2.imread(str(single)).shape == (480, 853, 3)


@pytest.mark.parametrize("args, message", [
    (["--source", "missing.mp4"], "source not found: missing.mp4"),
    (["--source", "setup.cfg"], "cannot open video setup.cfg"),
    (["--source", "57"], "cannot open camera 57"),
    (["--source", "tests/data", "--model", "missing.onnx"], "model not found: missing.onnx"),
    (["--source", "tests/data", "--model", "setup.cfg"], "cannot load ONNX model setup.cfg"),
    (["--source", "tests/data/obama-480p.jpg", "--output", "/proc/nope/out.png"], "cannot create output folder"),
    (["--source", "tests/data", "--detector", "yunet"], "YuNet is not installed: run `python -m runtime.models download"),
    (["--source", "tests/data", "--detector", "yunet", "--detector-model", "tests/data/tiny_expression.onnx"],
     "is not a YuNet face-detection model"),
    (["--source", "tests/data", "--smoothing", "2"], "--smoothing must be between 0 and 1"),
])
def test_user_errors_exit_2_with_one_line(tiny_onnx, args, message):
    if "--model" not in args:
        args = args + ["--model", str(tiny_onnx)]
    done = _camera(*args, "--headless")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("fer-camera: error: ")
    assert message in done.stderr and "Traceback" not in done.stderr


def test_auto_detector_is_named_at_start_up(tiny_onnx, yunet_model, tmp_path):
    haar = _camera("--source", DATA / "obama-480p.jpg", "--model", tiny_onnx, "--headless")
    assert haar.returncode == 0 and "detector Haar cascade (YuNet finds more faces: python -m runtime.models " \
                                     "download yunet)" in haar.stderr
    home = tmp_path / "models"
    home.mkdir()
    (home / "face_detection_yunet_2023mar.onnx").write_bytes(yunet_model.read_bytes())
    lines = tmp_path / "faces.jsonl"
    yunet = _camera("--source", DATA / "obama-480p.jpg", "--model", tiny_onnx, "--headless", "--json", lines,
                    model_home=home)
    assert yunet.returncode == 0 and f"detector YuNet {home / 'face_detection_yunet_2023mar.onnx'}" in yunet.stderr
    assert "YuNet finds more faces" not in yunet.stderr and len(json.loads(lines.read_text())["faces"]) == 1


def test_ctrl_c_finalizes_outputs(tiny_onnx, media, tmp_path):
    import signal
    import time

    out, lines = tmp_path / "partial.avi", tmp_path / "partial.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "runtime.camera", "--source", str(media / "short_hamilton_clip.mp4"),
                             "--model", str(tiny_onnx), "--headless", "--detect-every", "1", "--detect-width", "0",
                             "--output", str(out), "--json", str(lines)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while (not lines.exists() or lines.stat().st_size == 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stopped by Ctrl-C" in stderr and "Traceback" not in stderr
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert 0 < len(records) < 275
    video = cv2.VideoCapture(str(out))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(records)


def test_first_ctrl_c_is_a_flag_checked_between_frames():
    import os
    import signal

    from runtime.camera import ctrl_c_between_frames

    before = signal.getsignal(signal.SIGINT)
    with ctrl_c_between_frames() as ctrl_c:
        os.kill(os.getpid(), signal.SIGINT)  # mid-frame: must not interrupt the frame's writes
        assert ctrl_c.is_set()
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C still breaks out of a hung source
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
