"""Measured speed of every stage of the runtime pipeline on a video.

    python -m benchmarks.fps --source ../shared/media/short_hamilton_clip.mp4 --threads 1
    python -m benchmarks.fps --source CLIP --compare          # fp32/int8, Haar/YuNet, fast settings on/off
    python -m benchmarks.fps --source CLIP --soak 10000       # RSS growth over a long run

Frames run through the runtime's own per-frame pipeline (`runtime.FramePipeline`). Reports the time per
frame of each stage (decode, detect, classify = crop + preprocess + model, smooth, draw), end-to-end FPS,
faces per second, the classifier's per-face latency (p50/p95, one face through `predict`), peak RSS and the
decode-only FPS of the same video (the ceiling). With --compare, recall is the share of a reference's faces that a
variant finds (IoU >= 0.4): YuNet on the whole of every frame when its file is present, else the Haar cascade.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from runtime import DEFAULT_MODEL, ExpressionClassifier, FramePipeline, LinearExponentialSmoothing, VideoSolver
from runtime.boxes import box_iou
from runtime.detectors import DETECTORS, create_detector
from runtime.models import find
from runtime.tracking import DEFAULT_DETECT_EVERY, IntervalDetector
from runtime.visualizer import draw_faces

from runtime.progress import progress

STAGES = ("decode", "detect", "classify", "smooth", "draw")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "media" / "short_hamilton_clip.mp4"
DEFAULT_YUNET = find("yunet")  # the model folder's, else the package's own
MATCH_IOU = 0.4  # a found box counts for a reference face at this IoU
WARMUP = 20  # frames solved before each variant is timed
# The runtime's fast defaults (runtime.camera and this benchmark).
FAST = {"detect_every": DEFAULT_DETECT_EVERY, "detect_width": 640}
SLOW = {"detect_every": 1, "detect_width": 0}


class UsageError(Exception):
    pass


@dataclass
class RunReport:
    name: str
    frames: int
    faces: int
    ms_per_frame: dict[str, float]
    fps: float
    faces_per_second: float
    classifier_ms_per_face_p50: float
    classifier_ms_per_face_p95: float
    decode_only_fps: float
    ratio_to_decode: float
    recall: float | None = None
    boxes: list = field(default_factory=list, repr=False)


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "opencv": cv2.__version__, "onnxruntime": ort.__version__}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def decode_fps(source: Path, count: int) -> float:
    capture = cv2.VideoCapture(str(source))
    started, n = time.perf_counter(), 0
    while n < count:
        ok, _ = capture.read()
        if not ok:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        n += 1
    capture.release()
    return n / (time.perf_counter() - started)


def make_detector(kind: str, model: Path | None, detect_every: int, detect_width: int,
                  region_face_width: int | None | str = "default", **tracking):
    """The detector a variant runs (`runtime.detectors.create_detector`: auto, haar or yunet); `tracking` holds
    IntervalDetector options other than `every`; `region_face_width` overrides YuNet's."""
    detector = create_detector(kind, model if kind != "haar" else None, detect_width or None)
    if region_face_width != "default" and hasattr(detector, "region_face_width"):
        detector.region_face_width = region_face_width
    return IntervalDetector(detector, every=detect_every, **tracking) if detect_every > 1 else detector


def face_latency(classifier: ExpressionClassifier, face: np.ndarray, repeats: int = 300) -> tuple[float, float]:
    """p50/p95 milliseconds of classifying one face crop (`predict`: preprocessing and the model)."""
    for _ in range(20):
        classifier.predict([face])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        classifier.predict([face])
        times.append(time.perf_counter() - started)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3)


def run_pipeline(name: str, source: Path, frames: int, pipeline: FramePipeline, decode_only: float) -> RunReport:
    """Decode, solve and draw `frames` frames, timing each stage, after WARMUP frames solved untimed (a new model
    session's first calls are slow: without them the first variant of a --compare run read up to 10% slower than the
    same work later in the run)."""
    capture = cv2.VideoCapture(str(source))
    for _ in range(WARMUP):
        ok, frame = capture.read()
        if not ok:
            break
        pipeline(frame)
    pipeline.reset()
    pipeline.seconds = dict.fromkeys(pipeline.seconds, 0.0)
    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    decode = draw = 0.0
    faces, boxes_per_frame, sample_face = 0, [], None
    for _ in progress(range(frames), desc=name, leave=False):
        t0 = time.perf_counter()
        ok, frame = capture.read()
        if not ok:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = capture.read()
        t1 = time.perf_counter()
        results = pipeline(frame)
        t2 = time.perf_counter()
        if results and sample_face is None:
            sample_face = pipeline.classifier.crop(frame, results[0]["box"]).copy()
        draw_faces(frame, results)
        decode, draw = decode + t1 - t0, draw + time.perf_counter() - t2
        faces += len(results)
        boxes_per_frame.append([list(r["box"]) for r in results])
    capture.release()
    totals = {"decode": decode, **pipeline.seconds, "draw": draw}
    total = sum(totals.values())
    p50, p95 = face_latency(pipeline.classifier, sample_face) if sample_face is not None else (float("nan"),) * 2
    return RunReport(name, frames, faces, {k: round(1e3 * totals[k] / frames, 3) for k in STAGES},
                     round(frames / total, 1), round(faces / total, 1), round(p50, 3), round(p95, 3),
                     round(decode_only, 1), round(frames / total / decode_only, 3), boxes=boxes_per_frame)


