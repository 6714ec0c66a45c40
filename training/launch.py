"""Console-script launchers for the commands that need PyTorch (fer-train, fer-eval, fer-export,
fer-bench-train): in a runtime-only install they say so in one line (exit 2) instead of a traceback.
`python -m` of those modules does the same through `exit_without_torch`. This module imports nothing of torch
itself."""
from __future__ import annotations

import importlib
import sys

EXTRA = "pip install 'fer-edge[train]' (or, in a checkout: pip install -e '.[train]')"


def exit_without_torch(prog: str) -> None:
    """Exit 2 with one line naming the training extra when PyTorch is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print(f"{prog}: error: this command needs PyTorch, part of the training extra: {EXTRA}", file=sys.stderr)
        sys.exit(2)


def _launch(module: str, prog: str) -> int:
    exit_without_torch(prog)
    return importlib.import_module(module).main()


def train() -> None:
    sys.exit(_launch("training.train", "fer-train"))


def evaluate() -> None:
    sys.exit(_launch("training.eval", "fer-eval"))


def export() -> None:
    sys.exit(_launch("export.to_onnx", "fer-export"))


def bench_train() -> None:
    sys.exit(_launch("benchmarks.train_speed", "fer-bench-train"))
