"""OpenCV drawing of results: boxes with labels, a bar chart of the largest face's vector and a
strip chart of its recent vectors, composed into one image."""
from __future__ import annotations

import sys
from collections import deque

import cv2
import numpy as np

from .image import to_bgr
from .window import open_window, window_problem

# BGR, one distinct colour per class (in the shipped order: Surprise amber, Fear purple, Disgust olive, Happiness
# green, Sadness blue, Anger red, Neutral grey, Contempt pink), the same in annotated frames, the live view and plots
PALETTE = [(0, 200, 255), (180, 0, 180), (0, 128, 128), (0, 200, 0), (200, 120, 0), (0, 0, 230),
           (160, 160, 160), (160, 80, 255)]
PANEL_WIDTH = 320
FONT = cv2.FONT_HERSHEY_SIMPLEX


def text_colour(background) -> tuple[int, int, int]:
    """Black or white, whichever reads better on a BGR `background` (by its luminance)."""
    b, g, r = background
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 140 else (255, 255, 255)


MIN_FONT_SCALE = 0.35  # smaller OpenCV text cannot be read


def label_layout(image_shape, box, label: str, probability: float) -> tuple[str, tuple[int, int, int, int], float, int]:
    """A face's label: its text, background (x0, y0, x1, y1), font scale and thickness. The text grows with the
    image (readable on a 2,000 px portrait as on a 480 px frame) but is at most 1.6 times as wide as the face, so a
    grid of small faces keeps its labels apart: "Happiness 0.98", else "Happiness", else "Hap" for a face too small
    for more. It lies inside the image: above the box, or inside its top where there is no room above, shifted left
    at the right edge."""
    height, width = image_shape[:2]
    x, y, w, h = (int(v) for v in box)
    texts = [f"{label} {probability:.2f}", label, label[:3]]
    for text in texts:
        (unit, _), _ = cv2.getTextSize(text, FONT, 1.0, 1)
        scale = min(max(0.5, height / 800), 1.6 * w / max(unit, 1))
        if scale >= MIN_FONT_SCALE:
            break
    scale = max(scale, MIN_FONT_SCALE)
    thickness = max(1, round(scale * 1.5))
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    box_w, box_h = tw + 6, th + base + 4
    x0 = min(max(0, x), max(0, width - box_w))
    y0 = y - box_h if y - box_h >= 0 else max(0, min(y, height - box_h))
    return text, (x0, y0, x0 + box_w, y0 + box_h), scale, thickness


def dimmed(color) -> tuple[int, int, int]:
    """A class colour faded toward grey: how a face flagged unreliable (`runtime.quality`) is drawn."""
    return tuple(int(0.35 * c + 0.65 * 150) for c in color)


