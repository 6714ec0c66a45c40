"""Progress of a long loop that fits where it goes: a tqdm bar on a terminal, one plain line every `every_s` seconds
when stderr is a file or a pipe (a log keeps a readable line instead of thousands of carriage-return updates).

    with progress(total=len(items), desc="sources", unit="source") as bar:
        for item in items:
            ...
            bar.update(1)
            bar.set_postfix_str("frames 1200, faces 800")
    for batch in progress(loader, desc="evaluate", leave=False):   # over an iterable
        ...
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TextIO

from tqdm import tqdm

PLAIN_EVERY_S = 10.0


class PlainProgress:
    """tqdm's surface (update, set_postfix_str, write, close) as a line every `every_s` seconds, in tqdm's words
    (`tqdm.format_meter`: count, rate, elapsed and remaining time)."""

    def __init__(self, total: int | None, desc: str, unit: str, file: TextIO, every_s: float = PLAIN_EVERY_S,
                 iterable: Iterable | None = None):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit, self.file, self.every_s = total, desc, unit, file, every_s
        self.iterable, self.n, self.postfix = iterable, 0, ""
        self.started = self._last = time.monotonic()

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)

    def line(self) -> str:
        meter = tqdm.format_meter(self.n, self.total, time.monotonic() - self.started, prefix=self.desc,
                                  unit=self.unit, postfix=self.postfix or None, ncols=0)
        return meter.strip()

    def _maybe_print(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            print(self.line(), file=self.file, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        self._maybe_print()

    def refresh(self) -> None:
        self._maybe_print()

    def set_postfix(self, **values) -> None:
        self.set_postfix_str(", ".join(f"{k}={v}" for k, v in values.items()))

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text
        if refresh:
            self._maybe_print()

    def write(self, text: str) -> None:
        print(text, file=self.file, flush=True)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
             file: TextIO | None = None, enabled: bool = True, every_s: float = PLAIN_EVERY_S, **tqdm_options):
    """Progress over `iterable` (or `total` steps counted with `update`): a tqdm bar (given `tqdm_options`, e.g.
    leave=False) when `file` (default stderr) is a terminal, else a `PlainProgress`; with `enabled` False, one that
    counts and prints nothing but what is given to `write`."""
    file = file or sys.stderr
    if not enabled:
        return PlainProgress(total, desc, unit, file, float("inf"), iterable)
    if getattr(file, "isatty", lambda: False)():
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=file, dynamic_ncols=True, **tqdm_options)
    return PlainProgress(total, desc, unit, file, every_s, iterable)
