"""Where a stream's frames come from, and how a live one behaves.

    spec = parse_source("rtsp://user:secret@cam/stream")  # or "0", "/dev/video2", "clip.mp4", "picamera", "http://..."
    frames = open_frames(spec, size=(1280, 720), fps=30, reconnect_s=300, notify=print)
    while (got := frames.read()) is not None:
        frame, timestamp = got

A video file gives every frame in order, timed by its own frame rate. A live source (a camera, a network stream, the
Raspberry Pi Camera Module) is read on its own thread that keeps only the newest frame: a pipeline slower than the
source drops frames (counted) instead of falling behind. A live source that stops delivering is reopened with backoff
(1 s, doubling to 30 s) for up to `reconnect_s` seconds each time it drops; one that cannot be opened at the start
raises SourceError at once. Network streams use RTSP over TCP (UDP loses frames on Wi-Fi) unless
`OPENCV_FFMPEG_CAPTURE_OPTIONS` says otherwise. Every text meant for people uses `SourceSpec.display`, in which a
URL's password (and a `token=` in its query) is masked.
"""
from __future__ import annotations

import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol
from urllib.parse import urlsplit

import cv2
import numpy as np

URL_SCHEMES = ("rtsp", "rtsps", "http", "https")
RECONNECT_S = 300.0  # default time to get a lost live source back, per outage
BACKOFF_S = (1.0, 30.0)  # the first wait before reopening a lost source, and the longest
NETWORK_TIMEOUT_MS = 10_000  # FFmpeg's open and read timeouts for network streams
PICAMERA_HELP = ("Picamera2 is not installed (on Raspberry Pi OS: `sudo apt install python3-picamera2`, and a venv "
                 "made with `python3 -m venv --system-site-packages` to see it)")


class SourceError(RuntimeError):
    """A source that cannot be opened: one line naming it (password masked) and what to check."""


class SourceLost(RuntimeError):
    """A live source that stopped delivering and could not be reopened within its reconnect time."""


def mask_credentials(text: str) -> str:
    """`text` with every URL password (`scheme://user:secret@`) and `token=`/`password=` query value as ***."""
    text = re.sub(r"(://[^/@:\s]*):[^/\s]*@", r"\1:***@", text)  # up to the last @ of the host part
    return re.sub(r"([?&](?:token|password|passwd|pass|pwd|secret|key)=)[^&#\s]*", r"\1***", text, flags=re.I)


@dataclass(frozen=True)
class SourceSpec:
    """What `--source` names: kind "camera" (an index), "url", "picamera" (an index) or "file" (a path)."""
    kind: str
    target: int | str
    text: str

    @property
    def live(self) -> bool:
        return self.kind != "file"

    @property
    def display(self) -> str:
        """How the source is shown in lines, pages and files: never with its password."""
        if self.kind == "camera":
            return f"camera {self.target}" if self.text.isdigit() else f"camera {self.text}"
        if self.kind == "picamera":
            return f"Pi Camera Module {self.target}"
        return mask_credentials(self.text)


def parse_source(source: int | str | os.PathLike) -> SourceSpec:
    """The SourceSpec of a camera index, `/dev/videoN` (or a /dev/v4l/by-id link to one), an rtsp/rtsps/http/https
    URL, `picamera` or `picamera:N`, or a file path (not checked here). SourceError for what is none of these."""
    text = str(source)
    if isinstance(source, int) or text.isdigit():
        return SourceSpec("camera", int(text), text)
    if match := re.fullmatch(r"picamera(?::(\d+))?", text):
        return SourceSpec("picamera", int(match[1] or 0), text)
    scheme = urlsplit(text).scheme.lower() if "://" in text else ""
    if scheme in URL_SCHEMES:
        return SourceSpec("url", text, text)
    if scheme:
        raise SourceError(f"cannot read {mask_credentials(text)}: streams must be {', '.join(URL_SCHEMES)} URLs")
    if text.startswith("/dev/"):
        device = os.path.realpath(text)
        if match := re.fullmatch(r"/dev/video(\d+)", device):
            if not os.path.exists(device):
                raise SourceError(f"camera not found: {text} (`ls /dev/video*` lists the cameras)")
            return SourceSpec("camera", int(match[1]), text)
        raise SourceError(f"{text} is not a camera device: give /dev/videoN (`ls /dev/video*` lists them)")
    return SourceSpec("file", text, text)


class Reader(Protocol):
    """One opened source: `read()` gives the next BGR frame, or None when it delivers no more."""
    fps: float
    size: tuple[int, int] | None

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


@contextmanager
def opencv_quiet():
    """OpenCV's own log lines ('[ WARN:0@0.05] ... can't open camera by index') off meanwhile: the SourceError says
    what went wrong. $OPENCV_LOG_LEVEL set (`fer-camera --verbose` sets it) leaves them on."""
    if os.environ.get("OPENCV_LOG_LEVEL"):
        yield
        return
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


