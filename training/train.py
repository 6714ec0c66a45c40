"""Train a MobileNetV3 expression classifier.

    python -m training.train --data ferplus:../shared/datasets/ferplus --out runs/ferplus

Also runs unchanged under `torchrun --nproc_per_node N` (DistributedDataParallel, gloo on CPU).
Every epoch: validation, `last.pth` (resumable), `best.pth` (best validation accuracy, EMA weights
when EMA is on), a row in `metrics.csv` and the curves in `curves.png`.
"""
from __future__ import annotations

if __name__ == "__main__":  # `python -m training.train` in a runtime-only install: --help answers, running is one line, not a traceback
    from training.launch import exit_without_torch
    from training.options import train_parser
    exit_without_torch("python -m training.train", train_parser)

import argparse
import csv
import itertools
import math
import os
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, update_bn
from torch.utils.data import DataLoader, DistributedSampler
from runtime.progress import progress

from runtime.metadata import ModelMetadata

from . import qat
from .checkpoint import CheckpointError, git_commit, load_checkpoint, save_checkpoint
from .datasets import DatasetError, load_dataset
from .distill import Teacher, distilled_targets
from .labels import labels_for
from .losses import SoftTargetLoss
from .options import train_parser
from .model import build_model, class_probabilities, count_mflops, count_parameters, load_pretrained
from .transforms import ModelInput

# FER2013 pixel statistics (gray, [0, 1] scale); used for RGB channels as well.
FER_MEAN, FER_STD = 0.5077, 0.2550
BN_BATCHES = 40  # training batches used to re-estimate the EMA model's BatchNorm statistics


@dataclass
class EpochMetrics:
    epoch: int
    lr: float
    train_loss: float
    valid_loss: float
    valid_accuracy: float
    valid_accuracy_flip: float
    seconds: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return train_parser().parse_args(argv)


class StopOnCtrlC:
    """Ctrl-C (SIGINT) asks training to stop at the next batch or epoch boundary (`check()` raises KeyboardInterrupt
    there) rather than wherever it lands: one raised inside a `__del__`, a callback or plotting can be swallowed,
    and the stop lost. A second Ctrl-C interrupts at once."""

    def __enter__(self) -> "StopOnCtrlC":
        self.requested = False
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous)


