"""Measured speed of training on this machine: a training step with and without distillation, and the
distillation teachers' forward pass in torch and in onnxruntime.

    python -m benchmarks.train_speed --student ckpt/ferplus_mobilenetv3_large075_72px.pth \\
        --teacher runs/teacher_w100_72/best.pth --steps 12
    python -m benchmarks.train_speed --arch efficientnet_lite0:96 efficientnet_lite2:128 --steps 5

`--arch ARCH:SIZE ...` adds a row per freshly built network (gray input, stem stride 2, 7 classes, as
`training/recipe.sh` trains them): what a training step of a candidate student or teacher costs here.
`--data KIND:PATH --workers N ...` adds a row per input size and number of loading processes: what it costs to
load and augment a batch (fer-train's DataLoader), to compare with the steps. `--device cuda` times the steps on a
GPU (bfloat16 autocast, teachers in torch, as fer-train runs there), e.g. on a lent GPU:

    python -m benchmarks.train_speed --device cuda --arch efficientnet_lite2:192 --batch-size 256 \
        --data ferplus:.gpu/ferplus.npz --workers 7 14

The networks are rebuilt from checkpoints (arch, width, input size); the student trains from its
weights as a distillation run would (AdamW, soft-target loss, mixup). The batch is random images at
the student's input size: the data loader is not timed (it runs in its own process during training).
Each row is the median over `--steps` timed calls after `--warmup` untimed ones. Run it on an idle
machine: a training run beside it halves every number.
"""
from __future__ import annotations

if __name__ == "__main__":  # `python -m benchmarks.train_speed` in a runtime-only install: --help answers, running is one line, not a traceback
    from training.launch import exit_without_torch
    from training.options import bench_train_parser
    exit_without_torch("python -m benchmarks.train_speed", bench_train_parser)

import argparse
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch.utils.data import DataLoader

from benchmarks.fps import machine, write_report
from training.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from training.datasets import DatasetError, load_dataset
from training.distill import Teacher, resized
from training.losses import SoftTargetLoss
from training.model import build_model, class_probabilities
from training.options import bench_train_parser
from training.train import FER_MEAN, FER_STD, train_step
from training.transforms import ModelInput


@dataclass
class Timing:
    name: str
    median_s: float
    min_s: float
    calls: int


def timed(name: str, call: Callable[[], object], steps: int, warmup: int,
          sync: Callable[[], None] = lambda: None) -> Timing:
    """Median and minimum seconds of `call` (`sync` waits for a GPU's queued work before each reading)."""
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        call()
        sync()
        seconds.append(time.perf_counter() - start)
    return Timing(name, round(statistics.median(seconds), 4), round(min(seconds), 4), steps)