class CaptureReader:
    """A camera, a network stream or a video file through `cv2.VideoCapture`; `size` and `fps` are asked of a
    camera (it may choose others: `size` and `fps` then say what it delivers)."""

    def __init__(self, spec: SourceSpec, size: tuple[int, int] | None = None, fps: float | None = None):
        with opencv_quiet():
            if spec.kind == "url":
                os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
                capture = cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG,
                                           [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS,
                                            cv2.CAP_PROP_READ_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS])
                what = f"stream {spec.display}: check the address, that the server is up and its credentials"
            elif spec.kind == "camera":
                capture = cv2.VideoCapture(spec.target)
                what = f"{spec.display}: check that it is connected and not used by another program"
            else:
                capture = cv2.VideoCapture(str(spec.target))
                what = f"video {spec.display}: not a video file OpenCV can decode"
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open {what}")
        if spec.kind == "camera":
            if size:
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
            if fps:
                capture.set(cv2.CAP_PROP_FPS, fps)
        self.capture = capture
        self.fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.size = (width, height) if width and height else None

    def read(self) -> np.ndarray | None:
        ok, frame = self.capture.read()
        return frame if ok else None

    def close(self) -> None:
        self.capture.release()


class PicameraReader:
    """The Raspberry Pi Camera Module through Picamera2 (`picamera2.Picamera2`, or `factory`): a video configuration
    of the main stream in RGB888, which Picamera2 stores as B, G, R bytes: OpenCV's BGR order, used as it is."""

    def __init__(self, index: int = 0, size: tuple[int, int] | None = None, fps: float | None = None,
                 factory: Callable | None = None):
        if factory is None:
            try:
                from picamera2 import Picamera2 as factory
            except ModuleNotFoundError:
                raise SourceError(f"cannot open the Pi Camera Module: {PICAMERA_HELP}") from None
            except (ImportError, ValueError) as exc:  # e.g. apt's picamera2 built for apt's numpy 1.x, pip's is 2.x
                raise SourceError(f"cannot import Picamera2: {exc} (in a --system-site-packages venv, "
                                  "`pip install 'numpy<2'` matches the numpy that Raspberry Pi OS built it for)") from None
        try:
            camera = factory(index)
        except Exception as exc:  # Picamera2 raises IndexError, RuntimeError... when there is no such camera
            raise SourceError(f"cannot open Pi Camera Module {index}: {exc or type(exc).__name__} (is it connected? "
                              "`rpicam-hello --list-cameras` lists the cameras)") from None
        self.camera = camera
        try:
            main = {"format": "RGB888", **({"size": tuple(size)} if size else {})}
            controls = {"FrameRate": float(fps)} if fps else {}
            config = camera.create_video_configuration(main=main, controls=controls)
            camera.configure(config)
            camera.start()
        except Exception as exc:
            self.close()
            raise SourceError(f"cannot start Pi Camera Module {index}: {exc}") from None
        chosen = config.get("main", {}).get("size") if isinstance(config, dict) else None
        self.size = tuple(chosen) if chosen else (tuple(size) if size else None)
        self.fps = float(fps or 0.0)

    def read(self) -> np.ndarray | None:
        try:
            frame = self.camera.capture_array("main")
        except Exception:  # the camera went away
            return None
        if frame is None:
            return None
        return np.ascontiguousarray(frame[:, :, :3]) if frame.ndim == 3 and frame.shape[2] == 4 else frame

    def close(self) -> None:
        for step in ("stop", "close"):
            try:
                getattr(self.camera, step)()
            except Exception:
                pass


def open_reader(spec: SourceSpec, size: tuple[int, int] | None = None, fps: float | None = None) -> Reader:
    """The Reader for `spec`; SourceError (or FileNotFoundError for a missing video) when it cannot be opened."""
    if spec.kind == "picamera":
        return PicameraReader(int(spec.target), size, fps)
    if spec.kind == "file" and not Path(spec.target).is_file():
        raise FileNotFoundError(f"video not found: {spec.target}")
    return CaptureReader(spec, size, fps)


class FileFrames:
    """Every frame of a video file, in order, timed by the file's frame rate."""

    live = False

    def __init__(self, spec: SourceSpec):
        self.spec, self.reader = spec, open_reader(spec)
        self.fps, self.size = self.reader.fps, self.reader.size
        self.index, self.dropped, self.reconnects = 0, 0, 0

    def read(self) -> tuple[np.ndarray, float] | None:
        """(frame, seconds from the start), or None at the end."""
        frame = self.reader.read()
        if frame is None:
            return None
        timestamp = self.index / self.fps if self.fps else 0.0
        self.index += 1
        return frame, timestamp

    def close(self) -> None:
        self.reader.close()


