"""`python -m runtime.camera`: headless outputs and one-line user errors with exit code 2."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from .conftest import DATA, ROOT

LABELS = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]


def _camera(*args, timeout=300, model_home=ROOT / "tests" / "no-such-model-folder"):
    """fer-camera with FER_EDGE_HOME set (an empty model folder by default: --detector auto picks the package's
    YuNet)."""
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
    assert faces and set(faces[0]) == {"box", "label", "probability", "vector", "scores", "track_id", "detector_score",
                                       "quality", "reliable", "sharpness", "yaw", "pitch", "roll"}
    assert len(faces[0]["vector"]) == 7


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
    (["--source", "tests/data", "--detector", "yunet", "--detector-model", "missing.onnx"],
     "YuNet model not found: missing.onnx"),
    (["--source", "tests/data/obama-480p.jpg", "--output", "tests/data/obama-480p.jpg"],
     "--output tests/data/obama-480p.jpg would overwrite the input tests/data/obama-480p.jpg"),
    (["--source", "tests/data", "--output", "tests/data"], "would overwrite the input"),
    (["--source", "tests/data/obama-480p.jpg", "--json", "a.jsonl", "--summary", "a.jsonl"],
     "--summary and --plot follow faces over time"),
    (["--source", "tests/data/tiny_expression.onnx"], "cannot open video tests/data/tiny_expression.onnx"),
    (["--source", "CLIP", "--output", "out.png"], "--output for a video or camera must end in .mp4 or .avi"),
    (["--source", "CLIP", "--output", "CLIP"], "would overwrite the input"),
    (["--source", "CLIP", "--json", "same.txt", "--summary", "same.txt"], "--summary and --json are the same file"),
    (["--source", "tests/data", "--serve", "8080"], "--serve and --loop are for a camera, a stream or a video"),
    (["--source", "CLIP", "--camera-size", "640x480"], "--camera-size and --camera-fps are for a camera or the Pi"),
    (["--source", "0", "--camera-size", "640"], "argument --camera-size: expected WxH with sides from 16 to 8192"),
    (["--source", "0", "--camera-fps", "0"], "argument --camera-fps: expected a rate in (0, 240], got 0"),
    (["--source", "0", "--reconnect", "-1"], "argument --reconnect: expected seconds >= 0, got -1"),
    (["--source", "ftp://cam/x"], "cannot read ftp://cam/x: streams must be rtsp, rtsps, http, https URLs"),
    (["--source", "tests/data/make_tiny_model.py", "--serve", "host:port"], "--serve expects [HOST:]PORT"),
    (["--source", "tests/data/make_tiny_model.py", "--serve", "99999"], "--serve expects [HOST:]PORT"),
    (["--source", str(ROOT / "tests" / "no-such-folder")], "source not found"),
    (["--source", "tests/arm64"], "no images"),
    (["--source", "tests/data", "--detector", "best"], "argument --detector: invalid choice: 'best'"),
    (["--source", "tests/data", "--detector", "yunet", "--detector-model", "tests/data/tiny_expression.onnx"],
     "is not a YuNet face-detection model"),
    (["--source", "tests/data", "--smoothing", "1"], "argument --smoothing: expected a rate in [0, 1), got 1"),
    (["--source", "tests/data", "--smoothing", "nan"], "argument --smoothing: expected a rate in [0, 1), got nan"),
    (["--source", "tests/data", "--detect-every", "0"], "argument --detect-every: expected an integer >= 1, got 0"),
    (["--source", "tests/data", "--max-frames", "-1"], "argument --max-frames: expected an integer >= 1, got -1"),
    (["--source", "tests/data", "--detect-width", "-1"], "--detect-width: expected 0 or an integer >= 64, got -1"),
    (["--source", "tests/data", "--threads", "0"], "argument --threads: expected an integer from 1 to 64, got 0"),
    (["--source", "tests/data", "--threads", "1000"], "argument --threads: expected an integer from 1 to 64, got 1000"),
    (["--source", "tests/data", "--output", "setup.cfg/x"], "cannot create output folder setup.cfg/x: setup.cfg is a file"),
    (["--source", "tests/data", "--summary", "s.csv"], "--summary and --plot follow faces over time"),
])
def test_user_errors_exit_2_with_one_line(tiny_onnx, args, message):
    """Every refusal is one line on stderr, before anything is printed (no start-up line) or written."""
    if "CLIP" in args:
        clip = ROOT.parent / "shared" / "media" / "short_hamilton_clip.mp4"
        if not clip.is_file():
            pytest.skip("sample media not found at ../shared/media")
        args = [str(clip) if a == "CLIP" else a for a in args]
    if "--model" not in args:
        args = args + ["--model", str(tiny_onnx)]
    done = _camera(*args, "--headless")
    assert done.returncode == 2
    assert done.stderr.startswith("fer-camera: error: ") and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr and "WARN" not in done.stderr  # OpenCV's own log lines are silenced
    assert done.stdout == ""


def test_refusals_write_nothing_and_keep_what_is_there(tiny_onnx, media, tmp_path):
    """A run refused after the source opened (here: a port in use) neither creates nor empties an output file."""
    import socket

    lines, earlier = tmp_path / "earlier.jsonl", '{"frame": 0}\n'
    lines.write_text(earlier)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = _camera("--source", media / "short_hamilton_clip.mp4", "--model", tiny_onnx, "--headless",
                       "--serve", busy.getsockname()[1], "--json", lines, "--summary", tmp_path / "s.csv")
    assert done.returncode == 2 and "port in use?" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert lines.read_text() == earlier and not (tmp_path / "s.csv").exists()


def test_start_up_line_names_the_detector_file(tiny_onnx, yunet_model, tmp_path):
    """Out of the box YuNet, from the package; a file in the model folder takes precedence; Haar when asked."""
    from runtime.models import BUNDLED

    bundled = _camera("--source", DATA / "obama-480p.jpg", "--model", tiny_onnx, "--headless")
    assert bundled.returncode == 0
    assert bundled.stderr.splitlines()[0] == (f"fer-camera: source {DATA / 'obama-480p.jpg'} (1 image); "
                                              f"detector YuNet {BUNDLED['yunet'].path}; model {tiny_onnx}")
    home = tmp_path / "models"
    home.mkdir()
    (home / "face_detection_yunet_2023mar.onnx").write_bytes(yunet_model.read_bytes())
    lines = tmp_path / "faces.jsonl"
    yunet = _camera("--source", DATA / "obama-480p.jpg", "--model", tiny_onnx, "--headless", "--json", lines,
                    model_home=home)
    assert yunet.returncode == 0 and f"detector YuNet {home / 'face_detection_yunet_2023mar.onnx'};" in yunet.stderr
    assert len(json.loads(lines.read_text())["faces"]) == 1
    haar = _camera("--source", DATA / "obama-480p.jpg", "--model", tiny_onnx, "--headless", "--detector", "haar")
    assert haar.returncode == 0 and f"; detector Haar cascade; model {tiny_onnx}" in haar.stderr


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
    assert proc.returncode == 130, stderr
    assert "stopped by Ctrl-C" in stderr and "Traceback" not in stderr
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert 0 < len(records) < 275 and f"{len(records)} frames" in stderr  # the closing count is what was written
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


def _digest(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_outputs_never_overwrite_inputs(tiny_onnx, media, tmp_path):
    import shutil

    photos = tmp_path / "photos"
    shutil.copytree(DATA, photos, ignore=shutil.ignore_patterns("*.onnx", "*.py", "*.md"))
    before = {p.name: _digest(p) for p in photos.iterdir()}
    clip = tmp_path / "clip.mp4"
    shutil.copy(media / "short_hamilton_clip.mp4", clip)
    clip_digest = _digest(clip)
    for args, message in [
        (["--source", photos, "--output", photos], f"--output {photos / 'biden.jpg'} would overwrite the input"),
        (["--source", photos / "biden.jpg", "--output", photos / "biden.jpg"], "would overwrite the input"),
        (["--source", photos, "--json", photos / "obama-480p.jpg"], "--json"),
        (["--source", clip, "--output", clip], f"--output {clip} would overwrite the input {clip}"),
        (["--source", clip, "--json", tmp_path / "x" / ".." / "clip.mp4"], "would overwrite the input"),
        (["--source", clip, "--summary", tmp_path / "a.csv", "--json", tmp_path / "a.csv"], "are the same file"),
    ]:
        done = _camera(*args, "--model", tiny_onnx, "--headless")
        assert done.returncode == 2 and message in done.stderr.strip().splitlines()[-1], done.stderr
    assert {p.name: _digest(p) for p in photos.iterdir()} == before and _digest(clip) == clip_digest
    assert not (tmp_path / "a.csv").exists()  # refused before anything was written


def test_a_folder_with_an_unreadable_image_goes_on(tiny_onnx, tmp_path):
    import shutil

    photos = tmp_path / "photos"
    shutil.copytree(DATA, photos, ignore=shutil.ignore_patterns("*.onnx", "*.py", "*.md"))
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    lines = tmp_path / "faces.jsonl"
    done = _camera("--source", photos, "--model", tiny_onnx, "--json", lines, "--output", tmp_path / "out")
    assert done.returncode == 1
    assert f"fer-camera: warning: cannot read image {photos / 'broken.jpg'}" in done.stderr
    assert "3 images, 3 faces" in done.stderr and "1 unreadable image(s) skipped" in done.stderr
    assert [json.loads(line)["image"] for line in lines.read_text().splitlines()] == [
        "biden.jpg", "obama-1080p.jpg", "obama-480p.jpg"]
    assert len(list((tmp_path / "out").iterdir())) == 3


def test_images_print_one_line_per_face_and_quiet_prints_nothing(tiny_onnx, tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((200, 200, 3), np.uint8))
    done = _camera("--source", DATA / "obama-480p.jpg", "--model", tiny_onnx)
    assert done.returncode == 0
    name, box, label, probability = re.fullmatch(r"(\S+): box (\(\d+, \d+, \d+, \d+\)) (\w+) ([\d.]+)",
                                                 done.stdout.strip()).groups()
    assert name == "obama-480p.jpg" and label in LABELS and 0 < float(probability) <= 1
    assert _camera("--source", blank, "--model", tiny_onnx).stdout.strip() == "blank.png: no face"
    quiet = _camera("--source", DATA, "--model", tiny_onnx, "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_json_scores_and_track_ids_summary_and_plot(tiny_onnx, media, tmp_path):
    lines, summary, plot = tmp_path / "f.jsonl", tmp_path / "s.csv", tmp_path / "p.png"
    done = _camera("--source", media / "short_hamilton_clip.mp4", "--model", tiny_onnx, "--headless",
                   "--max-frames", 60, "--json", lines, "--summary", summary, "--plot", plot)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    faces = [f for r in records for f in r["faces"]]
    assert faces and all(list(f)[:4] == ["box", "label", "probability", "vector"] for f in faces)
    assert all(list(f["scores"]) == LABELS and f["scores"][f["label"]] == f["probability"] for f in faces)
    ids = [f["track_id"] for f in faces]
    # a followed face keeps its id across frames; new faces get new ids
    assert len(set(ids)) < len(ids) / 3 and max(ids) == len(set(ids)) - 1
    rows = list(csv.DictReader(summary.open()))
    assert list(rows[0]) == ["frame", "time", "track_id", "x", "y", "w", "h", *LABELS,
                             "quality", "reliable", "yaw", "pitch", "roll"]
    assert [float(r["quality"]) for r in rows] == [f["quality"] for f in faces]
    assert [float(r["yaw"]) for r in rows] == [f["yaw"] for f in faces]  # YuNet's landmarks: a pose for each face
    assert len(rows) == len(faces) and [int(r["track_id"]) for r in rows] == ids
    last = [r for r in records if r["faces"]][-1]
    assert int(rows[-1]["frame"]) == last["frame"] and float(rows[-1]["time"]) == pytest.approx(last["timestamp"])
    chart = cv2.imread(str(plot))
    assert chart is not None and chart.shape[1] == 960 and chart.shape[0] >= 200 and chart.std() > 10


CLIP_CUTS = (82, 211)  # the sample clip's scene cuts: the first frames of its second and third shots


@pytest.mark.parametrize("detect_every", ["15", "1"])  # tracked (the tracker's ids), every frame (FaceIds)
def test_a_track_is_one_person_across_the_clips_scene_cuts(tiny_onnx, media, tmp_path, detect_every):
    """No track_id spans a cut (frames 80-83, 209-212), with YuNet, the default detector; the plot draws one panel
    per track, so the people before and after a cut are separate faces there."""
    from runtime.summary import MAX_FACES, PANEL

    lines, plot = tmp_path / "f.jsonl", tmp_path / "p.png"
    done = _camera("--source", media / "short_hamilton_clip.mp4", "--model", tiny_onnx, "--headless",
                   "--detect-every", detect_every, "--json", lines, "--plot", plot)
    assert done.returncode == 0 and "detector YuNet" in done.stderr, done.stderr
    frames: dict[int, list[int]] = {}
    for line in lines.read_text().splitlines():
        record = json.loads(line)
        for face in record["faces"]:
            frames.setdefault(face["track_id"], []).append(record["frame"])
    for cut in CLIP_CUTS:
        spanning = [i for i, seen in frames.items() if min(seen) < cut <= max(seen)]
        assert spanning == [], f"track(s) {spanning} span the cut at frame {cut}"
        assert any(min(seen) == cut for seen in frames.values())  # the faces after the cut are new tracks
    long_tracks = [i for i, seen in frames.items() if len(seen) >= 40]
    assert len(long_tracks) >= 5  # the performer between the cuts and the people after the last one are followed
    chart = cv2.imread(str(plot))
    # legend, title (the source), a note of the faces not charted, panels
    assert chart.shape[0] == 40 + 24 + 24 * (len(frames) > MAX_FACES) + min(MAX_FACES, len(frames)) * PANEL[1]


def test_shipped_model_by_name_from_another_directory(tmp_path):
    from runtime.classifier import SHIPPED_MODELS

    done = subprocess.run([sys.executable, "-m", "runtime.camera", "--source", str(DATA / "biden.jpg"),
                           "--model", "int8"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert f"model {SHIPPED_MODELS['int8']}" in done.stderr and done.stdout.startswith("biden.jpg: box")


def test_newcomer_defects_each_give_one_clear_line(tmp_path):
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    (folder / "one.jpg").write_bytes((DATA / "obama-480p.jpg").read_bytes())
    # an image's --output with an extension no image is written as: refused, nothing made
    done = _camera("--source", folder, "--headless", "--output", tmp_path / "out.gif")
    assert done.returncode == 2 and "--output" in done.stderr and ".png" in done.stderr
    assert not (tmp_path / "out.gif").exists()
    # a training checkpoint as --model: what it is and the export command
    checkpoint = tmp_path / "best.pth"
    checkpoint.write_bytes(b"\x80\x02not really")
    done = _camera("--source", folder, "--headless", "--model", checkpoint)
    assert done.returncode == 2 and "training checkpoint" in done.stderr and "fer-export --checkpoint" in done.stderr
    assert "Traceback" not in done.stderr and "protobuf" not in done.stderr.lower()
    # subfolders are said to be left out; one image closes with singular words and no rate
    done = _camera("--source", folder, "--headless")
    assert done.returncode == 0, done.stderr
    assert "the 1 folder inside" in done.stderr and "is not searched" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "1 image, 1 face"
    version = _camera("--version")
    assert version.returncode == 0 and version.stdout.startswith("fer-camera ")


def test_the_licence_files_are_there():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "runtime" / "data" / "LICENSE-YuNet.txt").is_file()


def test_library_log_lines_become_one_warning_unless_verbose(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cut.jpg").write_bytes((DATA / "obama-480p.jpg").read_bytes()[:30000])  # a truncated JPEG
    done = _camera("--source", folder, "--headless")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "Premature end of JPEG file" not in lines  # libjpeg's own line
    assert any(line.startswith("fer-camera: warning: ") and "cut.jpg" in line and "Premature end" in line
               for line in lines)
    verbose = _camera("--source", folder, "--headless", "--verbose")
    assert "Premature end of JPEG file" in verbose.stderr.splitlines()


def test_opening_a_missing_camera_from_python_prints_only_the_error():
    code = ("from runtime import CameraSolver, CV2FaceDetector, ExpressionClassifier\n"
            "try:\n    CameraSolver(CV2FaceDetector(), ExpressionClassifier()).start(57)\n"
            "except RuntimeError as exc:\n    print(exc)\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert "cannot open camera 57" in done.stdout
    assert "[ WARN" not in done.stderr and "VIDEOIO" not in done.stderr
