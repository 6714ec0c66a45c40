"""What the CLIs show on the terminal: the progress line of a stream, rewritten in place on stderr, and the lines
(warnings, reconnects) that may come between its updates from any thread; and what they keep off it (OpenCV's,
FFmpeg's and libjpeg's own lines)."""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import cv2


class ProgressLine:
    """`update(text)` rewrites the progress line (when `enabled`) on a terminal, or, when the stream is a file or a
    pipe (a log), prints it as a plain line every `every_s` seconds; `line(text)` prints a full line above it; `end()`
    moves past it. Safe to call from several threads."""

    def __init__(self, enabled: bool, stream=None, every_s: float = 10.0):
        self.enabled, self.stream = enabled, stream or sys.stderr
        self.terminal = getattr(self.stream, "isatty", lambda: False)()
        self.every_s, self._printed = every_s, -every_s
        self._lock, self._width = threading.Lock(), 0

    def update(self, text: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            if not self.terminal:
                if time.monotonic() - self._printed >= self.every_s:
                    self._printed = time.monotonic()
                    print(text, file=self.stream, flush=True)
                return
            print("\r" + text.ljust(self._width), end="", file=self.stream, flush=True)
            self._width = len(text)

    def line(self, text: str) -> None:
        with self._lock:
            if self._width:
                print("\r" + " " * self._width + "\r", end="", file=self.stream)
                self._width = 0
            print(text, file=self.stream, flush=True)

    def end(self) -> None:
        with self._lock:
            if self._width:
                print(file=self.stream, flush=True)
                self._width = 0


def silence_opencv() -> None:
    """OpenCV's and FFmpeg's own log lines ('[ WARN:0@0.078] ...', 'moov atom not found') off: errors are ours."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


@contextmanager
def native_stderr(capture: bool) -> Iterator[list[str]]:
    """What C libraries write to stderr meanwhile (libjpeg's 'Premature end of JPEG file'), caught into the list
    it yields instead of the terminal when `capture` (else left alone)."""
    said: list[str] = []
    if not capture:
        yield said
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield said
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            said.extend(line for line in caught.read().decode(errors="replace").splitlines() if line.strip())