def _ignore_ctrl_c(worker_id: int) -> None:
    """Data-loading processes leave Ctrl-C to the main one (one that dies of it breaks the next batch)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def ema_average(decay: float):
    """EMA update with warm-up: the decay grows as (1 + n) / (10 + n) up to `decay`, so the average
    forgets the random initialisation within the first few hundred steps. Updates all tensors of a device in
    one call (`AveragedModel`'s multi_avg_fn: one step count read per update, not one per tensor)."""

    def average(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        torch._foreach_lerp_(averaged, current, 1 - min(decay, (1 + n) / (10 + n)))

    return average


def mixup(images: torch.Tensor, targets: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each image and its target distribution with another one of the batch (mixup)."""
    lam = float(np.random.beta(alpha, alpha))
    other = torch.randperm(len(images), device=images.device)
    return lam * images + (1 - lam) * images[other], lam * targets + (1 - lam) * targets[other]


def learning_rate(args: argparse.Namespace, step: int, steps_per_epoch: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    warmup = args.warmup_epochs * steps_per_epoch
    total = args.epochs * steps_per_epoch
    if step < warmup:
        return args.lr * (step + 1) / warmup
    return 0.5 * args.lr * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def train_step(net, teacher, optimizer, criterion, images: torch.Tensor, targets: torch.Tensor,
               mixup_alpha: float = 0.0, distill_weight: float = 0.5) -> torch.Tensor:
    """One optimisation step on a batch: mixup, the teacher's targets, forward, backward, update.
    Returns the (detached) loss."""
    if mixup_alpha:
        images, targets = mixup(images, targets, mixup_alpha)
    if teacher is not None:
        targets = distilled_targets(targets, teacher(images), distill_weight)
    on_gpu = images.device.type == "cuda"
    with torch.autocast(device_type=images.device.type, dtype=torch.bfloat16, enabled=on_gpu):
        loss = criterion(net(images), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def epochs_within_budget(budget: float, first_epoch: float, next_epochs: float, max_epochs: int) -> int:
    """How many epochs fit in `budget` seconds: the first one took `first_epoch` (start-up and, on a GPU,
    cuDNN's kernel search included), each later one is expected to take `next_epochs`; 1 to `max_epochs`."""
    return max(1, min(max_epochs, 1 + int(max(0.0, budget - first_epoch) // max(next_epochs, 1e-9))))


def train_one_epoch(net, model, ema, teacher, optimizer, criterion, loader, args, epoch: int,
                    steps_per_epoch: int, show_progress: bool, device: torch.device,
                    stop: StopOnCtrlC | None = None) -> tuple[float, float, float | None]:
    """One pass over the training data (mixup and distillation applied per batch, `stop` checked after each);
    returns (mean training loss, last learning rate, seconds per step after the first 20 steps, or None when
    there were too few to tell)."""
    net.train()
    warm, warm_at, step = min(20, steps_per_epoch // 2), None, -1
    loss_sum, seen, lr = torch.zeros((), device=device), 0, args.lr
    # Closed here, not by the garbage collector: Ctrl-C landing in a collected bar's __del__ would be swallowed
    # with a traceback.
    with progress(loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs}",
                  enabled=show_progress) as bar:
        for step, (images, targets) in enumerate(bar):
            if step >= steps_per_epoch:
                break
            lr = learning_rate(args, epoch * steps_per_epoch + step, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            loss = train_step(net, teacher, optimizer, criterion, images, targets, args.mixup, args.distill_weight)
            if ema is not None:
                ema.update_parameters(model)
            loss_sum, seen = loss_sum + loss * len(images), seen + len(images)
            if stop is not None:
                stop.check()
            if step % 20 == 0 or step == warm:  # reading the loss waits for the device: not every step
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", lr=f"{lr:.2e}")
                if step == warm:
                    warm_at = time.time()
    mean_loss = loss_sum.item() / max(1, seen)
    steps_after = min(steps_per_epoch, step + 1) - warm - 1
    return mean_loss, lr, (time.time() - warm_at) / steps_after if warm_at and steps_after > 0 else None


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, criterion,
             device: torch.device = torch.device("cpu")) -> tuple[float, float, float]:
    """(loss, accuracy, accuracy with horizontal-flip averaging) against the hard labels."""
    model.eval()
    loss_sum, correct, correct_flip, n = 0.0, 0, 0, 0
    for images, targets, hard in loader:
        images, targets, hard = images.to(device), targets.to(device), hard.to(device)
        logits = model(images)
        probs = class_probabilities(model, images, flip=True)
        loss_sum += criterion(logits, targets).item() * len(images)
        correct += (logits.argmax(1) == hard).sum().item()
        correct_flip += (probs.argmax(1) == hard).sum().item()
        n += len(images)
    return loss_sum / n, correct / n, correct_flip / n


class _WithHardLabels(torch.utils.data.Dataset):
    """Adds the hard (evaluation) label to each item of a FaceDataset."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        image, target = self.dataset[i]
        return image, target, int(self.dataset.hard_labels[i])


def plot_curves(rows: list[EpochMetrics], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r.train_loss for r in rows], label="train")
    ax1.plot(epochs, [r.valid_loss for r in rows], label="valid")
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax1.legend()
    ax2.plot(epochs, [100 * r.valid_accuracy for r in rows], label="valid")
    ax2.plot(epochs, [100 * r.valid_accuracy_flip for r in rows], label="valid, flip TTA")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="Validation accuracy")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_metrics(path: Path) -> list[EpochMetrics]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [EpochMetrics(int(r["epoch"]), *(float(r[k]) for k in list(r)[1:])) for r in csv.DictReader(f)]


def append_metrics(path: Path, row: EpochMetrics) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(row)))
        if new:
            writer.writeheader()
        writer.writerow(asdict(row))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0 <= args.distill_weight <= 1:
        print(f"fer-train: error: --distill-weight must be between 0 and 1, got {args.distill_weight}", file=sys.stderr)
        return 2
    if args.qat and not args.pretrained:
        print("fer-train: error: --qat fine-tunes a trained model: give it with --pretrained CHECKPOINT",
              file=sys.stderr)
        return 2
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    try:
        device = torch.device(args.device)
    except RuntimeError:
        print(f"fer-train: error: --device {args.device}: not a device; use cpu, cuda or cuda:N", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"fer-train: error: --device {args.device}: torch sees no CUDA GPU here (torch {torch.__version__}); "
              "use --device cpu", file=sys.stderr)
        return 2
    if device.type not in ("cpu", "cuda") or (distributed and device.type != "cpu"):
        print(f"fer-train: error: --device {args.device}: only cpu and cuda are supported, and several "
              "processes (torchrun) train on the CPU only", file=sys.stderr)
        return 2
    if distributed and args.time_budget:
        print("fer-train: error: --time-budget needs a single process; give torchrun's run --epochs", file=sys.stderr)
        return 2
    if distributed:
        dist.init_process_group("gloo")
    torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    torch.manual_seed(args.seed + rank)
    np.random.seed(args.seed + rank)
    out = Path(args.out)
    is_main = rank == 0

    try:
        labels = labels_for(args.num_classes)
        train_set = load_dataset(args.data, "train", labels)
        valid_set = load_dataset(args.data, "valid", labels)
    except DatasetError as exc:
        print(f"fer-train: error: {exc}", file=sys.stderr)
        return 2
    mean, std = [FER_MEAN] * args.channels, [FER_STD] * args.channels
    train_set.transform = ModelInput(args.input_size, args.channels, mean, std, train=True)
    valid_set.transform = ModelInput(args.input_size, args.channels, mean, std, train=False)

    sampler = DistributedSampler(train_set, seed=args.seed) if distributed else None
    if args.workers:
        # One OpenCV thread per loading process (the processes are the parallelism: 16 cores, 14 processes of 16
        # threads each would oversubscribe them); set here, before they fork: set inside one it deadlocks.
        cv2.setNumThreads(1)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                              num_workers=args.workers, drop_last=True, persistent_workers=args.workers > 0,
                              pin_memory=device.type == "cuda", worker_init_fn=_ignore_ctrl_c if args.workers else None)
    valid_loader = DataLoader(_WithHardLabels(valid_set), batch_size=256, num_workers=0)

    model = build_model(args.arch, len(labels), args.channels, args.stem_stride, args.dropout, args.width_mult)
    # Channels-last activations run the depthwise convolutions about twice as fast on CPU.
    model = model.to(memory_format=torch.channels_last)
    if args.pretrained:
        try:
            skipped = load_pretrained(model, args.pretrained, args.arch)
        except (ValueError, OSError, RuntimeError) as exc:
            print(f"fer-train: error: --pretrained {args.pretrained}: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 2
        if is_main:
            print(f"initialised from {args.pretrained}; {len(skipped)} tensors left as initialised")
    params, mflops = count_parameters(model), round(count_mflops(model, args.channels, args.input_size), 2)
    if args.qat:
        qat.prepare(model)
    model = model.to(device)
    try:
        teacher = Teacher(args.teacher, labels, args.channels, mean, std, device) if args.teacher else None
    except CheckpointError as exc:
        print(f"fer-train: error: {exc}", file=sys.stderr)
        return 2
    use_ema = args.ema_decay and not args.qat  # averaged weights would need BatchNorm statistics QAT has frozen
    ema = AveragedModel(model, multi_avg_fn=ema_average(args.ema_decay)) if use_ema else None
    net = DistributedDataParallel(model) if distributed else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    criterion = SoftTargetLoss(args.label_smoothing, args.focal_gamma)

    meta = ModelMetadata(
        labels=labels, input_size=args.input_size, channels=args.channels, mean=mean, std=std, arch=args.arch,
        dataset=args.data.split(":", 1)[0], source_commit=git_commit(),
        extra={"stem_stride": args.stem_stride, "width_mult": args.width_mult, "recipe": args.recipe, "qat": args.qat,
               "train_command": shlex.join(["python", "-m", "training.train", *(argv or sys.argv[1:])]),
               "params": params, "mflops": mflops}).to_dict()
    start_epoch, best_acc = 0, -1.0
    if args.resume:
        try:
            state = load_checkpoint(out / "last.pth")
        except CheckpointError as exc:
            print(f"fer-train: error: {exc}", file=sys.stderr)
            return 2
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
        start_epoch, best_acc = state["epoch"], state["best_accuracy"]
        meta["train_command"] = state["meta"]["train_command"]
        if args.time_budget:  # the epochs the budget chose when the run began
            args.epochs = state["meta"].get("epochs", args.epochs)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        print(f"{args.arch}: {meta['params'] / 1e6:.2f} M parameters, {meta['mflops']} MFLOPs per face; "
              f"{len(train_set)} train / {len(valid_set)} valid images; {world} process(es)")

    steps_per_epoch = len(train_loader) if not args.max_steps else min(args.max_steps, len(train_loader))
    finished = start_epoch  # epochs saved in last.pth
    meta["epochs"] = args.epochs
    began = time.time()
    try:
        with StopOnCtrlC() as stop:
            for epoch in itertools.count(start_epoch):
                if epoch >= args.epochs:  # --time-budget may lower it after the first epoch
                    break
                stop.check()
                if sampler is not None:
                    sampler.set_epoch(epoch)
                started = time.time()
                train_loss, lr, step_seconds = train_one_epoch(net, model, ema, teacher, optimizer, criterion,
                                                               train_loader, args, epoch, steps_per_epoch, is_main,
                                                               device, stop)
                trained = time.time()
                if not is_main:
                    continue
                scored = ema.module if ema is not None else model
                if ema is not None:
                    # Averaged weights need their own BatchNorm statistics (averaging the running stats of
                    # a fast-changing network gives unusable ones): re-estimate them on training batches.
                    update_bn(itertools.islice(train_loader, BN_BATCHES), scored, device=device)
                valid_loss, acc, acc_flip = evaluate(scored, valid_loader, criterion, device)
                if args.time_budget and epoch == start_epoch and not args.resume:
                    first = time.time() - began
                    later = first if step_seconds is None else step_seconds * steps_per_epoch + time.time() - trained
                    args.epochs = meta["epochs"] = epochs_within_budget(args.time_budget, first, later, args.epochs)
                    print(f"time budget {args.time_budget:.0f} s: training {args.epochs} epochs", flush=True)
                row = EpochMetrics(epoch + 1, lr, train_loss, valid_loss, acc, acc_flip, time.time() - started)
                append_metrics(out / "metrics.csv", row)
                plot_curves(read_metrics(out / "metrics.csv"), out / "curves.png")
                if acc > best_acc:
                    best_acc = acc
                    save_checkpoint(out / "best.pth", scored, {**meta, "epoch": epoch + 1, "valid_accuracy": acc,
                                                               "valid_accuracy_flip": acc_flip})
                save_checkpoint(out / "last.pth", model, meta, optimizer=optimizer.state_dict(), epoch=epoch + 1,
                                best_accuracy=best_acc, **({"ema": ema.state_dict()} if ema is not None else {}))
                finished = epoch + 1
                print(f"epoch {epoch + 1}: train loss {train_loss:.4f}, valid loss {valid_loss:.4f}, "
                      f"valid acc {100 * acc:.2f}% (flip {100 * acc_flip:.2f}%), best {100 * best_acc:.2f}%",
                      flush=True)
    except KeyboardInterrupt:
        if is_main:
            saved = (f"{out / 'last.pth'} holds epoch {finished}; add --resume to continue" if finished
                     else "no epoch had finished, nothing was saved")
            print(f"fer-train: interrupted; {saved}", file=sys.stderr)
        return 130
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    if is_main:
        print(f"best validation accuracy {100 * best_acc:.2f}%; checkpoint {out / 'best.pth'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
