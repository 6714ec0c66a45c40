"""The options of the torch-needing commands (fer-train, fer-eval, fer-export, fer-bench-train), built without
importing torch: `--help` and usage errors answer in a runtime-only install, and `fer-eval` on an ONNX model runs
there. Each parser's description is its command module's docstring, read from the source file, not imported."""
from __future__ import annotations

import argparse
import ast
import importlib.util
import os
from pathlib import Path

TORCHVISION_ARCHS = ("mobilenet_v3_small", "mobilenet_v3_large")
# timm's EfficientNet-Lite variants (no squeeze-excite, ReLU6: built for integer inference on small CPUs).
# `efficientnet_*` pads like PyTorch (faster); `tf_efficientnet_*` pads like TensorFlow ("same").
TIMM_ARCHS = tuple(f"{prefix}efficientnet_lite{i}" for prefix in ("", "tf_") for i in range(5))
ARCHS = (*TORCHVISION_ARCHS, *TIMM_ARCHS)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default after its help."""


def _docstring(module: str) -> str:
    """A module's docstring, from its source (the module itself may import torch)."""
    spec = importlib.util.find_spec(module)
    return ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""


def _parser(module: str, prog: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=_docstring(module), formatter_class=HelpFormatter)


def train_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """fer-train / python -m training.train."""
    p = _parser("training.train", prog)
    p.add_argument("--data", required=True, help="KIND:PATH, KIND in ferplus, fer2013, rafdb, affectnet, folder")
    p.add_argument("--arch", default="mobilenet_v3_small", choices=ARCHS, help="the network")
    p.add_argument("--num-classes", type=int, default=7, choices=(7, 8), help="8 adds Contempt")
    p.add_argument("--input-size", type=int, default=48, help="side of the square input in pixels")
    p.add_argument("--channels", type=int, default=1, choices=(1, 3), help="1 gray, 3 colour")
    p.add_argument("--stem-stride", type=int, default=1, choices=(1, 2), help="stride of the first convolution")
    p.add_argument("--width-mult", type=float, default=1.0, help="channel width multiplier of the arch")
    p.add_argument("--epochs", type=int, default=60, help="length of the cosine schedule")
    p.add_argument("--batch-size", type=int, default=128, help="per process")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW's decoupled weight decay")
    p.add_argument("--warmup-epochs", type=float, default=2.0, help="linear learning-rate warm-up")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="mass spread over all classes")
    p.add_argument("--focal-gamma", type=float, default=0.0, help="> 0 turns on the focal loss")
    p.add_argument("--ema-decay", type=float, default=0.999, help="0 turns weight EMA off")
    p.add_argument("--dropout", type=float, default=0.2, help="before the classifier head")
    p.add_argument("--mixup", type=float, default=0.0, help="mixup Beta(alpha, alpha); 0 turns it off")
    p.add_argument("--pretrained", help="'imagenet' (the installed EfficientNet-Lite weights) or a local checkpoint "
                   "to initialise from (mismatched head skipped, an RGB stem summed for gray input)")
    p.add_argument("--teacher", nargs="+", metavar="CKPT",
                   help="distil from these trained checkpoints (their averaged, flip-averaged probabilities)")
    p.add_argument("--distill-weight", type=float, default=0.5,
                   help="weight of the teacher's probabilities in the training targets (with --teacher)")
    p.add_argument("--qat", action="store_true",
                   help="quantization-aware fine-tuning of the --pretrained checkpoint for the INT8 export "
                        "(training.qat: BatchNorm folded and frozen, weights and activations rounded as onnxruntime "
                        "will); turns EMA off")
    p.add_argument("--workers", type=int, default=1, help="data-loading processes")
    p.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N for an NVIDIA GPU (one process)")
    p.add_argument("--time-budget", type=float, default=0, metavar="SECONDS",
                   help="train only as many of --epochs as fit in this time, decided after the first (warm-up) "
                        "epoch, so the schedule stays one cosine: its start-up counted once, later epochs timed from "
                        "its steps after the 20th; the checkpoint records the number")
    p.add_argument("--max-steps", type=int, default=0, help="stop each epoch after this many steps (smoke tests)")
    p.add_argument("--out", default="runs/train", help="folder for checkpoints, metrics.csv and curves.png")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pth")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffling, augmentation and initialisation")
    p.add_argument("--recipe", help="the name of the recipe that runs this training (kept in the checkpoint)")
    return p


