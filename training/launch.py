"""Console-script launchers for the commands that need PyTorch (fer-train, fer-eval, fer-export,
fer-bench-train). Each reads its options first (`training.options`, torch-free): `--help` and usage errors answer
in a runtime-only install; running it there is one line naming the training extra (exit 2) instead of a traceback,
except `fer-eval` on an ONNX model, which needs no torch. `python -m` of those modules does the same through
`exit_without_torch`. This module imports nothing of torch itself."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

from . import options

EXTRA = "pip install 'fer-edge[train]' (or, in a checkout: pip install -e '.[train]')"


def exit_without_torch(prog: str, parser: Callable[[str], argparse.ArgumentParser] | None = None) -> None:
    """Exit 2 with one line naming the training extra when PyTorch is not installed. With `parser` (a
    `training.options` builder), the command line is read first, so `--help` and usage errors need no torch."""
    if parser is not None:
        parser(prog).parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        print(f"{prog}: error: this command needs PyTorch, part of the training extra: {EXTRA}", file=sys.stderr)
        sys.exit(2)


def _launch(module: str, prog: str, parser: Callable[[str], argparse.ArgumentParser]) -> int:
    exit_without_torch(prog, parser)
    return importlib.import_module(module).main()


def train() -> None:
    sys.exit(_launch("training.train", "fer-train", options.train_parser))


def evaluate() -> None:
    """fer-eval: an ONNX model runs without torch (training.eval asks for it only for checkpoints)."""
    options.eval_parser("fer-eval").parse_args()
    sys.exit(importlib.import_module("training.eval").main())


def export() -> None:
    sys.exit(_launch("export.to_onnx", "fer-export", options.export_parser))


def bench_train() -> None:
    sys.exit(_launch("benchmarks.train_speed", "fer-bench-train", options.bench_train_parser))
