"""Expression recognition on a camera, a network stream, the Pi Camera Module, a video, an image or a folder.

    python -m runtime.camera                       # camera 0, window if a display exists
    python -m runtime.camera --source picamera --headless --serve 8080   # Raspberry Pi Camera Module (Picamera2)
    python -m runtime.camera --source rtsp://user:pass@cam/stream --headless --json faces.jsonl
    python -m runtime.camera --source clip.mp4 --headless --output out.mp4 --json out.jsonl
    python -m runtime.camera --source photos/      # one line per face on the terminal

With a display it shows the live visualizer (q or Esc quits); headless (e.g. a Pi over ssh) it
writes the files and prints a progress line. Ctrl-C stops after the current frame, every output
finalized and holding the same frames (a second Ctrl-C interrupts at once), exit code 130.
A live source that stops delivering is reopened (--reconnect); a slow pipeline skips a live source's frames rather
than falling behind. Exit codes: 0 done, 1 done but some images could not be read or a live source was lost, 2 a
usage error (nothing processed), 130 Ctrl-C.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .classifier import ExpressionClassifier
from .detectors import VIDEO_DETECT_WIDTH, CascadeFaceDetector, create_detector
from .metadata import ModelError
from .image import to_bgr
from .outputs import IMAGE_EXTENSIONS, Frame, Outputs, UsageError, frame_record
from .camera_options import parse_args
from .serve import LOOPBACK, LiveView
from .photos import read_photo
from .pipeline import FramePipeline
from .smoothing import LinearExponentialSmoothing
from .solvers import StreamSolver
from .sources import SourceError, SourceLost, SourceSpec, parse_source
from .metrics import FreeMemoryReturner
from .mqtt import MqttError, MqttPublisher, check_options, parse_broker_url
from .terminal import ProgressLine, native_stderr, silence_opencv
from .visualizer import Visualizer, draw_faces
from .window import window_problem


def build_parts(args: argparse.Namespace, video: bool):
    """(detector, classifier, smoother) as the options ask; smoothing only for video streams."""
    detect_width = (VIDEO_DETECT_WIDTH if video else None) if args.detect_width is None else args.detect_width or None
    detector = create_detector(args.detector, args.detector_model, detect_width)
    classifier = ExpressionClassifier(args.model, threads=args.threads)
    smoother = LinearExponentialSmoothing(args.smoothing, skip_unreliable=args.min_quality is not None) \
        if video and args.smoothing > 0 else None
    return detector, classifier, smoother


def start_up_line(args: argparse.Namespace, spec: SourceSpec, images: list[Path] | None, solver, detector,
                  classifier) -> str:
    """What the run uses: the source and what it delivers (cameras negotiate), the detector and its file, the model."""
    if images is not None:
        source = f"{spec.display} ({len(images)} image{'s' if len(images) != 1 else ''})"
    else:
        size = solver.frames.size
        delivers = [f"{size[0]}x{size[1]}" if size else "size not reported",
                    f"{solver.fps:g} fps" if solver.fps else "fps not reported"]
        source = f"{spec.display} ({', '.join(delivers)})"
    where = f" {detector.path}" if hasattr(detector, "path") else ""
    missing = " (no YuNet file in this install: reinstall fer-edge for the better detector)" \
        if isinstance(detector, CascadeFaceDetector) and args.detector == "auto" else ""
    return f"fer-camera: source {source}; detector {detector.name}{where}{missing}; model {classifier.path}"


def image_files(source: Path) -> list[Path]:
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if source.is_dir() else [source]
    if not files:
        raise UsageError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in folder {source}")
    folders = sum(p.is_dir() for p in source.iterdir()) if source.is_dir() else 0
    if folders:
        print(f"fer-camera: note: the {folders} folder{'s' if folders > 1 else ''} inside {source} "
              f"{'are' if folders > 1 else 'is'} not searched (give each as --source)", file=sys.stderr)
    return files


def image_frames(files: list[Path], pipeline: FramePipeline, skipped: list[Path],
                 verbose: bool = False) -> Iterator[Frame]:
    """Solved images; an unreadable one is skipped with a warning (added to `skipped`), the rest go on. What the
    decoder says of a damaged file becomes one warning line naming it (its own lines with `verbose`)."""
    for index, path in enumerate(files):
        with native_stderr(not verbose) as said:
            image = read_photo(path)
        if said:
            print(f"fer-camera: warning: {path}: the decoder says {said[0].strip()!r}"
                  f"{' (the part it could read is used)' if image is not None else ''}", file=sys.stderr)
        if image is None:
            print(f"fer-camera: warning: cannot read image {path}: not an image file OpenCV can decode; skipped",
                  file=sys.stderr)
            skipped.append(path)
            continue
        yield Frame(index, None, path.name, image, pipeline(image))


def stream_frames(solver: StreamSolver, loop: bool = False, paced: bool = False) -> Iterator[Frame]:
    """Solved frames of the solver's source; `loop` plays a video again at its end, `paced` plays it at its own frame
    rate (as a camera would deliver it) instead of as fast as possible. A live source's frames are timed by their
    arrival, a video's by its frame rate. SourceLost when a live source is gone for good."""
    live = solver.source.live
    started, fps, index = time.monotonic(), solver.fps, 0
    while True:
        for results, frame in solver:
            timestamp = solver.timestamp if live else index / fps if fps else 0.0
            if paced and fps and not live:
                time.sleep(max(0.0, started + index / fps - time.monotonic()))
            yield Frame(index, round(timestamp, 3), None, frame, results)
            index += 1
        if not loop or live or index == 0:
            return
        solver.restart()


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


