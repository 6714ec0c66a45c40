"""Sources (runtime.sources) against real servers on loopback: another `fer-camera --serve` as an HTTP MJPEG camera,
GStreamer's RTSP server (TCP only), servers stopped mid-stream and started again, a 30 fps stream read by a slow
consumer; and the Raspberry Pi Camera Module through a STAND-IN of Picamera2 (no camera hardware here)."""
from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.sources import (LiveFrames, PicameraReader, SourceError, SourceLost, SourceSpec, mask_credentials,
                             parse_source)

from .conftest import ROOT

STANDINS = ROOT / "tests" / "standins"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-gi for GStreamer's RTSP server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def http_get(url: str, timeout: float = 5.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except OSError:
        return None


def fer_camera(*args, env: dict | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runtime.camera", *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}, **popen)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class MjpegCamera:
    """A second fer-camera playing the sample clip in a loop with --serve: an HTTP MJPEG camera on loopback."""

    def __init__(self, media: Path, port: int | None = None, token: str | None = None):
        self.port, self.media, self.token = port or free_port(), media, token
        self.start()

    def start(self) -> None:
        extra = ["--serve-token", self.token] if self.token else []
        self.proc = fer_camera("--source", self.media / "short_hamilton_clip.mp4", "--headless", "--quiet", "--loop",
                               "--detector", "haar", "--serve", self.port, *extra)
        query = f"?token={self.token}" if self.token else ""
        wait_until(lambda: http_get(f"http://127.0.0.1:{self.port}/health{query}"), 60, "the MJPEG camera")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg" + (f"?token={self.token}" if self.token else "")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=30)


class RtspServer:
    """tests/servers/rtsp_server.py: GStreamer's RTSP server with the sample clip at /clip, TCP only."""

    def __init__(self, media: Path, port: int | None = None):
        self.port, self.media = port or free_port(), media
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(ROOT / "tests" / "servers" / "rtsp_server.py"),
                                      str(self.port), str(self.media / "short_hamilton_clip.mp4")],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", self.proc.stderr.read()

    def url(self, credentials: str = "") -> str:
        return f"rtsp://{credentials}127.0.0.1:{self.port}/clip"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=30)


def _has_rtsp_server() -> bool:
    code = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def rtsp_available() -> None:
    if not _has_rtsp_server():
        pytest.skip("GStreamer's RTSP server is not installed (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 "
                    "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad; .ci/run does it)")


@pytest.mark.parametrize("text, kind, target, display", [
    ("0", "camera", 0, "camera 0"),
    ("picamera", "picamera", 0, "Pi Camera Module 0"),
    ("picamera:1", "picamera", 1, "Pi Camera Module 1"),
    ("rtsp://user:secret@cam.local:554/live", "url", "rtsp://user:secret@cam.local:554/live",
     "rtsp://user:***@cam.local:554/live"),
    ("rtsps://cam/live", "url", "rtsps://cam/live", "rtsps://cam/live"),
    ("https://example.org/hls/index.m3u8", "url", "https://example.org/hls/index.m3u8",
     "https://example.org/hls/index.m3u8"),
    ("http://pi.local:8080/stream.mjpg?token=abc123", "url", "http://pi.local:8080/stream.mjpg?token=abc123",
     "http://pi.local:8080/stream.mjpg?token=***"),
    ("clip.mp4", "file", "clip.mp4", "clip.mp4"),
])
def test_every_kind_of_source_is_named_without_its_secrets(text, kind, target, display):
    spec = parse_source(text)
    assert (spec.kind, spec.target, spec.display) == (kind, target, display)
    assert spec.live is (kind != "file")


def test_device_paths_and_unknown_schemes():
    assert mask_credentials("cannot open rtsp://admin:p@ss:w0rd@10.0.0.5/h264") == "cannot open rtsp://admin:***@10.0.0.5/h264"
    with pytest.raises(SourceError, match=r"cannot read ftp://bob:\*\*\*@host/x: streams must be rtsp, rtsps, http"):
        parse_source("ftp://bob:hunter2@host/x")
    with pytest.raises(SourceError, match="camera not found: /dev/video99"):
        parse_source("/dev/video99")
    with pytest.raises(SourceError, match="/dev/null is not a camera device"):
        parse_source("/dev/null")
    if Path("/dev/video0").exists():
        assert parse_source("/dev/video0") == SourceSpec("camera", 0, "/dev/video0")


