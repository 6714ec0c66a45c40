"""fer-batch: expressions of every face in folders of photos and videos, on every core or on a Ray cluster.

    fer-batch ../shared/media --output out/                     # this machine, a worker per core
    fer-batch 'archive/**/*.mp4' photos/ --output out/ --workers 4
    fer-batch archive/ --output out/ --engine ray --address auto   # a Ray cluster (the same paths on every node)

One row per face in OUT/parts (Parquet, or JSON lines with --format jsonl): source, frame, timestamp, track_id, x,
y, w, h, label, probability, one column per class, detector_score, quality, reliable, sharpness, yaw, pitch, roll;
OUT/summary.parquet: per source and track its faces, time span and share of faces per expression. Read them with
pandas (`pd.read_parquet("out/parts")`) or DuckDB (`SELECT * FROM 'out/parts/*.parquet'`).

A rerun with the same --output skips every source done (same size and modification time); a changed file is
redone, one that failed is tried again with --retry-failed. Ctrl-C stops after the tasks in flight (Ray: drops
them), every finished part kept (a second Ctrl-C stops at once; a rerun does what was left).

Exit codes: 0 done, 1 done but some sources failed (each one warning line, and an entry in OUT/manifest.jsonl), 2 a
usage error (nothing processed), 130 Ctrl-C.
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
from typing import Iterator

from ..camera_options import OneLineParser, add_model_options, checked, package_version
from ..classifier import ExpressionClassifier
from ..detectors import create_detector
from ..metadata import ModelError
from ..outputs import UsageError
from ..progress import progress
from ..quality import RELIABLE_QUALITY
from ..terminal import silence_opencv
from ..tracking import DEFAULT_DETECT_EVERY
from .engines import ENGINES, LocalCounters, default_workers, require_ray, run_local, run_ray
from .sources import PHOTOS_PER_TASK, Task, find_sources, plan_tasks
from .store import FORMATS, BatchStore, file_sha256
from .task import Settings, SourceResult, TaskOutput

PROG = "fer-batch"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"{PROG} {package_version()}")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="photo or video files, folders (searched "
                                                                "recursively) and globs ('**' reaches into folders)")
    p.add_argument("--output", required=True, metavar="DIR", help="the output folder: new, or one fer-batch wrote "
                                                                  "(a rerun continues it)")
    p.add_argument("--format", choices=FORMATS, default="parquet",
                   help="the rows' format (default parquet, which needs pyarrow: pip install 'fer-edge[batch]')")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: worker processes on this machine (default); ray: Ray Data actors on a local Ray "
                        "or the cluster at --address (pip install 'fer-edge[cluster]')")
    p.add_argument("--workers", type=checked(int, lambda v: 1 <= v <= 1024, "an integer from 1 to 1024"),
                   help=f"worker processes, or Ray actors (default: the cores here, {default_workers()}; with "
                        "--engine ray on a cluster, its CPUs)")
    p.add_argument("--address", help="with --engine ray: the cluster, 'auto', HOST:PORT or ray://HOST:10001 "
                                     "(default $RAY_ADDRESS; without either a local Ray is started)")
    add_model_options(p)
    p.add_argument("--every", type=checked(int, lambda v: v >= 1, "an integer >= 1"), default=1, metavar="N",
                   help="videos: solve every N-th frame (default %(default)s: every frame)")
    p.add_argument("--detect-every", type=checked(int, lambda v: v >= 1, "an integer >= 1"),
                   default=DEFAULT_DETECT_EVERY, help="videos: full face detection every N solved frames (and at "
                                                      "scene cuts), faces followed in between (default %(default)s)")
    p.add_argument("--smoothing", type=checked(float, lambda v: math.isfinite(v) and 0 <= v < 1, "a rate in [0, 1)"),
                   default=0.3, help="videos: smoothing rate across frames, 0 turns it off (default %(default)s)")
    p.add_argument("--min-quality", type=checked(float, lambda v: 0 <= v <= 1, "a number from 0 to 1"), metavar="Q",
                   help="flag faces below quality Q unreliable and leave them out of the summary's shares and the "
                        f"smoothing; the rows keep every face (default: flagged below {RELIABLE_QUALITY})")
    p.add_argument("--no-rotations", action="store_true",
                   help="photos: do not look for faces in the photo turned by 90, 180 and 270 degrees or tilted")
    p.add_argument("--photos-per-task", type=checked(int, lambda v: v >= 1, "an integer >= 1"),
                   default=PHOTOS_PER_TASK, metavar="N", help="photos are done in chunks of at most N (default "
                                                              "%(default)s, fewer when that leaves a worker idle)")
    p.add_argument("--retry-failed", action="store_true",
                   help="try again the sources that failed in an earlier run although their files did not change")
    p.add_argument("--quiet", action="store_true", help="print nothing but warnings, errors and the closing line")
    return p.parse_args(argv)


@contextmanager
def stop_on_ctrl_c(say, engine: str = "local") -> Iterator[threading.Event]:
    """The first Ctrl-C sets the event (the local tasks in flight finish; Ray's are dropped); a second raises
    KeyboardInterrupt."""
    stop = threading.Event()
    what = "after the tasks in flight" if engine == "local" else "now, the tasks in flight dropped"

    def on_sigint(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        say(f"{PROG}: stopping {what} (Ctrl-C again to stop at once; a rerun does the rest)")

    previous = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        yield stop
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


class Tally:
    """What a run did, for the progress bar and the closing line."""

    def __init__(self):
        self.done = self.failed = self.frames = self.faces = 0
        self.peak_rss_mb = 0.0

    def add(self, output: TaskOutput) -> list[SourceResult]:
        """Count a finished task; its failed sources."""
        failed = [r for r in output.results if r.status != "done"]
        self.done += len(output.results) - len(failed)
        self.failed += len(failed)
        self.frames += sum(r.frames for r in output.results)
        self.faces += sum(r.faces for r in output.results)
        self.peak_rss_mb = max(self.peak_rss_mb, output.peak_rss_mb)
        return failed


def closing_line(tally: Tally, skipped: int, failed_before: int, seconds: float, stopped: bool) -> str:
    """'fer-batch: 7 sources done, 1 skipped (done before), 1 failed; 551 frames, 1229 faces in 6.6 s, 83.3 frames/s'."""
    fps = tally.frames / seconds if seconds > 0 else 0.0
    before = f" ({failed_before} more failed before, unchanged)" if failed_before else ""
    return (f"{PROG}: {_count(tally.done, 'source')} done, {skipped} skipped (done before), {tally.failed} failed"
            f"{before}; "
            f"{_count(tally.frames, 'frame')}, {_count(tally.faces, 'face')} in {seconds:.1f} s, {fps:.1f} frames/s"
            f"{' (stopped by Ctrl-C)' if stopped else ''}")


def settings_of(args: argparse.Namespace) -> tuple[Settings, list[str], dict]:
    """The run's settings, the model's labels, and what the output folder records of them (the model by its
    SHA-256, so that the same file elsewhere counts as the same). ModelError, FileNotFoundError, ValueError."""
    classifier = ExpressionClassifier(args.model, threads=1)
    create_detector(args.detector, args.detector_model)  # a missing detector file: one line now, not per worker
    settings = Settings(str(classifier.path), args.detector, args.detector_model, args.detect_every, args.smoothing,
                        args.min_quality, not args.no_rotations, args.every)
    recorded = {**settings.to_dict(), "model": file_sha256(classifier.path)}
    recorded.pop("detector_model")
    return settings, list(classifier.labels), recorded


def run(args: argparse.Namespace) -> int:
    say = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    if args.address and args.engine != "ray":
        raise UsageError("--address goes with --engine ray")
    if args.engine == "ray":
        try:
            require_ray()
        except ImportError as exc:
            raise UsageError(str(exc)) from None
    output = Path(args.output)
    sources = find_sources(args.sources, exclude=output if output.is_dir() else None)
    if any(os.path.abspath(output) == s.path for s in sources):
        raise UsageError(f"--output {output} is one of the inputs; give a new folder")
    settings, labels, recorded = settings_of(args)
    store = BatchStore(output, args.format, recorded, labels)
    todo = store.pending(sources, args.retry_failed)
    skipped = len(sources) - len(todo)
    todo_paths = {s.path for s in todo}  # a set: archives hold hundreds of thousands of photos
    failed_before = sum(store.status(s) == "failed" for s in sources if s.path not in todo_paths)
    workers = args.workers or default_workers()
    tasks = plan_tasks(todo, workers, args.photos_per_task)
    videos = sum(s.kind == "video" for s in todo)
    before = f"{skipped} done before" + (f" ({failed_before} of them failed: --retry-failed tries them again)"
                                         if failed_before else "")
    plan = f"{_count(len(todo), 'to do')} ({_count(videos, 'video')}, {_count(len(todo) - videos, 'photo')}) in " \
           f"{_count(len(tasks), 'task')} on " + \
           ("Ray" if args.engine == "ray" else _count(min(workers, max(1, len(tasks))), "worker process")) \
        if todo else "nothing to do"
    say(f"{PROG}: {_count(len(sources), 'source')}, {before}; {plan}; output {output}")
    tally, started, answered = Tally(), time.monotonic(), set()
    bar = progress(total=len(todo), desc="sources", unit="source", enabled=not args.quiet)
    counters = None

    def show(frames: int, faces: int) -> None:
        elapsed = max(time.monotonic() - started, 1e-9)
        bar.set_postfix_str(f"frames {frames}, faces {faces}, {frames / elapsed:.1f} frames/s")

    def on_output(out: TaskOutput) -> None:
        store.save(out)
        for failed in tally.add(out):
            bar.write(f"{PROG}: warning: {failed.source.path}: {failed.error}; recorded in {output / 'manifest.jsonl'}")
        for noted in (r for r in out.results if r.note):
            bar.write(f"{PROG}: warning: {noted.source.path}: {noted.note}")
        answered.update(r.source.path for r in out.results)
        bar.update(len(out.results))
        show(*(counters.read() if counters else (tally.frames, tally.faces)))

    stopped = False
    try:
        with stop_on_ctrl_c(bar.write if not args.quiet else say, args.engine) as stop:
            if args.engine == "ray" and tasks:
                run_ray(tasks, settings, args.workers, args.address or os.environ.get("RAY_ADDRESS"), on_output,
                        stop, notify=bar.write if not args.quiet else say)
            elif tasks:
                counters = LocalCounters()
                run_local(tasks, settings, min(workers, len(tasks)), on_output, stop, counters,
                          tick=lambda: show(*counters.read()))
            stopped = stop.is_set()
    except KeyboardInterrupt:
        stopped = True
    finally:
        bar.close()
    if not stopped:  # every source has a row or an error entry
        lost = [s for s in todo if s.path not in answered]
        if lost:
            on_output(TaskOutput(Task("photos", tuple(lost)), [], [SourceResult(
                s, "failed", error="no result came back from the engine") for s in lost], 0.0, 0.0))
    summary = store.finish()
    elapsed = time.monotonic() - started
    print(closing_line(tally, skipped, failed_before, elapsed, stopped), file=sys.stderr, flush=True)
    if not args.quiet:
        print(f"rows: {store.parts}  summary: {summary}  manifest: {output / 'manifest.jsonl'}")
    return 130 if stopped else 1 if tally.failed or failed_before else 0


def _count(n: int, noun: str) -> str:
    """'1 video', '2 videos', '3 worker processes'; 'to do' as it is."""
    if noun == "to do" or n == 1:
        return f"{n} {noun}"
    return f"{n} {noun}{'es' if noun.endswith('s') else 's'}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    silence_opencv()
    try:
        return run(args)
    except (UsageError, ModelError, FileNotFoundError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: stopped by Ctrl-C", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