def serve_address(text: str) -> tuple[str, int]:
    """--serve's [HOST:]PORT as (host, port); UsageError when it is not one."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--serve expects [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080, got {text}")
    return host.strip("[]") or "127.0.0.1", int(port)


def start_live_view(args: argparse.Namespace, spec: SourceSpec, detector, classifier) -> LiveView:
    """The --serve web view, started (nothing printed); UsageError for a bad address or a port in use."""
    host, port = serve_address(args.serve)
    info = {"source": spec.display, "detector": detector.name, "model": Path(classifier.path).name}
    try:
        return LiveView(host, port, args.serve_token, args.jpeg_quality, args.serve_width, info,
                        metrics_only=args.serve_metrics_only).start()
    except OSError as exc:
        raise UsageError(f"cannot serve on {host}:{port}: {exc.strerror or exc} (port in use? choose another "
                         "with --serve)") from None


def live_view_lines(args: argparse.Namespace, view: LiveView) -> list[str]:
    """Where the live view is, and a warning when anyone on the network may watch it."""
    lines = [f"fer-camera: live view at {view.url}"]
    if view.host not in LOOPBACK and not args.serve_token:
        lines.append(f"fer-camera: warning: the live view on {view.host} is unauthenticated: anyone who can reach "
                     "this machine can watch; set --serve-token or FER_EDGE_TOKEN")
    return lines


def check_source(args: argparse.Namespace) -> tuple[SourceSpec, list[Path] | None]:
    """The source, and the images to process (None for a stream); UsageError for a source that cannot be used."""
    try:
        spec = parse_source(args.source)
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    path, images = Path(args.source), None
    if spec.kind == "file":
        if not path.exists():
            raise UsageError(f"source not found: {args.source} (give a camera index, /dev/videoN, a stream URL, "
                             "picamera, a video, an image or a folder)")
        if path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS:
            images = image_files(path)
        with native_stderr(not args.verbose):  # image_frames warns of a damaged file
            unreadable = images is not None and not path.is_dir() and read_photo(path) is None
        if unreadable:
            raise UsageError(f"cannot read image {path}: not an image file OpenCV can decode")
    if images is not None and (args.serve or args.loop):
        raise UsageError("--serve and --loop are for a camera, a stream or a video")
    if (args.camera_size or args.camera_fps) and spec.kind not in ("camera", "picamera"):
        raise UsageError("--camera-size and --camera-fps are for a camera or the Pi Camera Module")
    if args.serve:
        serve_address(args.serve)
    if args.serve_metrics_only and not args.serve:
        raise UsageError("--serve-metrics-only goes with --serve [HOST:]PORT")
    if (args.mqtt_ca or args.mqtt_discovery) and not args.mqtt:
        raise UsageError("--mqtt-ca and --mqtt-discovery go with --mqtt URL")
    if args.mqtt and images is not None:
        raise UsageError("--mqtt is for a camera, a stream or a video")
    if args.mqtt:
        try:
            check_options(args.mqtt, args.mqtt_ca)
        except MqttError as exc:
            raise UsageError(str(exc)) from None
    return spec, images


def status_of(solver, faces: int, mqtt: MqttPublisher | None) -> dict:
    """The run's counters for /health and /metrics: faces, time per stage, a live source's frames arriving per
    second, dropped frames and reconnects, MQTT's."""
    status = {"faces": faces, "stage_seconds": {"decode": round(solver.read_seconds, 4),
                                                **{k: round(v, 4) for k, v in solver.pipeline.seconds.items()}}}
    if solver.source.live:
        frames = solver.frames
        status.update(source_fps=frames.delivered_fps(), dropped=frames.dropped, reconnects=frames.reconnects)
    if mqtt is not None:
        status["mqtt"] = mqtt.stats()
    return status


