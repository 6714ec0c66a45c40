"""Expression recognition on a camera, a video, an image or a folder of images.

    python -m runtime.camera                       # camera 0, window if a display exists
    python -m runtime.camera --source clip.mp4 --headless --output out.mp4 --json out.jsonl
    python -m runtime.camera --source photos/      # one line per face on the terminal

With a display it shows the live visualizer (q or Esc quits); headless (e.g. a Pi over ssh) it
writes the files and prints a progress line. Ctrl-C stops after the current frame, every output
finalized and holding the same frames (a second Ctrl-C interrupts at once), exit code 130.
Exit codes: 0 done, 1 done but some images could not be read, 2 a usage error (nothing processed), 130 Ctrl-C.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from .classifier import SHIPPED_MODELS, ExpressionClassifier
from .detectors import DETECTORS, CascadeFaceDetector, create_detector
from .metadata import ModelError
from .image import to_bgr
from .outputs import IMAGE_EXTENSIONS, Frame, Outputs, UsageError, frame_record
from .serve import LOOPBACK, LiveView
from .pipeline import FramePipeline
from .smoothing import LinearExponentialSmoothing
from .solvers import StreamSolver
from .tracking import DEFAULT_DETECT_EVERY
from .visualizer import Visualizer, draw_faces, has_display

VIDEO_DETECT_WIDTH = 640


def _checked(kind: Callable, accepts: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """An argparse type: `kind(text)`, refused unless `accepts` it, the message naming what is accepted."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    return parse


class OneLineParser(argparse.ArgumentParser):
    """An argument error is one line (no usage block above it), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="fer-camera", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="0", help="camera index, video file, image file or folder of images")
    p.add_argument("--model", help=f"expression ONNX model: {' or '.join(SHIPPED_MODELS)} (the shipped ones, "
                                   "default fp32) or a file")
    p.add_argument("--detector", choices=DETECTORS, default="auto",
                   help="auto (default): YuNet when installed (python -m runtime.models download yunet) or given "
                        "with --detector-model, else the Haar cascade")
    p.add_argument("--detector-model", help="YuNet ONNX file (default: the one in the model folder)")
    p.add_argument("--smoothing", type=_checked(float, lambda v: math.isfinite(v) and 0 <= v < 1, "a rate in [0, 1)"),
                   default=0.3, help="smoothing rate across frames, 0 turns it off (default %(default)s)")
    p.add_argument("--detect-every", type=_checked(int, lambda v: v >= 1, "an integer >= 1"),
                   default=DEFAULT_DETECT_EVERY,
                   help="full face detection every N frames (and at scene cuts), known faces looked for "
                        "near their last box in between (default %(default)s; 1: every frame)")
    p.add_argument("--detect-width", type=_checked(int, lambda v: v == 0 or v >= 64, "0 or an integer >= 64"),
                   default=None, help="detect on a copy this wide, 0 for full size (default: 640 for video and "
                                      "camera, full size for images)")
    p.add_argument("--headless", action="store_true", help="never open a window")
    p.add_argument("--output", help="annotated .mp4/.avi for video or camera; image file or folder for images")
    p.add_argument("--json", help="write one JSON line per frame here")
    p.add_argument("--summary", help="video or camera: a CSV row per frame and face (time, track_id, box, "
                                     "every label's probability)")
    p.add_argument("--plot", help="video or camera: a PNG chart of each followed face's expressions over time")
    p.add_argument("--max-frames", type=_checked(int, lambda v: v >= 1, "an integer >= 1"), default=None,
                   help="stop after N frames")
    p.add_argument("--threads", type=_checked(int, lambda v: 1 <= v <= 64, "an integer from 1 to 64"), default=None,
                   help="onnxruntime threads (default: all cores)")
    p.add_argument("--serve", metavar="[HOST:]PORT", help="serve a live web view of a camera or video (host default "
                                                         "127.0.0.1; 0.0.0.0 to let the network in); a video then "
                                                         "plays at its own frame rate")
    p.add_argument("--serve-token", default=os.environ.get("FER_EDGE_TOKEN"),
                   help="with --serve: every request needs ?token=TOKEN or 'Authorization: Bearer TOKEN' "
                        "(default: $FER_EDGE_TOKEN)")
    p.add_argument("--serve-width", type=_checked(int, lambda v: 64 <= v <= 4096, "an integer from 64 to 4096"),
                   default=640, help="with --serve: largest width of the streamed frames (default %(default)s)")
    p.add_argument("--jpeg-quality", type=_checked(int, lambda v: 1 <= v <= 100, "an integer from 1 to 100"),
                   default=70, help="with --serve: JPEG quality of the stream (default %(default)s)")
    p.add_argument("--loop", action="store_true", help="play a video file again from the start when it ends")
    p.add_argument("--quiet", action="store_true", help="print nothing but warnings and errors")
    p.add_argument("--verbose", action="store_true", help="let OpenCV and FFmpeg print their own log lines")
    return p.parse_args(argv)


def silence_opencv() -> None:
    """OpenCV's and FFmpeg's own log lines ('[ WARN:0@0.078] ...', 'moov atom not found') off: errors are ours."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def build_parts(args: argparse.Namespace, video: bool):
    """(detector, classifier, smoother) as the options ask; smoothing only for video streams."""
    detect_width = (VIDEO_DETECT_WIDTH if video else None) if args.detect_width is None else args.detect_width or None
    detector = create_detector(args.detector, args.detector_model, detect_width)
    how_to_yunet = " (YuNet finds more faces: python -m runtime.models download yunet)" \
        if isinstance(detector, CascadeFaceDetector) and args.detector == "auto" else ""
    where = f" {detector.path}" if hasattr(detector, "path") else ""
    classifier = ExpressionClassifier(args.model, threads=args.threads)
    if not args.quiet:
        print(f"fer-camera: detector {detector.name}{where}{how_to_yunet}; model {classifier.path}", file=sys.stderr)
    smoother = LinearExponentialSmoothing(args.smoothing) if video and args.smoothing > 0 else None
    return detector, classifier, smoother