def test_http_mjpeg_from_another_fer_camera(media, tmp_path):
    """`fer-camera --serve --loop` on the sample clip is the camera of a second fer-camera, which finds the faces.
    The stream's token is a credential: it is masked in every line."""
    camera = MjpegCamera(media, token="s3cret-token")
    try:
        lines = tmp_path / "faces.jsonl"
        client = fer_camera("--source", camera.url, "--headless", "--json", lines, "--max-frames", 60)
        out, err = client.communicate(timeout=120)
    finally:
        camera.stop()
    assert client.returncode == 0, err
    assert f"source http://127.0.0.1:{camera.port}/stream.mjpg?token=*** (640x360," in err
    assert "s3cret-token" not in err + out + lines.read_text()
    got = records(lines)
    assert len(got) == 60 and sum(1 for r in got if r["faces"]) >= 40  # the clip's faces, through JPEG and HTTP
    assert all(0 <= f["probability"] <= 1 for r in got for f in r["faces"])


def test_rtsp_over_tcp_finds_the_faces_and_never_shows_the_password(media, rtsp_available, tmp_path):
    """The RTSP server accepts TCP only: the client's default. Credentials in the URL appear masked everywhere."""
    server = RtspServer(media)
    lines, summary, plot, port = tmp_path / "f.jsonl", tmp_path / "s.csv", tmp_path / "p.png", free_port()
    try:
        client = fer_camera("--source", server.url("viewer:hunter2@"), "--headless", "--json", lines,
                            "--summary", summary, "--plot", plot, "--max-frames", 120, "--serve", port)
        health = wait_until(lambda: http_get(f"http://127.0.0.1:{port}/health"), 60, "the client's live view")
        page = http_get(f"http://127.0.0.1:{port}/")
        out, err = client.communicate(timeout=120)
    finally:
        server.stop()
    assert client.returncode == 0, err
    got = records(lines)
    assert len(got) == 120 and sum(len(r["faces"]) for r in got) >= 150  # one to three faces a frame
    assert f"source rtsp://viewer:***@127.0.0.1:{server.port}/clip (640x360, 29.97 fps)" in err
    assert json.loads(health)["source"] == f"rtsp://viewer:***@127.0.0.1:{server.port}/clip"
    everything = err + out + lines.read_text() + summary.read_text() + health.decode() + page.decode()
    assert "hunter2" not in everything and cv2.imread(str(plot)) is not None


@pytest.mark.parametrize("server_kind", ["http", "rtsp"])
def test_a_live_source_that_stops_is_reopened_and_the_outputs_go_on(media, tmp_path, server_kind, request):
    """The server is stopped mid-stream and started again on the same port: the client reconnects (a line for each
    attempt), counts it in /health and in its closing line, and its JSON has records from before and after."""
    if server_kind == "rtsp":
        request.getfixturevalue("rtsp_available")
        server = RtspServer(media)
        url = server.url()
    else:
        server = MjpegCamera(media)
        url = server.url
    lines, port = tmp_path / "f.jsonl", free_port()
    client = fer_camera("--source", url, "--headless", "--json", lines, "--serve", port, "--reconnect", "60")
    try:
        wait_until(lambda: len(records(lines)) >= 30, 60, "frames before the stop")
        server.stop()
        wait_until(lambda: b'"dropped"' in (http_get(f"http://127.0.0.1:{port}/health") or b""), 10, "/health")
        before = len(records(lines))
        time.sleep(2.0)  # the client notices and starts reconnecting while the server is away
        server.start()
        wait_until(lambda: len(records(lines)) >= before + 30, 90, "frames after the restart")
        health = json.loads(http_get(f"http://127.0.0.1:{port}/health"))
        client.send_signal(signal.SIGINT)
        out, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
        server.stop()
    assert client.returncode == 130, err
    assert health["reconnects"] == 1 and "1 reconnect" in err
    assert "stopped delivering frames" in err and "reconnecting to" in err and "reconnected to" in err
    times = [r["timestamp"] for r in records(lines)]
    assert len(times) >= before + 30 and max(b - a for a, b in zip(times, times[1:])) >= 1.0  # the gap is in the times
    shown = [part.strip() for line in err.splitlines() for part in line.split("\r") if part.strip()]
    assert all(re.match(r"fer-camera: |frames \d+, |\d+ frames, ", part) for part in shown), shown  # nobody else's



