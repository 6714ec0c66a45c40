"""A video's expressions over time: one CSV row per frame and face, and a PNG chart per tracked face (OpenCV)."""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from .visualizer import FONT, PALETTE

PANEL = (960, 170)  # width, height of one face's chart
MAX_FACES = 8  # the longest-followed faces that get a chart
CSV_QUALITY = ("quality", "reliable", "yaw", "pitch", "roll")  # after the label columns


def _cell(value):
    return int(value) if isinstance(value, bool) else value


class SummaryCsv:
    """`frame, time, track_id, x, y, w, h, <label>..., quality, reliable, yaw, pitch, roll` rows (one per face and
    frame), written as they come; a value not known (no landmarks: no pose) is empty."""

    def __init__(self, file, labels: list[str]):
        """`file`: a text file opened for writing with newline=""."""
        self.labels, self.file = labels, file
        self.writer = csv.writer(self.file)
        self.writer.writerow(["frame", "time", "track_id", "x", "y", "w", "h", *labels, *CSV_QUALITY])
        self.file.flush()

    def write(self, index: int, timestamp: float | None, results: list[dict]) -> None:
        for r in results:
            self.writer.writerow([index, "" if timestamp is None else timestamp, r.get("track_id", ""), *r["box"],
                                  *(round(float(v), 4) for v in r["vector"]),
                                  *(_cell(r.get(key, "")) for key in CSV_QUALITY)])

    def close(self) -> None:
        self.file.close()


class ExpressionPlot:
    """Collects each tracked face's probabilities over time; `save(path)` draws one chart per face."""

    def __init__(self, labels: list[str], title: str = ""):
        self.labels, self.title = labels, title  # title: the source, shown above the charts
        self.series: dict[int, list[tuple[float, np.ndarray]]] = defaultdict(list)

    def add(self, index: int, timestamp: float | None, results: list[dict]) -> None:
        for r in results:
            self.series[r.get("track_id", 0)].append((index if timestamp is None else timestamp,
                                                      np.asarray(r["vector"], np.float32)))

    def time_axis(self) -> tuple[float, float]:
        """The charts' time axis: from the video's start (0) to its last face."""
        times = [t for points in self.series.values() for t, _ in points]
        return 0.0, max(times, default=1.0)

    def render(self) -> np.ndarray:
        """The chart (BGR): a legend, then the longest-followed faces, each label's probability over time."""
        faces = sorted(self.series, key=lambda k: -len(self.series[k]))[:MAX_FACES]
        left_out = len(self.series) - len(faces)
        width, height = PANEL
        notes = ([self.title[:110]] if self.title else []) + \
            ([f"{left_out} more face{'s' if left_out > 1 else ''}, followed for fewer frames, not charted "
              f"(the --summary CSV holds every face)"] if left_out else [])
        top_rows = 40 + 24 * len(notes)
        image = np.full((top_rows + max(1, len(faces)) * height, width, 3), 255, np.uint8)
        for i, note in enumerate(notes):
            cv2.putText(image, note, (10, 20 + 24 * i), FONT, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        for i, name in enumerate(self.labels):
            x, y = 10 + i * (width - 20) // len(self.labels), top_rows - 26
            cv2.rectangle(image, (x, y), (x + 16, y + 14), PALETTE[i % len(PALETTE)], -1)
            cv2.putText(image, name, (x + 22, y + 13), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        legend = top_rows
        if not faces:
            cv2.putText(image, "no face found", (20, legend + height // 2), FONT, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
        t0, t1 = self.time_axis()
        span = max(t1 - t0, 1e-6)
        for row, key in enumerate(faces):
            top = legend + row * height
            left, right, plot_top, plot_bottom = 70, width - 15, top + 28, top + height - 22
            points = self.series[key]
            title = f"face {key}: {len(points)} frames, {points[0][0]:.1f}-{points[-1][0]:.1f} s"
            cv2.putText(image, title, (left, top + 18), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
            cv2.rectangle(image, (left, plot_top), (right, plot_bottom), (160, 160, 160), 1)
            for value in (0.0, 0.5, 1.0):
                y = round(plot_bottom - value * (plot_bottom - plot_top))
                cv2.putText(image, f"{value:.1f}", (left - 40, y + 5), FONT, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
            for edge, t in ((left, t0), (right - 60, t1)):
                cv2.putText(image, f"{t:.1f} s", (edge, plot_bottom + 17), FONT, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
            xs = left + (np.array([t for t, _ in points]) - t0) / span * (right - left)
            values = np.stack([v for _, v in points])
            for c in range(values.shape[1]):
                ys = plot_bottom - values[:, c] * (plot_bottom - plot_top)
                line = np.stack([xs, ys], 1).round().astype(np.int32)
                cv2.polylines(image, [line], False, PALETTE[c % len(PALETTE)], 2, cv2.LINE_AA)
        return image

    def save(self, path: Path) -> bool:
        return bool(cv2.imwrite(str(path), self.render()))