def recall(found: list, reference: list, iou: float = MATCH_IOU) -> float:
    """Share of reference boxes matched one-to-one by a found box with IoU >= `iou`."""
    hit = total = 0
    for mine, ref in zip(found, reference):
        total += len(ref)
        free = list(mine)
        for r in ref:
            best = max(free, key=lambda b: box_iou(b, r), default=None)
            if best is not None and box_iou(best, r) >= iou:
                hit += 1
                free.remove(best)
    return hit / total if total else 1.0


def soak(source: Path, frames: int, detector, classifier: ExpressionClassifier) -> dict:
    """Loop the video through VideoSolver for `frames` frames, sampling RSS."""
    samples, n = [], 0
    solver = VideoSolver(detector, classifier, detect_every=1, smoother=LinearExponentialSmoothing(0.3))
    bar = progress(total=frames, desc="soak")
    while n < frames:
        solver.start(source)
        for _ in solver:
            n += 1
            bar.update(1)
            if n % 250 == 0:
                samples.append((n, round(current_rss_mb(), 2)))
            if n >= frames:
                break
    solver.close()
    warm = [rss for count, rss in samples if count >= min(1000, frames // 5)]
    growth = (warm[-1] - warm[0]) if len(warm) > 1 else 0.0
    return {"frames": n, "rss_mb_samples": samples, "rss_growth_after_warmup_mb": round(growth, 2)}


def write_report(report: dict, path: str | None) -> None:
    """The report as JSON at `path` (nothing when None)."""
    if path:
        Path(path).write_text(json.dumps(report, indent=1))
        print(f"report: {path}")


def print_table(reports: list[RunReport]) -> None:
    header = (f"{'variant':38} {'FPS':>7} {'x dec':>6} " + " ".join(f"{s[:7]:>7}" for s in STAGES)
              + f" {'faces/s':>8} {'ms/face':>8} {'p95':>6} {'recall':>7}")
    print(header)
    print("-" * len(header))
    for r in reports:
        stages = " ".join(f"{r.ms_per_frame[s]:7.3f}" for s in STAGES)
        rec = "" if r.recall is None else f"{100 * r.recall:6.1f}%"
        print(f"{r.name:38} {r.fps:7.1f} {r.ratio_to_decode:6.2f} {stages} {r.faces_per_second:8.1f} "
              f"{r.classifier_ms_per_face_p50:8.3f} {r.classifier_ms_per_face_p95:6.3f} {rec:>7}")
    print("(stage columns: milliseconds per frame; ms/face and p95: classifier latency for one face; "
          "x dec: share of decode-only FPS)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fer-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=str(DEFAULT_SOURCE) if DEFAULT_SOURCE.is_file() else None,
                   help="video file (default: the sample clip beside a checkout, ../shared/media)")
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--detector", choices=DETECTORS, default="auto",
                   help="auto: YuNet when --detector-model exists, else Haar (as fer-camera)")
    p.add_argument("--detector-model", default=DEFAULT_YUNET and str(DEFAULT_YUNET),
                   help="YuNet file (default: the model folder's, else the package's)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--detect-every", type=int, default=FAST["detect_every"])
    p.add_argument("--detect-width", type=int, default=FAST["detect_width"], help="0: full size")
    p.add_argument("--compare", action="store_true", help="fp32/int8, Haar/YuNet, fast settings on/off")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every variant this many times, in turn, and keep each one's fastest run (the spread "
                        "between runs of the same work on a shared machine is about 10%%)")
    p.add_argument("--soak", type=int, default=0, help="loop the video for N frames and report RSS growth")
    p.add_argument("--json", help="write the report here")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    if args.source is None:
        raise UsageError("give a video with --source (the sample clip ../shared/media/short_hamilton_clip.mp4 "
                         "is not beside this installation)")
    source = Path(args.source)
    if not source.is_file():
        raise UsageError(f"video not found: {source}")
    if args.rounds < 1:
        raise UsageError(f"--rounds {args.rounds}: give 1 or more")
    cv2.setNumThreads(args.threads)
    decode_only = decode_fps(source, args.frames)
    classifier = lambda model: ExpressionClassifier(model, threads=args.threads)
    pipeline = lambda detector, model, every_frame=False: FramePipeline(
        detector, classifier(model), LinearExponentialSmoothing(0.3), classify_every_frame=every_frame)
    report: dict = {"machine": machine(), "source": str(source), "threads": args.threads, "frames": args.frames}
    if args.soak:
        yunet = Path(args.detector_model) if args.detector_model else None
        detector = make_detector(args.detector, yunet, args.detect_every, args.detect_width)
        report["soak"] = soak(source, args.soak, detector, classifier(args.model))
        print(f"soak: {report['soak']['frames']} frames, RSS growth after warm-up "
              f"{report['soak']['rss_growth_after_warmup_mb']} MB")
        return report
    yunet = Path(args.detector_model) if args.detector_model and Path(args.detector_model).is_file() else None
    default = make_detector(args.detector, yunet, 1, 0).name
    variants = [(f"{Path(args.model).stem} {args.detector} ({default}) every={args.detect_every} w={args.detect_width}",
                 args.model, args.detector, args.detect_every, args.detect_width, {})]
    if args.compare:
        int8 = str(Path(args.model).with_name(Path(args.model).name.replace(".onnx", ".int8.onnx")))
        fast, slow = (FAST["detect_every"], FAST["detect_width"]), (SLOW["detect_every"], SLOW["detect_width"])
        variants = [(f"fp32 auto ({default}) fast (default)", args.model, "auto", *fast, {}),
                    ("fp32 auto fast, faces never turned upright", args.model, "auto", *fast, {"align_roll": None}),
                    ("fp32 auto fast, classify every frame", args.model, "auto", *fast,
                     {"classify_every_frame": True}),
                    ("fp32 haar fast", args.model, "haar", *fast, {}),
                    ("fp32 haar every frame, full size", args.model, "haar", *slow, {}),
                    ("fp32 haar fast, follow every frame", args.model, "haar", *fast, {"follow_every": 1}),
                    ("fp32 haar fast, no cut detection", args.model, "haar", *fast, {"cut_threshold": 0}),
                    ("fp32 haar fast, full detect every 5th", args.model, "haar", 5, FAST["detect_width"], {}),
                    ("fp32 haar fast, 320 px", args.model, "haar", FAST["detect_every"], 320, {})]
        if Path(int8).is_file():
            variants.insert(1, (f"int8 auto ({default}) fast", int8, "auto", *fast, {}))
        else:
            print(f"no INT8 model at {int8}: its row is left out")
        if yunet:
            variants += [("fp32 yunet fast", args.model, "yunet", *fast, {}),
                         ("fp32 yunet fast, regions at full size", args.model, "yunet", *fast,
                          {"region_face_width": None}),
                         ("fp32 yunet fast, follow every frame", args.model, "yunet", *fast, {"follow_every": 1}),
                         ("fp32 yunet every frame, full size", args.model, "yunet", *slow, {})]
        else:
            print("no YuNet file (reinstall fer-edge, or give --detector-model): its rows are left out")
    reference = None
    if args.compare:
        kind = "yunet" if yunet else "haar"
        report["reference"] = f"{'YuNet' if yunet else 'Haar cascade'} on the whole of every frame, IoU >= {MATCH_IOU}"
        reference = run_pipeline("reference", source, args.frames,
                                 pipeline(make_detector(kind, yunet, **SLOW), args.model), decode_only).boxes
        report["reference_faces"] = sum(len(b) for b in reference)
    best: dict[str, RunReport] = {}
    for _ in range(args.rounds):  # every variant once per round; each keeps its fastest round
        for name, model, kind, every, width, options in variants:
            options = dict(options)
            every_frame = options.pop("classify_every_frame", False)
            unaligned = "align_roll" in options and options.pop("align_roll") is None
            detector = make_detector(kind, yunet, every, width, **options)
            solver = pipeline(detector, model, every_frame)
            if unaligned:  # the model's framing without its turn (runtime.align)
                solver.classifier.metadata = replace(solver.classifier.metadata, align_roll=None)
            r = run_pipeline(name, source, args.frames, solver, decode_only)
            if reference is not None:
                r.recall = round(recall(r.boxes, reference), 4)
            if name not in best or r.fps > best[name].fps:
                best[name] = r
    reports = [best[name] for name, *_ in variants]
    print_table(reports)
    report.update(runs=[{k: v for k, v in asdict(r).items() if k != "boxes"} for r in reports],
                  peak_rss_mb=round(peak_rss_mb(), 1))
    if reference is not None:
        print(f"recall: share of the {report['reference_faces']} faces found by the reference, {report['reference']}")
    print(f"peak RSS {report['peak_rss_mb']} MB; decode-only {decode_only:.1f} FPS; {report['machine']['cpu']}, "
          f"{report['machine']['cores']} cores, onnxruntime {ort.__version__}, {args.threads} thread(s)")
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except (UsageError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"fer-bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fer-bench: interrupted; no report", file=sys.stderr)
        return 130
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