def test_a_source_that_cannot_be_opened_is_one_line_at_once(tmp_path):
    """No server on the port: exit 2 with one line, without waiting to reconnect; no output file is made."""
    port = free_port()
    done = subprocess.run([sys.executable, "-m", "runtime.camera", "--source", f"rtsp://u:pw@127.0.0.1:{port}/x",
                           "--headless", "--json", tmp_path / "f.jsonl"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"fer-camera: error: cannot open stream rtsp://u:***@127.0.0.1:{port}"
                                                "/x: check the address, that the server is up and its credentials"]
    assert not (tmp_path / "f.jsonl").exists()


def test_a_video_file_that_breaks_mid_way_ends_without_reconnecting(media, tmp_path):
    """Files never reconnect: a video cut off in the middle ends the run there, every frame before it kept."""
    capture, whole = cv2.VideoCapture(str(media / "short_hamilton_clip.mp4")), tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    for _ in range(100):
        writer.write(capture.read()[1])
    writer.release()
    broken = tmp_path / "broken.avi"
    broken.write_bytes(whole.read_bytes()[:len(whole.read_bytes()) * 6 // 10])
    lines = tmp_path / "f.jsonl"
    done = subprocess.run([sys.executable, "-m", "runtime.camera", "--source", broken, "--headless", "--json", lines,
                           "--reconnect", "60"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "reconnect" not in done.stderr and 40 <= len(records(lines)) < 100


class TimedMjpegServer:
    """An MJPEG server that sends 30 frames a second, each with its number drawn as 16 black/white blocks, and
    remembers when it sent each one."""

    def __init__(self, fps: float = 30.0):
        self.fps, self.sent, self.closing = fps, {}, threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                started, number = time.monotonic(), 0
                try:
                    while not server.closing.is_set():
                        jpeg = cv2.imencode(".jpg", numbered_frame(number))[1].tobytes()
                        time.sleep(max(0.0, started + number / server.fps - time.monotonic()))
                        server.sent[number] = time.monotonic()
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        self.wfile.flush()
                        number += 1
                except OSError:
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def numbered_frame(number: int) -> np.ndarray:
    frame = np.full((240, 640, 3), 128, np.uint8)
    for bit in range(16):
        frame[100:140, bit * 40:(bit + 1) * 40] = 255 if number >> bit & 1 else 0
    return frame


def frame_number(frame: np.ndarray) -> int:
    return sum(1 << bit for bit in range(16) if frame[120, bit * 40 + 20].mean() > 128)


def test_a_slow_consumer_is_never_handed_an_old_frame():
    """A consumer that takes 100 ms per frame of a 30 fps stream drops frames instead of falling behind: by the
    frames' own timestamps (when they arrived), every frame it is handed is at most two frame intervals (67 ms) old;
    counted from when the server sent it (the number drawn in the frame), at most three (the extra interval:
    loopback, JPEG decoding and the scheduling of two busy cores; measured: a few ms, now and then 67 ms)."""
    server = TimedMjpegServer(fps=30.0)
    frames = LiveFrames(parse_source(server.url))
    try:
        ages, since_sent, numbers = [], [], []
        for _ in range(40):
            frame, timestamp = frames.read()
            now = time.monotonic()
            number = frame_number(frame)
            ages.append(now - frames.started - timestamp)
            since_sent.append(now - server.sent[number])
            numbers.append(number)
            time.sleep(0.1)  # the slow pipeline
        dropped = frames.dropped
    finally:
        frames.close()
        server.close()
    assert max(ages) <= 2 / 30, f"oldest frame handed out had arrived {max(ages) * 1000:.0f} ms before"
    assert max(since_sent) <= 3 / 30, f"oldest frame handed out was sent {max(since_sent) * 1000:.0f} ms before"
    assert numbers == sorted(numbers) and numbers[-1] - numbers[0] >= 100  # 4 s of the stream went by, not 40 frames
    assert dropped >= 60


def test_reconnect_zero_gives_up_at_once():
    """`--reconnect 0`: the first stop ends the stream (SourceLost), after one line saying so."""
    server = TimedMjpegServer()
    said: list[str] = []
    frames = LiveFrames(parse_source(server.url), reconnect_s=0, notify=said.append)
    try:
        assert frames.read() is not None
        server.close()
        with pytest.raises(SourceLost, match="did not come back within 0 s"):
            wait_until(lambda: frames.read() is None, 30, "the end")
    finally:
        frames.close()
    assert said[0].endswith("stopped delivering frames") and said[-1].startswith("gave up on http://127.0.0.1:")
    assert not any("reconnecting" in line for line in said)


# The Pi Camera Module: a STAND-IN of Picamera2 (tests/standins/picamera2), since no camera hardware is here.

def standin_factory():
    """The stand-in's Picamera2 class, without leaving the stand-in importable as `picamera2` in this process."""
    sys.path.insert(0, str(STANDINS))
    try:
        from picamera2 import Picamera2
    finally:
        sys.path.remove(str(STANDINS))
        sys.modules.pop("picamera2", None)
    return Picamera2


def test_picamera_colours_size_and_close_through_the_standin(monkeypatch, tmp_path):
    """Picamera2's RGB888 holds B, G, R bytes: a red scene reaches the pipeline as OpenCV's red (0, 0, 255)."""
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PICAMERA_STANDIN_LOG", str(log))
    monkeypatch.setenv("PICAMERA_STANDIN_RGB", "255,0,0")
    reader = PicameraReader(0, size=(320, 240), fps=15, factory=standin_factory())
    frame = reader.read()
    reader.close()
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8 and tuple(frame[0, 0]) == (0, 0, 255)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["call"] for c in calls] == ["Picamera2", "create_video_configuration", "configure", "start", "stop",
                                          "close"]
    assert calls[1]["main"] == {"size": [320, 240], "format": "RGB888"} and calls[1]["controls"] == {"FrameRate": 15.0}
    with pytest.raises(SourceError, match="cannot open Pi Camera Module 3: list index out of range"):
        PicameraReader(3, factory=standin_factory())


def test_fer_camera_on_the_pi_camera_module_standin(media, tmp_path):
    """`fer-camera --source picamera --camera-size 640x360 --camera-fps 15`, Picamera2 being the stand-in playing
    the sample clip: faces in the JSON, the start-up line says what the camera gives, the camera is closed at exit."""
    log, lines = tmp_path / "calls.jsonl", tmp_path / "f.jsonl"
    env = {"PYTHONPATH": str(STANDINS), "PICAMERA_STANDIN_LOG": str(log),
           "PICAMERA_STANDIN_VIDEO": str(media / "short_hamilton_clip.mp4")}
    done = fer_camera("--source", "picamera", "--camera-size", "640x360", "--camera-fps", 15, "--headless",
                      "--max-frames", 40, "--json", lines, env=env)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert "fer-camera: source Pi Camera Module 0 (640x360, 15 fps); detector YuNet" in err
    assert sum(len(r["faces"]) for r in records(lines)) >= 40
    calls = [json.loads(line)["call"] for line in log.read_text().splitlines()]
    assert calls[-2:] == ["stop", "close"]


def test_picamera_without_picamera2_says_what_to_install():
    if subprocess.run([sys.executable, "-c", "import picamera2"], capture_output=True).returncode == 0:
        pytest.skip("Picamera2 is installed here")
    done = subprocess.run([sys.executable, "-m", "runtime.camera", "--source", "picamera", "--headless"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "sudo apt install python3-picamera2" in done.stderr and "--system-site-packages" in done.stderr