def image_files(source: Path) -> list[Path]:
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if source.is_dir() else [source]
    if not files:
        raise UsageError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in folder {source}")
    return files


def read_image(path: Path) -> np.ndarray | None:
    """uint8 image (16-bit images scaled down), or None when OpenCV cannot decode the file."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is not None and image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(1, int(image.max())))
    return image


def image_frames(files: list[Path], pipeline: FramePipeline, skipped: list[Path]) -> Iterator[Frame]:
    """Solved images; an unreadable one is skipped with a warning (added to `skipped`), the rest go on."""
    for index, path in enumerate(files):
        image = read_image(path)
        if image is None:
            print(f"fer-camera: warning: cannot read image {path}: not an image file OpenCV can decode; skipped",
                  file=sys.stderr)
            skipped.append(path)
            continue
        yield Frame(index, None, path.name, image, pipeline(image))


def stream_frames(solver, source: int | Path, loop: bool = False, paced: bool = False) -> Iterator[Frame]:
    """Solved frames of a camera (an int) or a video; `loop` starts a video again at its end, `paced` plays it at
    its own frame rate (as a camera would deliver it) instead of as fast as possible."""
    is_camera = isinstance(source, int)
    started, fps, index = time.monotonic(), solver.fps, 0
    while True:
        for results, frame in solver:
            timestamp = time.monotonic() - started if is_camera or not fps else index / fps
            if paced and fps and not is_camera:
                time.sleep(max(0.0, started + index / fps - time.monotonic()))
            yield Frame(index, round(timestamp, 3), None, frame, results)
            index += 1
        if not loop or is_camera or index == 0:
            return
        solver.start(source)


def face_lines(frame: Frame) -> str:
    """The terminal's lines for an image: one per face (file, box, label, probability), or 'no face'."""
    if not frame.results:
        return f"{frame.name}: no face"
    return "\n".join(f"{frame.name}: box {tuple(int(v) for v in r['box'])} {r['label']} {r['probability']:.2f}"
                     for r in frame.results)


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