def run(args: argparse.Namespace) -> int:
    """Check everything, open everything (any usage error is raised before a line is printed), then process."""
    spec, images = check_source(args)
    detector, classifier, smoother = build_parts(args, video=images is None)
    problem = None if args.headless else window_problem()
    window = not args.headless and problem is None
    if problem and not args.quiet and not (args.serve or args.mqtt):
        print(f"fer-camera: note: no window: {problem}", file=sys.stderr)
    progress = ProgressLine(enabled=images is None and not window and not args.quiet)
    solver, skipped, view, outputs, mqtt, live = None, [], None, None, None, None
    warn = lambda message: progress.line(f"fer-camera: warning: {message}")  # noqa: E731
    try:
        if images is None:
            solver = StreamSolver(detector, classifier, detect_every=args.detect_every, smoother=smoother,
                                  min_quality=args.min_quality)
            solver.start(spec, args.camera_size, args.camera_fps, args.reconnect, notify=warn)
        if args.serve:
            view = start_live_view(args, spec, detector, classifier)
        outputs = Outputs(args, images, Path(args.source) if spec.kind == "file" and images is None else None,
                          getattr(solver, "fps", 0.0), classifier.labels, spec.display)
        if args.mqtt:
            mqtt = MqttPublisher(parse_broker_url(args.mqtt), args.mqtt_rate, args.mqtt_discovery, args.mqtt_ca,
                                 notify=warn, reliable_only=args.min_quality is not None)  # checked by check_source
    except BaseException:
        for part in (mqtt, outputs, view, solver):
            if part is not None:
                part.close()
        raise
    if not args.quiet:
        print(start_up_line(args, spec, images, solver, detector, classifier), file=sys.stderr, flush=True)
    for line in live_view_lines(args, view) if view else []:
        print(line, file=sys.stderr, flush=True)
    if mqtt is not None and mqtt.wait_connected() and not args.quiet:
        print(f"fer-camera: publishing to {mqtt.broker.display} under {mqtt.broker.prefix}/", file=sys.stderr)
    frames = stream_frames(solver, args.loop, paced=bool(view)) if solver \
        else image_frames(images, FramePipeline(detector, classifier, photos=True, rotations=not args.no_rotations,
                                                min_quality=args.min_quality),
                          skipped, args.verbose)
    visualizer = Visualizer(classifier.labels) if window else None
    give_back_memory = FreeMemoryReturner()  # a run of days keeps a steady RSS
    count, faces, started, last_print = 0, 0, time.monotonic(), 0.0
    stopped, code = "", 0
    try:
        with ctrl_c_between_frames() as ctrl_c:
            for frame in frames:
                drawn = args.output or (view is not None and not view.metrics_only)
                annotated = draw_faces(to_bgr(frame.image).copy(), frame.results) if drawn else None
                outputs.write(frame, annotated)
                count, faces = count + 1, faces + len(frame.results)
                if view is not None or mqtt is not None:
                    record = frame_record(frame, classifier.labels)
                    if mqtt is not None:
                        mqtt.publish_frame(record)
                    if view is not None:
                        view.publish(annotated, record, status_of(solver, faces, mqtt) if solver else None)
                if images is not None and not args.quiet:
                    print(face_lines(frame), flush=True)
                if visualizer is not None:
                    visualizer.update(frame.results, frame.image)
                    if visualizer.show() in (ord("q"), 27):
                        stopped = " (quit)"
                        break
                elif time.monotonic() - last_print > 1.0:
                    last_print = time.monotonic()
                    progress.update(counts(count, faces, count / (last_print - started + 1e-9), solver, spec))
                give_back_memory(time.monotonic())
                if ctrl_c.is_set():
                    stopped, code = " (stopped by Ctrl-C)", 130
                    break
                if args.max_frames and count >= args.max_frames:
                    break
    except KeyboardInterrupt:
        stopped, code = " (stopped by Ctrl-C)", 130
    except SourceLost:  # the reader already said why, line by line
        stopped, code = f" ({spec.display} lost)", 1
    finally:
        if mqtt is not None:
            mqtt.close()
        if view is not None:
            view.close()
        outputs.close()
        if solver is not None:
            live = (solver.frames.dropped, solver.frames.reconnects) if spec.live and solver.frames else None
            solver.close()
        if visualizer is not None:
            visualizer.close()
    progress.end()
    elapsed = time.monotonic() - started
    what = "images" if images is not None else "frames"
    skip = f", {len(skipped)} unreadable image(s) skipped" if skipped else ""
    if not args.quiet or skipped or code:
        line = counts(count, faces, count / max(elapsed, 1e-9), solver, spec, closing=what, live=live)
        print(f"{line}{skip}{stopped}", file=sys.stderr)
    if not args.quiet:
        for name, where in (("annotated output", args.output), ("JSON lines", args.json), ("summary", args.summary),
                            ("chart", args.plot)):
            if where:
                print(f"{name}: {where}")
    return code or (1 if skipped else 0)


