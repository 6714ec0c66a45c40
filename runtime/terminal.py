"""What `fer-camera` shows on the terminal: the progress line of a stream, rewritten in place on stderr, and the
lines (warnings, reconnects) that may come between its updates from any thread."""
from __future__ import annotations

import sys
import threading


class ProgressLine:
    """`update(text)` rewrites the progress line (when `enabled`); `line(text)` prints a full line above it;
    `end()` moves past it. Safe to call from several threads."""

    def __init__(self, enabled: bool, stream=None):
        self.enabled, self.stream = enabled, stream or sys.stderr
        self._lock, self._width = threading.Lock(), 0

    def update(self, text: str) -> None:
        if not self.enabled:
            return
        with self._lock:
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
