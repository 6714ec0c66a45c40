"""runtime.models: the model folder, and verified, atomic downloads from a loopback HTTP server."""
from __future__ import annotations

import hashlib
import http.server
import socket
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import pytest

from runtime.detectors import CascadeFaceDetector, YuNetFaceDetector, create_detector
from runtime.models import BUNDLED, MODELS, DownloadError, download, find, installed, model_dir

from .conftest import DATA, ROOT


@pytest.fixture()
def server(yunet_model):
    """127.0.0.1 on an ephemeral port: /good.onnx the whole file, /cut.onnx half of it then the connection closes."""
    body = yunet_model.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path not in ("/good.onnx", "/cut.onnx"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body if self.path == "/good.onnx" else body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hashlib.sha256(body).hexdigest()
    httpd.shutdown()
    httpd.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_model_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FER_EDGE_HOME", str(tmp_path / "home"))
    assert model_dir() == tmp_path / "home"
    monkeypatch.delenv("FER_EDGE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert model_dir() == tmp_path / "cache" / "fer-edge"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert model_dir() == tmp_path / ".cache" / "fer-edge"


def test_download_verified_and_usable(server, tmp_path, yunet_model):
    url, sha = server
    path = download("yunet", f"{url}/good.onnx", sha, folder=tmp_path, progress=None)
    assert path == tmp_path / MODELS["yunet"].name and path.read_bytes() == yunet_model.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODELS["yunet"].name]
    assert len(YuNetFaceDetector(path).detect(cv2.imread(str(DATA / "obama-480p.jpg")))) == 1


@pytest.mark.parametrize("case, message", [
    ("mismatch", "does not have the expected SHA-256"),
    ("cut", "stopped after 114869 of 229738 bytes"),
    ("refused", "Connection refused"),
    ("missing", "Not Found"),
])
def test_failed_downloads_keep_nothing_and_say_where_to_put_the_file(server, tmp_path, case, message):
    url, sha = server
    target = {"mismatch": (f"{url}/good.onnx", None), "cut": (f"{url}/cut.onnx", sha),
              "refused": (f"http://127.0.0.1:{_free_port()}/x.onnx", sha), "missing": (f"{url}/nope.onnx", sha)}[case]
    with pytest.raises(DownloadError, match=message) as caught:
        download("yunet", *target, folder=tmp_path, progress=None, timeout=10)
    assert f"save it as {tmp_path / MODELS['yunet'].name}" in str(caught.value) and target[0] in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_download_keeps_nothing(server, tmp_path):
    url, sha = server

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download("yunet", f"{url}/good.onnx", sha, folder=tmp_path, progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_cli_download_and_list(server, tmp_path):
    url, sha = server
    env = {"PATH": "/usr/bin:/bin", "FER_EDGE_HOME": str(tmp_path)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "runtime.models", *a], cwd=ROOT, capture_output=True,
                                    text=True, timeout=60, env=env)
    listed = run("list")
    assert listed.returncode == 0 and "not in the model folder; used: the package's" in listed.stdout
    bad = run("download", "yunet", "--url", f"{url}/good.onnx")  # the pinned 2023mar hash: this file differs
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("fer-models: error: ")
    assert "Traceback" not in bad.stderr and not (tmp_path / MODELS["yunet"].name).exists()
    good = run("download", "yunet", "--url", f"{url}/good.onnx", "--sha256", sha)
    assert good.returncode == 0 and "SHA-256 verified" in good.stdout
    assert "installed: " in run("list").stdout


def test_auto_is_the_packages_yunet_unless_the_model_folder_has_one(monkeypatch, tmp_path, yunet_model):
    monkeypatch.setenv("FER_EDGE_HOME", str(tmp_path))
    assert installed("yunet") is None and find("yunet") == BUNDLED["yunet"].path
    for kind in ("auto", "yunet"):
        detector = create_detector(kind)
        assert isinstance(detector, YuNetFaceDetector) and detector.path == BUNDLED["yunet"].path
    assert isinstance(create_detector("auto", yunet_model), YuNetFaceDetector)  # a file given: that one
    (tmp_path / MODELS["yunet"].name).write_bytes(yunet_model.read_bytes())  # placed by hand: it takes precedence
    auto = create_detector("auto")
    assert isinstance(auto, YuNetFaceDetector) and auto.path == tmp_path / MODELS["yunet"].name
    assert isinstance(create_detector("haar"), CascadeFaceDetector)


def test_without_any_yunet_file_auto_is_haar_and_yunet_says_why(monkeypatch, tmp_path):
    """A package whose data files were stripped (some repackagers do): auto still runs, yunet names the fix."""
    import runtime.models

    monkeypatch.setenv("FER_EDGE_HOME", str(tmp_path))
    monkeypatch.setattr(runtime.models, "BUNDLED_DIR", tmp_path / "stripped")
    assert find("yunet") is None
    assert isinstance(create_detector("auto"), CascadeFaceDetector)
    with pytest.raises(FileNotFoundError, match="YuNet is missing from this install: reinstall fer-edge"):
        create_detector("yunet")


def test_the_shipped_yunet_is_the_opencv_zoo_file_with_its_license():
    bundled = BUNDLED["yunet"]
    assert hashlib.sha256(bundled.path.read_bytes()).hexdigest() == bundled.sha256
    license_text = (bundled.path.parent / bundled.license_file).read_text()
    assert "MIT License" in license_text and "Copyright (c) 2020 Shiqi Yu" in license_text
    assert bundled.name in license_text and bundled.sha256 in license_text
    assert bundled.sha256 in (ROOT / "docs" / "detection.md").read_text()  # the docs give the hash too
    assert len(YuNetFaceDetector(bundled.path).detect(cv2.imread(str(DATA / "obama-480p.jpg")))) == 1


def test_a_file_that_is_not_yunet_is_a_one_line_error(tiny_onnx, capfd):
    with pytest.raises(ValueError, match="is not a YuNet face-detection model"):
        YuNetFaceDetector(tiny_onnx)
    assert "ERROR" not in capfd.readouterr().err  # OpenCV's own log lines are silenced
