"""A desktop window for the live picture: OpenCV's own (where its build has a GUI) or matplotlib's (the seed's way,
with an interactive backend such as TkAgg), whichever this machine can open; or, where neither can, the one-line
reason and what to do instead.

    window = open_window("Expressions")      # None: print(window_problem())
    key = window.show(bgr_image)             # the key pressed ("q", "\x1b") or "" ; "q" when the window was closed
"""
from __future__ import annotations

import os
import sys

import cv2
import numpy as np

INSTEAD = "use --headless (files only), --serve (a browser) or pip install 'fer-edge[gui]' (matplotlib)"


def _display() -> bool:
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def opencv_has_gui() -> bool:
    """Whether this OpenCV build can open windows (opencv-python-headless cannot)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return "NONE" not in line.upper() and "NO" != line.split(":", 1)[1].strip().upper()
    return False


def _matplotlib_backend() -> str | None:
    """An interactive matplotlib backend that can open here (None without matplotlib or a GUI toolkit)."""
    try:
        import matplotlib
    except ImportError:
        return None
    current = matplotlib.get_backend().lower()
    if current not in ("agg", "pdf", "svg", "ps", "cairo", "template") and "inline" not in current:
        return matplotlib.get_backend()
    for candidate in ("TkAgg", "QtAgg", "GTK3Agg", "WxAgg", "MacOSX"):
        try:
            matplotlib.use(candidate, force=True)
            import matplotlib.pyplot as plt

            plt.figure().canvas  # opens the toolkit: fails without it
            plt.close("all")
            return candidate
        except Exception:  # each toolkit fails in its own way
            continue
    matplotlib.use("Agg", force=True)
    return None


def window_problem() -> str | None:
    """Why no window can open here, with what to do instead; None when one can."""
    if not _display():
        return f"no desktop display (DISPLAY is not set: ssh or a service): {INSTEAD}"
    if opencv_has_gui() or _matplotlib_backend():
        return None
    return (f"this OpenCV has no GUI (opencv-python-headless) and matplotlib with a GUI toolkit (Tk, Qt, GTK) is not "
            f"installed: {INSTEAD}")


class OpenCVWindow:
    """A window through OpenCV's highgui."""

    def __init__(self, name: str):
        self.name = name

    def show(self, image: np.ndarray, wait_ms: int = 1) -> str:
        cv2.imshow(self.name, image)
        key = cv2.waitKey(wait_ms)
        if key < 0:
            return "q" if cv2.getWindowProperty(self.name, cv2.WND_PROP_VISIBLE) < 1 else ""
        return chr(key & 0xFF)

    def close(self) -> None:
        cv2.destroyWindow(self.name)


class MatplotlibWindow:
    """A window through matplotlib (the seed drew with it), the image updated in place."""

    def __init__(self, name: str):
        import matplotlib.pyplot as plt

        self.plt, self.keys, self.closed = plt, [], False
        self.figure = plt.figure(name)
        self.figure.canvas.manager.set_window_title(name)
        self.axes = self.figure.add_axes([0, 0, 1, 1])
        self.axes.axis("off")
        self.picture = None
        self.figure.canvas.mpl_connect("key_press_event", lambda event: self.keys.append(event.key or ""))
        self.figure.canvas.mpl_connect("close_event", lambda event: setattr(self, "closed", True))
        plt.show(block=False)

    def show(self, image: np.ndarray, wait_ms: int = 1) -> str:
        if self.closed:
            return "q"
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if self.picture is None or self.picture.get_array().shape != rgb.shape:
            self.axes.clear()
            self.axes.axis("off")
            self.picture = self.axes.imshow(rgb)
            height, width = rgb.shape[:2]
            self.figure.set_size_inches(width / self.figure.dpi, height / self.figure.dpi)
        else:
            self.picture.set_data(rgb)
        self.plt.pause(max(wait_ms, 1) / 1000)
        key = self.keys.pop(0) if self.keys else ""
        return {"escape": "\x1b"}.get(key, key)

    def close(self) -> None:
        self.plt.close(self.figure)


def open_window(name: str) -> OpenCVWindow | MatplotlibWindow | None:
    """A window this machine can open (OpenCV's first, then matplotlib's); None where `window_problem()` says why."""
    if window_problem() is not None:
        return None
    return OpenCVWindow(name) if opencv_has_gui() else MatplotlibWindow(name)