def eval_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """fer-eval / python -m training.eval."""
    p = _parser("training.eval", prog)
    p.add_argument("--model", required=True, nargs="+",
                   help="checkpoint (.pth) or exported model (.onnx); several checkpoints are averaged (ensemble)")
    p.add_argument("--data", required=True, help="KIND:PATH, e.g. ferplus:../shared/datasets/ferplus")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"), help="the split evaluated")
    p.add_argument("--flip", action="store_true", help="average with the mirrored face (checkpoints only; an ONNX "
                                                       "model does so when exported with --flip-tta)")
    p.add_argument("--limit", type=int, default=0, help="evaluate a fixed random subset of this size (0: all)")
    p.add_argument("--logit-adjust", type=float, default=0.0, metavar="TAU",
                   help="divide each class's probability by its training-split frequency to the power TAU before the "
                        "argmax (post-hoc logit adjustment: more recall for rare classes, fear and disgust)")
    p.add_argument("--reframe", type=float, default=1.0, metavar="SIDE",
                   help="frame every face SIDE times as wide first: 0.8 = its central 80%%, 1.2 = padded by 10%% per "
                        "side (edges replicated); how robust the model is to a detector's tighter or looser crops")
    p.add_argument("--calibration", action="store_true",
                   help="also measure how well the probabilities are calibrated: the expected calibration error "
                        "(15 bins, top label) and reliability.png, before and after the model's temperature")
    p.add_argument("--out", default="runs/eval", help="folder for confusion_matrix.png and metrics.json (the "
                                                      "exporter's --metrics reads the latter)")
    return p


def export_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """fer-export / python -m export.to_onnx."""
    p = _parser("export.to_onnx", prog)
    p.add_argument("--checkpoint", required=True, help="the training checkpoint (.pth) to export")
    p.add_argument("--output", required=True, help="the fp32 .onnx file")
    p.add_argument("--int8", action="store_true", help="also write OUTPUT with .int8.onnx (needs --calib)")
    p.add_argument("--calib", help="KIND:PATH of training faces for INT8 calibration (its train split)")
    p.add_argument("--calib-count", type=int, default=500, help="calibration faces")
    p.add_argument("--int8-from", metavar="QAT_CHECKPOINT",
                   help="quantize this quantization-aware fine-tuning of --checkpoint (fer-train --qat) for --int8")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset of the graph")
    p.add_argument("--flip-tta", action="store_true",
                   help="average each face with its mirror image inside the graph (2x classifier cost)")
    p.add_argument("--metrics", help="metrics.json of `training.eval --model CHECKPOINT --split test` (with --flip "
                                     "for --flip-tta): its accuracy goes into the model's metadata")
    return p


def _arch_spec(value: str) -> str:
    arch, _, size = value.rpartition(":")
    if arch not in ARCHS or not size.isdigit() or int(size) < 16:
        raise argparse.ArgumentTypeError(f"{value!r}: expected ARCH:SIZE with ARCH one of {', '.join(ARCHS)}")
    return value


def bench_train_parser(prog: str | None = "fer-bench-train") -> argparse.ArgumentParser:
    """fer-bench-train / python -m benchmarks.train_speed."""
    from runtime import DEFAULT_MODEL

    p = _parser("benchmarks.train_speed", prog)
    p.add_argument("--student", default=str(DEFAULT_MODEL.with_suffix(".pth")), help="checkpoint")
    p.add_argument("--teacher", nargs="+", metavar="CKPT", help="distillation teacher checkpoints")
    p.add_argument("--arch", nargs="+", metavar="ARCH:SIZE", type=_arch_spec,
                   help="also time a training step of these networks, e.g. efficientnet_lite2:128")
    p.add_argument("--batch-size", type=int, default=128, help="faces per step")
    p.add_argument("--device", default="cpu", help="cpu, or cuda for an NVIDIA GPU")
    p.add_argument("--data", metavar="KIND:PATH", help="also time fer-train's data loading on this data set")
    p.add_argument("--workers", type=int, nargs="+", default=[1], help="loading processes to time (with --data)")
    p.add_argument("--mixup", type=float, default=0.2, help="mixup Beta(alpha, alpha) of the timed steps")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch and onnxruntime threads")
    p.add_argument("--steps", type=int, default=12, help="timed calls per row")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before each row")
    p.add_argument("--json", help="write the report here")
    return p