def torch_teacher(paths: list[str]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The teachers as torch would run them (channels-last, face and mirror), for comparison with
    training.distill.Teacher's onnxruntime sessions."""
    models = []
    for path in paths:
        ckpt = load_checkpoint(path)
        model = model_from_checkpoint(ckpt, path).to(memory_format=torch.channels_last)
        models.append((model, int(ckpt["meta"]["input_size"])))

    def probabilities(images: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for model, size in models:
            total = total + class_probabilities(model, resized(images, size), flip=True)
        return total / len(models)

    return probabilities


def endless(loader: DataLoader):
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


def loading_rows(args: argparse.Namespace, labels: list[str], sizes: list[int]) -> list[Timing]:
    """Seconds per batch out of fer-train's DataLoader (augmentation at each input size), per `--workers` count:
    each timed call empties a round of twice as many batches as processes (what they queue ahead), so the
    figure is the processes' rate, not the queue's."""
    data = load_dataset(args.data, "train", labels)
    rows = []
    for size in sizes:
        data.transform = ModelInput(size, 1, [FER_MEAN], [FER_STD], train=True)
        for workers in args.workers:
            loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, num_workers=workers, drop_last=True)
            batches, per_round = endless(loader), 2 * max(1, workers)
            t = timed(f"data loading at {size} px, {workers} processes (batch {args.batch_size})",
                      lambda: [next(batches) for _ in range(per_round)], args.steps, 1)
            rows.append(Timing(t.name, round(t.median_s / per_round, 4), round(t.min_s / per_round, 4), t.calls))
            del batches
    return rows


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.backends.cudnn.benchmark = True
    ckpt = load_checkpoint(args.student)
    meta = ckpt["meta"]
    student = model_from_checkpoint(ckpt, args.student).train().to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    criterion = SoftTargetLoss()
    channels, size, classes = meta["channels"], int(meta["input_size"]), len(meta["labels"])
    images = torch.randn(args.batch_size, channels, size, size, device=device)  # NCHW, as the DataLoader delivers it
    targets = torch.rand(args.batch_size, classes, device=device).softmax(1)
    step = lambda teacher: train_step(student, teacher, optimizer, criterion, images, targets, args.mixup)

    rows = [timed(f"student step, no teacher (batch {args.batch_size})", lambda: step(None), args.steps, args.warmup,
                  sync)]
    if args.teacher and device.type != "cpu":
        teacher = Teacher(args.teacher, meta["labels"], channels, meta["mean"], meta["std"], device)
        rows += [timed(f"teacher forward, torch on {device} ({args.batch_size} faces + mirrors)",
                       lambda: teacher(images), args.steps, args.warmup, sync),
                 timed(f"student step + teacher (batch {args.batch_size})", lambda: step(teacher),
                       args.steps, args.warmup, sync)]
    elif args.teacher:
        teacher = Teacher(args.teacher, meta["labels"], channels, meta["mean"], meta["std"])
        reference = torch_teacher(args.teacher)
        faces = f"{args.batch_size} faces + mirrors"
        rows += [timed(f"teacher forward, torch ({faces})", lambda: reference(images), args.steps, args.warmup),
                 timed(f"teacher forward, onnxruntime ({faces})", lambda: teacher(images), args.steps, args.warmup),
                 timed(f"student step + onnxruntime teacher (batch {args.batch_size})", lambda: step(teacher),
                       args.steps, args.warmup)]
    for spec in args.arch or []:
        arch, side = spec.rsplit(":", 1)
        model = build_model(arch, classes, 1, 2, 0.2, 1.0).train().to(device, memory_format=torch.channels_last)
        fresh = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = torch.randn(args.batch_size, 1, int(side), int(side), device=device)
        rows.append(timed(f"{arch} at {side} px, step (batch {args.batch_size})",
                          lambda: train_step(model, None, fresh, criterion, batch, targets, args.mixup),
                          args.steps, args.warmup, sync))
    if args.data:
        sizes = sorted({size, *(int(spec.rsplit(":", 1)[1]) for spec in args.arch or [])})
        rows += loading_rows(args, meta["labels"], sizes)
    return {"machine": {**machine(), "torch": torch.__version__, "device": str(device)},
            "threads": args.threads, "student": args.student, "student_arch": f"{meta['arch']} x{meta.get('width_mult', 1.0)}",
            "input_size": size, "teachers": args.teacher or [], "rows": [asdict(r) for r in rows]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return bench_train_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if min(args.batch_size, args.threads, args.steps) < 1 or min(args.workers) < 0:
        print("fer-bench-train: error: --batch-size, --threads and --steps must be at least 1, --workers at least 0",
              file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"fer-bench-train: error: --device {args.device}: torch sees no CUDA GPU here", file=sys.stderr)
        return 2
    try:
        report = run(args)
    except (CheckpointError, DatasetError) as exc:
        print(f"fer-bench-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fer-bench-train: interrupted; no report", file=sys.stderr)
        return 130
    width = max(len(r["name"]) for r in report["rows"])
    print(f"{'':{width}}  median s   min s")
    for r in report["rows"]:
        print(f"{r['name']:{width}}  {r['median_s']:8.3f}  {r['min_s']:6.3f}")
    m = report["machine"]
    print(f"{report['student_arch']} at {report['input_size']} px; {m['cpu']}, {m['cores']} cores, "
          f"{report['threads']} thread(s), torch {m['torch']}, onnxruntime {m['onnxruntime']}, device {m['device']}")
    write_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