def start_live_view(args: argparse.Namespace, detector, classifier) -> LiveView:
    """The --serve web view, started; UsageError for a bad address or a port in use."""
    host, _, port = args.serve.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--serve expects [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080, got {args.serve}")
    info = {"detector": detector.name, "model": Path(classifier.path).name}
    try:
        view = LiveView(host, int(port), args.serve_token, args.jpeg_quality, args.serve_width, info).start()
    except OSError as exc:
        raise UsageError(f"cannot serve on {host}:{port}: {exc.strerror or exc} (port in use? choose another "
                         "with --serve)") from None
    print(f"fer-camera: live view at {view.url}", file=sys.stderr, flush=True)
    if host not in LOOPBACK and not args.serve_token:
        print(f"fer-camera: warning: the live view on {host} is unauthenticated: anyone who can reach this machine "
              "can watch; set --serve-token or FER_EDGE_TOKEN", file=sys.stderr, flush=True)
    return view


def run(args: argparse.Namespace) -> int:
    source = args.source
    is_camera = source.isdigit()
    path = Path(source)
    if not is_camera and not path.exists():
        raise UsageError(f"source not found: {source} (give a camera index, a video, an image or a folder)")
    images = image_files(path) if not is_camera and (path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS) else None
    if images is not None and not path.is_dir() and read_image(path) is None:
        raise UsageError(f"cannot read image {path}: not an image file OpenCV can decode")
    if images is not None and (args.serve or args.loop):
        raise UsageError("--serve and --loop are for a camera or a video")
    detector, classifier, smoother = build_parts(args, video=images is None)
    solver, skipped, view = None, [], None
    if images is None:
        solver = StreamSolver(detector, classifier, detect_every=args.detect_every, smoother=smoother)
        solver.start(int(source) if is_camera else path)
    outputs = Outputs(args, images, None if is_camera or images is not None else path,
                      getattr(solver, "fps", 0.0), classifier.labels)
    if args.serve:
        view = start_live_view(args, detector, classifier)
    frames = stream_frames(solver, int(source) if is_camera else path, args.loop, paced=bool(view)) if solver \
        else image_frames(images, FramePipeline(detector, classifier), skipped)
    window = not args.headless and has_display()
    visualizer = Visualizer(classifier.labels) if window else None
    count, faces, started, last_print = 0, 0, time.monotonic(), 0.0
    stopped, code = "", 0
    try:
        with ctrl_c_between_frames() as ctrl_c:
            for frame in frames:
                annotated = draw_faces(to_bgr(frame.image).copy(), frame.results) if args.output or view else None
                outputs.write(frame, annotated)
                if view is not None:
                    view.publish(annotated, frame_record(frame, classifier.labels))
                count, faces = count + 1, faces + len(frame.results)
                if images is not None and not args.quiet:
                    print(face_lines(frame), flush=True)
                if visualizer is not None:
                    visualizer.update(frame.results, frame.image)
                    if visualizer.show() in (ord("q"), 27):
                        stopped = " (quit)"
                        break
                elif images is None and not args.quiet and time.monotonic() - last_print > 1.0:
                    last_print = time.monotonic()
                    print(f"\rframes {count}, faces {faces}, {count / (last_print - started + 1e-9):.1f} fps",
                          end="", file=sys.stderr, flush=True)
                if ctrl_c.is_set():
                    stopped, code = " (stopped by Ctrl-C)", 130
                    break
                if args.max_frames and count >= args.max_frames:
                    break
    except KeyboardInterrupt:
        stopped, code = " (stopped by Ctrl-C)", 130
    finally:
        if view is not None:
            view.close()
        outputs.close()
        if solver is not None:
            solver.close()
        if visualizer is not None:
            visualizer.close()
    elapsed = time.monotonic() - started
    what = "images" if images is not None else "frames"
    skip = f", {len(skipped)} unreadable image(s) skipped" if skipped else ""
    if not args.quiet or skipped or code:
        print(f"{chr(10) if last_print else ''}{count} {what}, {faces} faces, {count / max(elapsed, 1e-9):.1f} fps"
              f"{skip}{stopped}", file=sys.stderr)
    if not args.quiet:
        for name, where in (("annotated output", args.output), ("JSON lines", args.json), ("summary", args.summary),
                            ("chart", args.plot)):
            if where:
                print(f"{name}: {where}")
    return code or (1 if skipped else 0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.verbose:
        silence_opencv()
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