class LiveFrames:
    """A live source read on its own thread: `read()` hands out the newest frame not yet handed out (waiting for one
    when there is none), so a slow consumer skips frames (`dropped`) rather than falling behind. When the source
    stops delivering it is reopened with backoff, each attempt reported through `notify`, for `reconnect_s` seconds;
    after that `read()` raises SourceLost."""

    live = True

    def __init__(self, spec: SourceSpec, size: tuple[int, int] | None = None, fps: float | None = None,
                 reconnect_s: float = RECONNECT_S, notify: Callable[[str], None] | None = None,
                 opener: Callable[[], Reader] | None = None):
        self.spec, self.reconnect_s = spec, reconnect_s
        self.notify = notify or (lambda message: None)
        self._open = opener or (lambda: open_reader(spec, size, fps))
        self.reader: Reader | None = self._open()  # SourceError at once when it cannot be opened now
        self.fps, self.size = self.reader.fps, self.reader.size
        self.dropped, self.reconnects, self.lost = 0, 0, False
        self._changed, self._closing = threading.Condition(), threading.Event()
        self._frame: np.ndarray | None = None
        self._time, self._seq, self._handed = 0.0, 0, 0
        self.started = time.monotonic()  # the clock (time.monotonic) that timestamps count from
        self._arrivals: list[float] = []
        self._thread = threading.Thread(target=self._run, name=f"fer-edge {spec.display}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closing.is_set():
            frame = self.reader.read() if self.reader is not None else None
            if self._closing.is_set():
                break
            if frame is None:
                if not self._reconnect():
                    break
                continue
            now = time.monotonic()
            with self._changed:
                if self._seq > self._handed:
                    self.dropped += 1  # the previous frame was never handed out
                self._frame, self._time, self._seq = frame, now, self._seq + 1
                self._arrivals = [t for t in self._arrivals if now - t < 2.0] + [now]
                self._changed.notify_all()
        if self.reader is not None:  # this thread is the only one that reads or closes the reader
            self.reader.close()
            self.reader = None
        with self._changed:
            self.lost = not self._closing.is_set()
            self._changed.notify_all()

    def _reconnect(self) -> bool:
        """Reopen the source with backoff within `reconnect_s`; False when it stays away (or the source closes)."""
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        started, delay, attempt = time.monotonic(), BACKOFF_S[0], 0
        self.notify(f"{self.spec.display} stopped delivering frames")
        while not self._closing.is_set():
            left = self.reconnect_s - (time.monotonic() - started)
            if left <= 0:
                self.notify(f"gave up on {self.spec.display} after {attempt} attempt{'s' if attempt != 1 else ''} "
                            f"in {time.monotonic() - started:.0f} s (reconnect time {self.reconnect_s:g} s)")
                return False
            wait, attempt = min(delay, left), attempt + 1
            self.notify(f"reconnecting to {self.spec.display} in {wait:.0f} s (attempt {attempt})")
            if self._closing.wait(wait):
                return False
            try:
                self.reader = self._open()
            except (SourceError, FileNotFoundError):
                delay = min(2 * delay, BACKOFF_S[1])
                continue
            self.reconnects += 1
            self.notify(f"reconnected to {self.spec.display} (attempt {attempt})")
            return True
        return False

    def read(self) -> tuple[np.ndarray, float] | None:
        """(the newest frame, seconds from the start to when it arrived); None once closed. SourceLost when the
        source could not be reopened."""
        with self._changed:
            while self._seq == self._handed and not self.lost and not self._closing.is_set():
                self._changed.wait(0.5)
            if self._seq == self._handed:
                if self.lost:
                    raise SourceLost(f"{self.spec.display} stopped delivering frames and did not come back within "
                                     f"{self.reconnect_s:g} s")
                return None
            self._handed = self._seq
            return self._frame, self._time - self.started

    def delivered_fps(self) -> float:
        """Frames per second arriving from the source over the last 2 s."""
        with self._changed:
            arrivals = list(self._arrivals)
        span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
        return round((len(arrivals) - 1) / span, 1) if span else 0.0

    def close(self) -> None:
        """Stop reading; the reader thread closes the source once its current read returns."""
        self._closing.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.join(timeout=NETWORK_TIMEOUT_MS / 1000 + 1)


def open_frames(spec: SourceSpec, size: tuple[int, int] | None = None, fps: float | None = None,
                reconnect_s: float = RECONNECT_S, notify: Callable[[str], None] | None = None) -> FileFrames | LiveFrames:
    """The frames of `spec`: every frame of a file, or the newest frames of a live source, reconnecting."""
    if spec.live:
        return LiveFrames(spec, size, fps, reconnect_s, notify)
    return FileFrames(spec)