def draw_faces(image: np.ndarray, results: list[dict]) -> np.ndarray:
    """Draw every face's box with its label and probability onto `image` (BGR, in place); labels placed by
    `label_layout`; a face flagged unreliable in faded colours with a thin box."""
    line = max(1, round(max(0.5, image.shape[0] / 800) * 1.5)) + 1
    for r in results:
        x, y, w, h = (int(v) for v in r["box"])
        color, width = PALETTE[r["result"] % len(PALETTE)], line
        if r.get("reliable") is False:
            color, width = dimmed(color), max(1, line // 2)
        text, (x0, y0, x1, y1), scale, thickness = label_layout(image.shape, r["box"], r["label"], r["probability"])
        cv2.rectangle(image, (x, y), (x + w, y + h), color, width)
        cv2.rectangle(image, (x0, y0), (x1, y1), color, -1)
        (_, th), _ = cv2.getTextSize(text, FONT, scale, thickness)
        cv2.putText(image, text, (x0 + 3, y0 + th + 2), FONT, scale, text_colour(color), thickness, cv2.LINE_AA)
    return image


def has_display() -> bool:
    """True when a window can be shown (a desktop session with OpenCV's GUI or matplotlib's; not ssh, not a
    headless OpenCV without matplotlib): `runtime.window`."""
    return window_problem() is None


class Visualizer:
    """`update(results, frame)` then `render()` (an image) or `show()` (a window, when possible)."""

    def __init__(self, label_table: list[str], window_size: int = 20, window_name: str = "Expressions"):
        self.labels, self.window_name = list(label_table), window_name
        self.history: deque[np.ndarray] = deque(maxlen=window_size)
        self.results: list[dict] = []
        self.frame: np.ndarray | None = None
        self._window = None  # runtime.window's, opened by the first show()
        self._refused = False

    def update(self, results: list[dict], frame: np.ndarray) -> None:
        self.results, self.frame = results, frame
        if results:
            largest = max(results, key=lambda r: r["box"][2] * r["box"][3])
            self.history.append(np.asarray(largest["vector"], np.float32))

    def _bars(self, panel: np.ndarray, top: int, height: int) -> None:
        cv2.putText(panel, "largest face", (10, top + 18), FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        vector = self.history[-1] if self.results and self.history else np.zeros(len(self.labels))
        row = (height - 30) / len(self.labels)
        for i, (name, value) in enumerate(zip(self.labels, vector)):
            y = int(top + 30 + i * row)
            cv2.putText(panel, name, (10, y + int(row * 0.7)), FONT, 0.42, (230, 230, 230), 1, cv2.LINE_AA)
            length = int(float(value) * (PANEL_WIDTH - 150))
            cv2.rectangle(panel, (100, y + 3), (100 + length, y + int(row) - 3), PALETTE[i % len(PALETTE)], -1)
            cv2.putText(panel, f"{float(value):.2f}", (106 + length, y + int(row * 0.7)), FONT, 0.4,
                        (230, 230, 230), 1, cv2.LINE_AA)

    def _strip(self, panel: np.ndarray, top: int, height: int) -> None:
        cv2.putText(panel, f"last {self.history.maxlen} frames", (10, top + 18), FONT, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
        legend_rows = (len(self.labels) + 1) // 2
        plot_top, plot_bottom = top + 28, top + height - 16 * legend_rows - 8
        cv2.rectangle(panel, (10, plot_top), (PANEL_WIDTH - 10, plot_bottom), (90, 90, 90), 1)
        if len(self.history) > 1:
            values = np.stack(self.history)
            xs = np.linspace(10, PANEL_WIDTH - 10, self.history.maxlen)[-len(values):]
            for c in range(values.shape[1]):
                ys = plot_bottom - values[:, c] * (plot_bottom - plot_top)
                points = np.stack([xs, ys], 1).round().astype(np.int32)
                cv2.polylines(panel, [points], False, PALETTE[c % len(PALETTE)], 2, cv2.LINE_AA)
        for i, name in enumerate(self.labels):
            x, y = 10 + (i % 2) * 150, plot_bottom + 18 + (i // 2) * 16
            cv2.rectangle(panel, (x, y - 9), (x + 10, y + 1), PALETTE[i % len(PALETTE)], -1)
            cv2.putText(panel, name, (x + 14, y), FONT, 0.4, (230, 230, 230), 1, cv2.LINE_AA)

    def render(self) -> np.ndarray:
        """The annotated frame with the chart panel on its right (BGR uint8)."""
        frame = np.zeros((360, 480, 3), np.uint8) if self.frame is None else to_bgr(self.frame).copy()
        draw_faces(frame, self.results)
        height = max(frame.shape[0], 360)
        canvas = np.zeros((height, frame.shape[1] + PANEL_WIDTH, 3), np.uint8)
        canvas[:frame.shape[0], :frame.shape[1]] = frame
        panel = canvas[:, frame.shape[1]:]
        panel[:] = (30, 30, 30)
        self._bars(panel, 0, height // 2)
        self._strip(panel, height // 2, height - height // 2)
        return canvas

    def show(self, wait_ms: int = 1) -> int:
        """Show the rendered image in a window (`runtime.window`: OpenCV's or matplotlib's); the key pressed as
        cv2.waitKey gives it (-1: none; "q" when the window was closed). Where no window can open, one line on
        stderr says why and what to do instead, and -1 comes back."""
        if self._window is None and not self._refused:
            self._window = open_window(self.window_name)
            if self._window is None:
                self._refused = True
                print(f"Visualizer: no window: {window_problem()}", file=sys.stderr)
        if self._window is None:
            return -1
        key = self._window.show(self.render(), wait_ms)
        return ord(key[0]) if key else -1

    def close(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None
