"""The live web view (`fer-camera --serve`), all on 127.0.0.1 with ephemeral ports and bounded in time."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from runtime.serve import LiveView

from .conftest import DATA, ROOT


@pytest.fixture()
def view():
    """A LiveView fed 50 frames a second by a thread, each with one face."""
    live = LiveView("127.0.0.1", 0, info={"detector": "test", "model": "tiny"}).start()
    stop = threading.Event()
    portrait = cv2.imread(str(DATA / "obama-480p.jpg"))
    live.publish_seconds = []  # how long each publish call took: the pipeline's cost of serving

    def feed():
        i = 0
        while not stop.is_set():
            record = {"frame": i, "timestamp": i / 50, "faces": [
                {"box": [1, 2, 3, 4], "label": "Happiness", "probability": 0.9, "vector": [0.1, 0.9],
                 "scores": {"Neutral": 0.1, "Happiness": 0.9}, "track_id": 0}]}
            started = time.monotonic()
            live.publish(portrait, record)
            live.publish_seconds.append(time.monotonic() - started)
            i += 1
            time.sleep(0.02)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    yield live
    stop.set()
    thread.join(2)
    live.close()


def _get(url: str, headers: dict | None = None, timeout: float = 5):
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout)


def _mjpeg_frames(response, count: int) -> list[np.ndarray]:
    frames, buffer = [], b""
    while len(frames) < count:
        buffer += response.read1(65536) if hasattr(response, "read1") else response.read(4096)
        while (m := re.search(rb"Content-Length: (\d+)\r\n\r\n", buffer)) and len(buffer) >= m.end() + int(m[1]):
            jpeg = buffer[m.end():m.end() + int(m[1])]
            frames.append(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
            buffer = buffer[m.end() + int(m[1]):]
    return frames


def test_page_is_self_contained(view):
    page = _get(view.url).read().decode()
    assert "<img" in page and "EventSource" in page and "stream.mjpg" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "http://" not in page and "https://" not in page


def test_mjpeg_frames_decode_and_two_clients_at_once(view):
    first, second = _get(view.url + "stream.mjpg"), _get(view.url + "stream.mjpg")
    assert first.headers["Content-Type"].startswith("multipart/x-mixed-replace")
    for stream in (first, second):
        frames = _mjpeg_frames(stream, 3)
        assert all(f is not None and f.shape == (360, 640, 3) for f in frames)  # shrunk to the 640 px default
    health = json.loads(_get(view.url + "health").read())
    assert health["clients"] == 2 and health["frames"] >= 3 and health["fps"] > 0 and health["detector"] == "test"
    first.close(), second.close()


def test_events_carry_the_json_records(view):
    events = _get(view.url + "events")
    assert events.headers["Content-Type"] == "text/event-stream"
    lines = [events.readline() for _ in range(6)]
    records = [json.loads(line[len(b"data: "):]) for line in lines if line.startswith(b"data: ")]
    assert len(records) >= 2 and records[0]["faces"][0]["scores"]["Happiness"] == 0.9
    assert records[1]["frame"] > records[0]["frame"]


def test_a_stalled_client_costs_nothing(view):
    stalled = socket.create_connection(("127.0.0.1", view.port))
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    before, calls = view.latest.seq, len(view.publish_seconds)
    time.sleep(3)  # it reads nothing while the pipeline goes on
    assert view.latest.seq - before > 20  # frames kept coming
    assert max(view.publish_seconds[calls:]) < 0.25  # publishing never waited for the stalled client
    started = time.monotonic()
    assert _get(view.url + "snapshot.jpg").headers["Content-Type"] == "image/jpeg"
    assert time.monotonic() - started < 1.0
    stalled.close()


def test_token_is_needed_everywhere_when_set():
    live = LiveView("127.0.0.1", 0, token="s3cret").start()
    try:
        for path in ("", "stream.mjpg", "events", "snapshot.jpg", "health", "metrics"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                _get(live.url + path)
            assert refused.value.code == 401
        assert _get(live.url + "health?token=s3cret").status == 200
        metrics = _get(live.url + "metrics?token=s3cret")
        assert metrics.status == 200 and metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert _get(live.url + "health", {"Authorization": "Bearer s3cret"}).status == 200
        assert '"s3cret"' in _get(live.url + "?token=s3cret").read().decode()  # the page passes it on
        with pytest.raises(urllib.error.HTTPError) as wrong:
            _get(live.url + "health?token=guess")
        assert wrong.value.code == 401
    finally:
        live.close()


def test_nothing_else_is_served():
    live = LiveView("127.0.0.1", 0).start()
    try:
        for path in ("../setup.cfg", "etc/passwd", "stream.mjpg/../../x"):
            with pytest.raises(urllib.error.HTTPError) as missing:
                _get(live.url + path)
            assert missing.value.code == 404
        with pytest.raises(urllib.error.HTTPError) as nothing_yet:
            _get(live.url + "snapshot.jpg")
        assert nothing_yet.value.code == 503
        request = urllib.request.Request(live.url, data=b"x" * 10, method="POST")
        with pytest.raises(urllib.error.HTTPError) as post:
            urllib.request.urlopen(request, timeout=5)
        assert post.value.code == 405
    finally:
        live.close()


def _serve(tiny_onnx, media, *extra):
    """fer-camera --serve 0 on the sample clip, looping; returns (process, base URL)."""
    proc = subprocess.Popen([sys.executable, "-m", "runtime.camera", "--source", str(media / "short_hamilton_clip.mp4"),
                             "--model", str(tiny_onnx), "--headless", "--loop", "--serve", "0", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "FER_EDGE_HOME": str(ROOT / "tests" / "no-such-model-folder")})
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        if m := re.search(r"live view at (http://\S+)", line):
            return proc, m[1]
        assert time.monotonic() < deadline
    raise AssertionError(f"no live view URL; exit {proc.wait()}")


def test_cli_serves_the_clip_in_real_time_and_stops_on_ctrl_c(tiny_onnx, media):
    proc, url = _serve(tiny_onnx, media)
    try:
        events = _get(url + "events", timeout=10)
        records = []
        while len(records) < 20:
            line = events.readline()
            if line.startswith(b"data: "):
                records.append(json.loads(line[6:]))
        assert any(r["faces"] for r in records) and all("timestamp" in r for r in records)
        health = json.loads(_get(url + "health").read())
        assert 10 <= health["fps"] <= 40  # the clip's own 29.97 FPS at most, not as fast as possible
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130 and time.monotonic() - started < 3
    finally:
        proc.kill()
    with pytest.raises(OSError):
        _get(url + "health", timeout=2)  # the server stopped with the pipeline


def test_cli_port_in_use_is_a_one_line_error(tiny_onnx, media):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "runtime.camera", "--source", str(media / "short_hamilton_clip.mp4"),
                               "--model", str(tiny_onnx), "--headless", "--serve", str(port)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"fer-camera: error: cannot serve on 127.0.0.1:{port}")


@pytest.mark.slow
def test_real_browser_shows_video_and_bars(tiny_onnx, media, yunet_model, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium (Debian's chromium package; .ci/run installs it)")
    proc, url = _serve(tiny_onnx, media, "--detector-model", str(yunet_model))  # YuNet: a face in every frame
    try:
        events = _get(url + "events", timeout=30)  # a loaded machine may take a while to publish the first faces
        deadline = time.monotonic() + 60
        while not (line := events.readline()).startswith(b"data: ") or not json.loads(line[6:])["faces"]:
            assert time.monotonic() < deadline, "no frame with a face published in 60 s"
        events.close()
        shot = tmp_path / "page.png"
        common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                  "--window-size=1200,700", "--timeout=5000", f"--user-data-dir={tmp_path / 'profile'}"]
        for _ in range(3):  # a snapshot of a live page: it may be taken before the first event reached the script
            dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
            if "waiting for frames" not in dom:
                break
        subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    faces = re.search(r'<div id="faces">.{0,120}', dom)
    # a face drawn by the page's script, with its quality (and, from YuNet's landmarks, its yaw)
    assert re.search(r'<h3>face \d+: \w+ [\d.]+ <span class="quality">quality [\d.]+(, unreliable)?, yaw -?\d+</span>'
                     r'</h3>', dom), faces and faces[0]
    assert len(re.findall(r'<div class="row(?: top)?"><span>\w+</span><div class="bar"><i style="width:', dom)) >= 7
    image = cv2.imread(str(shot))
    assert image is not None
    video = image[60:400, 16:600]  # where the stream is drawn
    assert video.std() > 20  # not blank: a real frame
