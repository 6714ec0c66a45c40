"""What `fer-camera` writes: the annotated video or images, JSON lines, a CSV summary and a chart; and the check
that no output ever overwrites an input."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .image import to_bgr
from .summary import ExpressionPlot, SummaryCsv
from .visualizer import draw_faces

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


class UsageError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


@dataclass
class Frame:
    """One solved frame: its index, time in seconds (None for images), file name (images) and results."""
    index: int
    timestamp: float | None
    name: str | None
    image: np.ndarray
    results: list[dict]


QUALITY_KEYS = ("quality", "reliable", "sharpness", "yaw", "pitch", "roll")  # runtime.pipeline.assess's


def frame_record(frame: Frame, labels: list[str]) -> dict:
    """The JSON record of a frame (one `--json` line): frame, timestamp, image name, and per face its box, label,
    probability and vector (the seed's order), `scores` by label, `track_id` and `detector_score` when known, and how
    far it can be trusted: `quality`, `reliable`, `sharpness` and the head pose `yaw`, `pitch`, `roll` (degrees; where
    the detector gives landmarks)."""
    faces = []
    for r in frame.results:
        face = {"box": [int(v) for v in r["box"]], "label": r["label"], "probability": round(float(r["probability"]), 4),
                "vector": [round(float(v), 4) for v in r["vector"]],
                "scores": {label: round(float(v), 4) for label, v in zip(labels, r["vector"])}}
        for key in ("track_id", "detector_score", *QUALITY_KEYS):
            if key in r:
                face[key] = r[key]
        faces.append(face)
    record = {"frame": frame.index, "timestamp": frame.timestamp, "faces": faces}
    if frame.name:
        record["image"] = frame.name
    return record


def reliable_only(results: list[dict]) -> list[dict]:
    """The results flagged reliable (a result without the flag counts as reliable)."""
    return [r for r in results if r.get("reliable", True)]


def _same(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwrites(inputs: list[Path], outputs: dict[str, list[Path]]) -> None:
    """UsageError when an output file is an input file, or two outputs are the same file (before anything is written)."""
    seen: list[tuple[str, Path]] = []
    for option, paths in outputs.items():
        for path in paths:
            for source in inputs:
                if _same(path, source):
                    raise UsageError(f"{option} {path} would overwrite the input {source}; choose another path")
            for other, earlier in seen:
                if _same(path, earlier):
                    raise UsageError(f"{option} and {other} are the same file {path}; choose another path")
            seen.append((option, path))


class Outputs:
    """The annotated video/images, the JSON lines, the CSV summary and the chart; `close()` always finalizes them.

    Every path is checked against the inputs (`refuse_overwrites`) before any file is created."""

    def __init__(self, args, images: list[Path] | None, video: Path | None, fps: float, labels: list[str],
                 source: str = ""):
        """`video`: the input video file (never overwritten); `source`: how the source is shown (the chart's title,
        credentials masked)."""
        self.output = Path(args.output) if args.output else None
        self.images, self.fps, self.labels = images, fps or 30.0, labels
        self.min_quality = getattr(args, "min_quality", None)  # set: unreliable faces stay out of --summary, --plot
        self.writer: cv2.VideoWriter | None = None
        self.json = self.csv = self.plot = None
        self.plot_path = Path(args.plot) if args.plot else None
        if self.output and images is None and self.output.suffix.lower() not in VIDEO_CODECS:
            raise UsageError(f"--output for a video or camera must end in {' or '.join(VIDEO_CODECS)}, got {self.output}")
        if images is not None and (args.summary or args.plot):
            raise UsageError("--summary and --plot follow faces over time: give a video or a camera as --source")
        if self.output and images is not None and self.output.suffix \
                and self.output.suffix.lower() not in IMAGE_EXTENSIONS and not self.output.is_dir():
            raise UsageError(f"--output {self.output}: annotated images are written as "
                             f"{', '.join(sorted(IMAGE_EXTENSIONS))}; give a file with one of these or a folder")
        # images go into a folder unless one image is written to a file name with an image extension
        self.into_folder = bool(self.output) and images is not None and (
            len(images) > 1 or self.output.suffix.lower() not in IMAGE_EXTENSIONS)
        targets = {"--output": [self.output / p.name for p in images] if self.into_folder else
                   [self.output] if self.output else [],
                   "--json": [Path(args.json)] if args.json else [],
                   "--summary": [Path(args.summary)] if args.summary else [],
                   "--plot": [self.plot_path] if self.plot_path else []}
        refuse_overwrites(list(images or []) + ([video] if video else []), targets)
        if self.output and self.output.suffix.lower() not in (IMAGE_EXTENSIONS | set(VIDEO_CODECS)) \
                and self.output.exists() and not self.output.is_dir():
            raise UsageError(f"--output {self.output} is a file; give a folder for the annotated images")
        for path in (targets["--output"] + targets["--json"] + targets["--summary"] + targets["--plot"]):
            self._make_dir(path.parent)
        if args.json:
            self.json = self._open(args.json, buffering=1)  # line-buffered: readable while running
        if args.summary:
            self.csv = SummaryCsv(self._open(args.summary, newline=""), labels)
        if self.plot_path:
            self.plot = ExpressionPlot(labels, source)

    @staticmethod
    def _open(path, **kwargs):
        try:
            return open(path, "w", **kwargs)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None

    @staticmethod
    def _make_dir(path: Path) -> None:
        for folder in (path, *path.parents):
            if folder.exists():
                if not folder.is_dir():
                    raise UsageError(f"cannot create output folder {path}: {folder} is a file")
                break
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create output folder {path}: {exc.strerror}") from None

    def write(self, frame: Frame, annotated: np.ndarray | None = None) -> None:
        """Append the frame to every output; `annotated` is the drawn frame when the caller has it already."""
        if self.json:
            self.json.write(json.dumps(frame_record(frame, self.labels)) + "\n")
        summarised = reliable_only(frame.results) if self.min_quality is not None else frame.results
        if self.csv:
            self.csv.write(frame.index, frame.timestamp, summarised)
        if self.plot:
            self.plot.add(frame.index, frame.timestamp, summarised)
        if self.output:
            if annotated is None:
                annotated = draw_faces(to_bgr(frame.image).copy(), frame.results)
            self._write_image(annotated, frame)

    def _write_image(self, annotated: np.ndarray, frame: Frame) -> None:
        if self.images is None:
            if self.writer is None:
                height, width = annotated.shape[:2]
                fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.output.suffix.lower()])
                self.writer = cv2.VideoWriter(str(self.output), fourcc, self.fps, (width, height))
                if not self.writer.isOpened():
                    raise UsageError(f"cannot write video {self.output}")
            self.writer.write(annotated)
            return
        target = self.output / frame.name if self.into_folder else self.output
        if not cv2.imwrite(str(target), annotated):
            raise UsageError(f"cannot write image {target}")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
        for stream in (self.json, self.csv):
            if stream:
                stream.close()
        if self.plot and not self.plot.save(self.plot_path):
            raise UsageError(f"cannot write {self.plot_path}")
