"""Where `fer-batch`'s tasks run: `run_local` (worker processes on this machine, the default, nothing to install) or
`run_ray` (Ray Data actors on a local Ray or a cluster). Both run `TaskRunner.run` in workers that load the
detector and the model once, hand each finished task to `on_output` in the driver (which alone writes files), and
stop taking new tasks once `stop` is set (the tasks in flight finish).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import warnings
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from .sources import Task
from .task import Settings, SourceResult, TaskOutput, TaskRunner

ENGINES = ("local", "ray")
RAY_HELP = "pip install 'fer-edge[cluster]' (Ray Data)"
RAY_NO_PROGRESS_S = 600  # Ray Data gives up on a dataset that makes no progress for this long (its default: 30 min)

OnOutput = Callable[[TaskOutput], None]


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# local: a pool of worker processes, each with its own TaskRunner

_runner: TaskRunner | None = None  # a worker process's runner (set once by _start_worker)


def _start_worker(settings: Settings, frames, faces) -> None:
    """A worker process's start: Ctrl-C is the driver's to handle; one thread each for OpenCV and onnxruntime."""
    global _runner
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def report(new_frames: int, new_faces: int) -> None:
        with frames.get_lock():
            frames.value += new_frames
        with faces.get_lock():
            faces.value += new_faces

    _runner = TaskRunner(settings, single_thread=True, report=report)


def _run_in_worker(task: Task) -> TaskOutput:
    return _runner.run(task)


def _died(task: Task, attempts: int) -> TaskOutput:
    reason = f"the worker process died while processing it, {attempts} times (out of memory?)"
    return TaskOutput(task, [], [SourceResult(s, "failed", error=reason) for s in task.sources], 0.0, 0.0)


class LocalCounters:
    """Frames and faces the local workers have done so far (shared memory, for the progress bar)."""

    def __init__(self, context=None):
        context = context or multiprocessing.get_context("spawn")
        self.frames, self.faces = context.Value("q", 0), context.Value("q", 0)

    def read(self) -> tuple[int, int]:
        return self.frames.value, self.faces.value


def run_local(tasks: list[Task], settings: Settings, workers: int, on_output: OnOutput, stop: threading.Event,
              counters: LocalCounters | None = None, tick: Callable[[], None] = lambda: None, tries: int = 2) -> None:
    """Run `tasks` on `workers` processes, as many tasks in flight as workers; `tick` is called twice a second. A task
    whose worker died (killed for memory, a crash in a native library) is tried again on a new pool up to `tries`
    times, then recorded as failed. A KeyboardInterrupt (a second Ctrl-C) ends the workers at once."""
    context = multiprocessing.get_context("spawn")  # nothing of the driver's threads or state is inherited
    counters = counters or LocalCounters(context)
    queue, attempts = deque(tasks), {}

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                   initargs=(settings, counters.frames, counters.faces))

    pool, running = new_pool(), {}
    try:
        while queue or running:
            while queue and len(running) < workers and not stop.is_set():
                task = queue.popleft()
                running[pool.submit(_run_in_worker, task)] = task
            if not running:
                break
            done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            tick()
            broken = False
            for future in done:
                task = running.pop(future)
                try:
                    output = future.result()
                except BrokenProcessPool:
                    broken = True
                    attempts[id(task)] = attempts.get(id(task), 0) + 1
                    if attempts[id(task)] < tries and not stop.is_set():
                        queue.appendleft(task)
                    else:
                        on_output(_died(task, attempts[id(task)]))
                    continue
                on_output(output)
            if broken:
                for future, task in running.items():  # the pool is gone: what was in it goes back to the queue
                    queue.appendleft(task)
                running.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
    except KeyboardInterrupt:
        for process in list(getattr(pool, "_processes", {}).values()):  # they ignore SIGINT: the driver ends them
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ray: Ray Data actors, one per CPU, each with its own TaskRunner

class RayTaskActor:
    """A Ray Data actor: loads the detector and the model once, then runs the tasks of the batches it is given."""

    def __init__(self, settings: Settings):
        self.runner = TaskRunner(settings, single_thread=True)  # Ray's OMP_NUM_THREADS does not reach OpenCV

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        outputs = [pickle.dumps(self.runner.run(pickle.loads(blob))) for blob in batch["task"]]
        return {"output": np.array(outputs, dtype=object)}


def require_ray():
    """ray with Ray Data, or ImportError with what to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError(f"--engine ray needs Ray Data: {RAY_HELP}") from None
    return ray


def run_ray(tasks: list[Task], settings: Settings, workers: int | None, address: str | None, on_output: OnOutput,
            stop: threading.Event, notify: Callable[[str], None] = lambda line: None) -> None:
    """Run `tasks` with Ray Data: a local Ray with `workers` CPUs when no `address` is given, else the cluster at
    `address` ("auto", "host:port" or "ray://host:10001"), an actor per CPU (or `workers` actors). The files are read
    by the actors: on a cluster they must be at the same paths on every node (a shared file system). When `stop` is
    set the driver takes no more results: what is finished is kept, the tasks in flight are dropped (a rerun does
    them)."""
    ray = require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=workers or default_workers(), **options)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = max(1, min(workers or cpus, cpus, len(tasks)))
        notify(f"Ray: {cpus} CPU{'s' if cpus != 1 else ''} in {len(ray.nodes())} node(s), {actors} actor(s)")
        context = ray.data.DataContext.get_current()
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context.enable_progress_bars = False  # ours counts sources and frames
        context.execution_options.preserve_order = False
        if hasattr(context, "execution_no_progress_timeout_s"):
            context.execution_no_progress_timeout_s = RAY_NO_PROGRESS_S
        items = [{"task": pickle.dumps(task)} for task in tasks]
        with warnings.catch_warnings():  # max_restarts has no named parameter yet (ray_remote_args is deprecated)
            warnings.simplefilter("ignore", DeprecationWarning)
            # An actor that dies is not restarted (Ray Data's default restarts it and retries its task without end,
            # so an input that always crashes its actor would loop forever): the job ends with what is finished.
            dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                RayTaskActor, fn_constructor_kwargs={"settings": settings}, batch_size=1, num_cpus=1,
                compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1), max_restarts=0)
        try:
            for row in dataset.iter_rows():
                on_output(pickle.loads(row["output"]))
                if stop.is_set():
                    break
        except ray.exceptions.RayError as exc:  # an actor died (killed for memory, a crash in a native library)
            notify(f"Ray stopped the job: {str(exc).strip().splitlines()[0][:300]}")
    finally:
        if started_here:
            ray.shutdown()
