"""Expression recognition on a camera, a video, an image or a folder of images.

    python -m runtime.camera                       # camera 0, window if a display exists
    python -m runtime.camera --source clip.mp4 --headless --output out.mp4 --json out.jsonl

With a display it shows the live visualizer (q or Esc quits); headless (e.g. a Pi over ssh) it
writes the files and prints a progress line. Ctrl-C stops after the current frame, every output
finalized and holding the same frames (a second Ctrl-C interrupts at once).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .classifier import ExpressionClassifier
from .detectors import DETECTORS, CascadeFaceDetector, create_detector
from .image import to_bgr
from .metadata import ModelError
from .pipeline import FramePipeline
from .smoothing import LinearExponentialSmoothing
from .solvers import StreamSolver
from .tracking import DEFAULT_DETECT_EVERY
from .visualizer import Visualizer, draw_faces, has_display

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_DETECT_WIDTH = 640
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


class UsageError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


@dataclass
class Frame:
    index: int
    timestamp: float | None
    name: str | None
    image: np.ndarray
    results: list[dict]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fer-camera", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="0", help="camera index, video file, image file or folder of images")
    p.add_argument("--model", help="expression ONNX model (default: the shipped one)")
    p.add_argument("--detector", choices=DETECTORS, default="auto",
                   help="auto (default): YuNet when installed (python -m runtime.models download yunet) or given "
                        "with --detector-model, else the Haar cascade")
    p.add_argument("--detector-model", help="YuNet ONNX file (default: the one in the model folder)")
    p.add_argument("--smoothing", type=float, default=0.3, help="smoothing rate across frames, 0 turns it off")
    p.add_argument("--detect-every", type=int, default=DEFAULT_DETECT_EVERY,
                   help="full face detection every N frames (and at scene cuts), known faces looked for "
                        "near their last box in between (default %(default)s; 1: every frame)")
    p.add_argument("--detect-width", type=int, default=None,
                   help="detect on a copy this wide, 0 for full size (default: 640 for video and camera, "
                        "full size for images)")
    p.add_argument("--headless", action="store_true", help="never open a window")
    p.add_argument("--output", help="annotated .mp4/.avi for video or camera; image file or folder for images")
    p.add_argument("--json", help="write one JSON line per frame here")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: no limit)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    return p.parse_args(argv)


def build_parts(args: argparse.Namespace, video: bool):
    """(detector, classifier, smoother) as the options ask; smoothing only for video streams."""
    if args.smoothing < 0 or args.smoothing > 1:
        raise UsageError(f"--smoothing must be between 0 and 1, got {args.smoothing}")
    detect_width = (VIDEO_DETECT_WIDTH if video else None) if args.detect_width is None else args.detect_width or None
    detector = create_detector(args.detector, args.detector_model, detect_width)
    how_to_yunet = " (YuNet finds more faces: python -m runtime.models download yunet)" \
        if isinstance(detector, CascadeFaceDetector) and args.detector == "auto" else ""
    where = f" {detector.path}" if hasattr(detector, "path") else ""
    print(f"fer-camera: detector {detector.name}{where}{how_to_yunet}", file=sys.stderr)
    smoother = LinearExponentialSmoothing(args.smoothing) if video and args.smoothing > 0 else None
    return detector, ExpressionClassifier(args.model, threads=args.threads), smoother


def image_files(source: Path) -> list[Path]:
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if source.is_dir() else [source]
    if not files:
        raise UsageError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in folder {source}")
    return files


def image_frames(files: list[Path], pipeline: FramePipeline) -> Iterator[Frame]:
    for index, path in enumerate(files):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise UsageError(f"cannot read image {path}: not an image file OpenCV can decode")
        if image.dtype != np.uint8:
            image = cv2.convertScaleAbs(image, alpha=255.0 / max(1, int(image.max())))
        yield Frame(index, None, path.name, image, pipeline(image))


def stream_frames(solver, is_camera: bool) -> Iterator[Frame]:
    started, fps = time.monotonic(), getattr(solver, "fps", 0.0)
    for index, (results, frame) in enumerate(solver):
        timestamp = time.monotonic() - started if is_camera or not fps else index / fps
        yield Frame(index, round(timestamp, 3), None, frame, results)


class Outputs:
    """The annotated video/images and the JSON lines; `close()` always finalizes them."""

    def __init__(self, output: str | None, json_path: str | None, images: list[Path] | None, fps: float):
        self.output, self.images, self.fps = (Path(output) if output else None), images, fps or 30.0
        self.writer: cv2.VideoWriter | None = None
        self.json = None
        if self.output and images is None and self.output.suffix.lower() not in VIDEO_CODECS:
            raise UsageError(f"--output for a video or camera must end in {' or '.join(VIDEO_CODECS)}, got {self.output}")
        # images go into a folder unless one image is written to a file name with an image extension
        self.into_folder = bool(self.output) and images is not None and (
            len(images) > 1 or self.output.suffix.lower() not in IMAGE_EXTENSIONS)
        if self.into_folder:
            self._make_dir(self.output)
        elif self.output:
            self._make_dir(self.output.parent)
        if json_path:
            self._make_dir(Path(json_path).parent)
            try:
                self.json = open(json_path, "w", buffering=1)  # line-buffered: readable while running
            except OSError as exc:
                raise UsageError(f"cannot write {json_path}: {exc.strerror}") from None

    @staticmethod
    def _make_dir(path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create output folder {path}: {exc.strerror}") from None

    def write(self, frame: Frame) -> None:
        if self.json:
            faces = [{"box": list(r["box"]), "label": r["label"], "probability": round(r["probability"], 4),
                      "vector": [round(float(v), 4) for v in r["vector"]]} for r in frame.results]
            record = {"frame": frame.index, "timestamp": frame.timestamp, "faces": faces}
            if frame.name:
                record["image"] = frame.name
            self.json.write(json.dumps(record) + "\n")
        if self.output:
            self._write_image(draw_faces(to_bgr(frame.image).copy(), frame.results), frame)

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
        if self.json:
            self.json.close()


@contextmanager
def ctrl_c_between_frames() -> Iterator[threading.Event]:
    """Turn the first Ctrl-C into a flag the frame loop checks, so every output holds the same frames.

    A second Ctrl-C raises KeyboardInterrupt as usual (for a source that hangs).
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
        yield stop
        return

    def on_sigint(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def run(args: argparse.Namespace) -> int:
    source = args.source
    is_camera = source.isdigit()
    path = Path(source)
    if not is_camera and not path.exists():
        raise UsageError(f"source not found: {source} (give a camera index, a video, an image or a folder)")
    images = image_files(path) if not is_camera and (path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS) else None
    detector, classifier, smoother = build_parts(args, video=images is None)
    solver = None
    if images is None:
        solver = StreamSolver(detector, classifier, detect_every=args.detect_every, smoother=smoother)
        frames = stream_frames(solver.start(int(source) if is_camera else path), is_camera)
    else:
        frames = image_frames(images, FramePipeline(detector, classifier))
    window = not args.headless and has_display()
    visualizer = Visualizer(classifier.labels) if window else None
    outputs = Outputs(args.output, args.json, images, getattr(solver, "fps", 0.0))
    count, faces, started, last_print = 0, 0, time.monotonic(), 0.0
    stopped = ""
    try:
        with ctrl_c_between_frames() as ctrl_c:
            for frame in frames:
                outputs.write(frame)
                count, faces = count + 1, faces + len(frame.results)
                if visualizer is not None:
                    visualizer.update(frame.results, frame.image)
                    if visualizer.show() in (ord("q"), 27):
                        stopped = " (quit)"
                        break
                elif time.monotonic() - last_print > 1.0:
                    last_print = time.monotonic()
                    print(f"\rframes {count}, faces {faces}, {count / (last_print - started + 1e-9):.1f} fps",
                          end="", file=sys.stderr, flush=True)
                if ctrl_c.is_set():
                    stopped = " (stopped by Ctrl-C)"
                    break
                if args.max_frames and count >= args.max_frames:
                    break
    except KeyboardInterrupt:
        stopped = " (stopped by Ctrl-C)"
    finally:
        outputs.close()
        if solver is not None:
            solver.close()
        if visualizer is not None:
            visualizer.close()
    elapsed = time.monotonic() - started
    progress_shown = "\n" if last_print else ""
    print(f"{progress_shown}{count} frames, {faces} faces, {count / max(elapsed, 1e-9):.1f} fps{stopped}", file=sys.stderr)
    for what, where in (("annotated output", args.output), ("JSON lines", args.json)):
        if where:
            print(f"{what}: {where}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (UsageError, ModelError, FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"fer-camera: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fer-camera: stopped by Ctrl-C", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