def counts(count: int, faces: int, fps: float, solver, spec: SourceSpec, closing: str | None = None,
           live: tuple[int, int] | None = None) -> str:
    """The progress line ('frames 120, faces 80, ...') or, given what was counted (`closing`: frames, images), the
    closing one ('120 frames, 80 faces, ...'); a live source's dropped frames and reconnects follow (`live`: those
    counts of a source already closed)."""
    if closing:
        noun = closing[:-1] if count == 1 and closing.endswith("s") else closing
        line = f"{count} {noun}, {faces} face{'' if faces == 1 else 's'}"
    else:
        line = f"frames {count}, faces {faces}"
    if not (closing and count == 1):  # no rate for a single image or frame
        line += f", {fps:.1f} fps"
    if live is None and solver is not None and spec.live and solver.frames is not None:
        live = solver.frames.dropped, solver.frames.reconnects
    if live is not None:
        dropped, reconnects = live
        line += f", {dropped} dropped"
        if reconnects:
            line += f", {reconnects} reconnect{'s' if reconnects > 1 else ''}"
    return line


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__)
    if not args.verbose:
        silence_opencv()
    else:
        os.environ.setdefault("OPENCV_LOG_LEVEL", "INFO")  # runtime.sources.opencv_quiet leaves OpenCV's lines on
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
