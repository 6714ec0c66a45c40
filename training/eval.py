"""Evaluate a checkpoint (.pth) or an exported model (.onnx) on a data set split.

    python -m training.eval --model ckpt/ferplus_mobilenetv3_large075_72px.pth --data ferplus:../shared/datasets/ferplus

Prints one line per class (`Surprise: precision:0.71 recall:0.69 (10.7%, 329)`), the average,
accuracy and macro F1; writes `confusion_matrix.png` and `metrics.json` to --out.
ONNX models run through the runtime's own preprocessing (`runtime.ExpressionClassifier`).
Several checkpoints after --model are evaluated as an ensemble (their class probabilities averaged), e.g. to
measure what distilling them could at best reach.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from runtime.progress import progress

from runtime.image import reframed

from .calibration import BINS, plot_reliability, reliability, softmax
from .datasets import DatasetError, FaceDataset, load_dataset
from .launch import exit_without_torch
from .options import eval_parser


@dataclass
class ClassMetrics:
    label: str
    precision: float
    recall: float
    f1: float
    share: float
    count: int


@dataclass
class EvalReport:
    classes: list[ClassMetrics]
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    confusion: list[list[int]]
    images: int

    def table(self) -> str:
        lines = [f"{c.label}: precision:{c.precision:.2f} recall:{c.recall:.2f} ({100 * c.share:.1f}%, {c.count})"
                 for c in self.classes]
        lines.append(f"Average: precision:{self.macro_precision:.2f} recall:{self.macro_recall:.2f}")
        lines.append(f"Accuracy: {100 * self.accuracy:.2f}% on {self.images} images, macro F1: {self.macro_f1:.3f}")
        return "\n".join(lines)


def report_from_predictions(labels: list[str], truth: np.ndarray, predicted: np.ndarray) -> EvalReport:
    """Per-class precision/recall/F1, macro averages and the confusion matrix (rows = truth)."""
    k = len(labels)
    confusion = np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(float)
    precision = np.divide(tp, confusion.sum(0), out=np.zeros(k), where=confusion.sum(0) > 0)
    recall = np.divide(tp, confusion.sum(1), out=np.zeros(k), where=confusion.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=precision + recall > 0)
    counts = confusion.sum(1)
    classes = [ClassMetrics(labels[i], float(precision[i]), float(recall[i]), float(f1[i]),
                            float(counts[i] / counts.sum()), int(counts[i])) for i in range(k)]
    return EvalReport(classes, float(tp.sum() / counts.sum()), float(precision.mean()), float(recall.mean()),
                      float(f1.mean()), confusion.tolist(), int(counts.sum()))


def plot_confusion(report: EvalReport, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.array(report.confusion, dtype=float)
    normalised = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    labels = [c.label for c in report.classes]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(matrix[i, j])}\n{normalised[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if normalised[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def class_prior(spec: str, labels: list[str]) -> np.ndarray:
    """Each class's share of the training split's (hard) labels."""
    counts = np.bincount(load_dataset(spec, "train", labels).hard_labels, minlength=len(labels)).astype(float)
    return np.maximum(counts, 1) / counts.sum()


def logit_adjusted(probabilities: np.ndarray, prior: np.ndarray, tau: float) -> np.ndarray:
    """log p - tau * log prior (Menon et al., 2021): the argmax favours classes that are rare in training."""
    return np.log(np.maximum(probabilities, 1e-12)) - tau * np.log(prior)


class Reframed:
    """A data set reader whose faces come out reframed (`training.transforms.reframed`)."""

    def __init__(self, read, side: float):
        self.read, self.side = read, side

    def __call__(self, item) -> np.ndarray:
        return reframed(self.read(item), self.side)


def predict_checkpoint(ckpt: dict, dataset: FaceDataset, flip: bool, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, classes) of a checkpoint, averaged with the mirrored face if `flip`."""
    import torch

    from .checkpoint import model_from_checkpoint
    from .model import class_probabilities
    from .transforms import ModelInput

    meta = ckpt["meta"]
    model = model_from_checkpoint(ckpt)
    dataset.transform = ModelInput(meta["input_size"], meta["channels"], meta["mean"], meta["std"])
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    out = []
    for images, _ in progress(loader, desc="evaluate", leave=False):
        out.append(class_probabilities(model, images, flip).numpy())
    return np.concatenate(out)


def onnx_logits(classifier, dataset: FaceDataset, batch_size: int = 256) -> np.ndarray:
    """Raw scores (N, classes) of an exported model (a `runtime.ExpressionClassifier`), through the runtime's
    preprocessing."""
    out = []
    for start in progress(range(0, len(dataset), batch_size), desc="evaluate", leave=False):
        faces = [dataset.read(dataset.items[i]) for i in range(start, min(len(dataset), start + batch_size))]
        out.append(classifier.logits(faces))
    return np.concatenate(out).astype(np.float64)  # calibration sums over thousands of faces


def calibration_report(probabilities: dict[str, np.ndarray], truth: np.ndarray, path: Path, title: str) -> dict:
    """ECE and the reliability table of each set of probabilities, and their reliability diagram at `path`
    (without matplotlib: no diagram)."""
    curves = {name: reliability(p, truth) for name, p in probabilities.items()}
    if importlib.util.find_spec("matplotlib") is not None:
        plot_reliability(curves, path, title)
    return {name: asdict(curve) for name, curve in curves.items()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return eval_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    onnx_model = any(m.endswith(".onnx") for m in args.model)
    if onnx_model and len(args.model) > 1:
        print("fer-eval: error: an ensemble takes checkpoints (.pth) only; evaluate an ONNX model on its own",
              file=sys.stderr)
        return 2
    if args.flip and onnx_model:
        print("fer-eval: error: --flip applies to checkpoints (.pth); an ONNX model averages the mirror image "
              "only when exported with --flip-tta", file=sys.stderr)
        return 2
    try:
        if onnx_model:
            from runtime import ExpressionClassifier

            classifier = ExpressionClassifier(args.model[0])
            labels = classifier.labels
        else:
            exit_without_torch("fer-eval")
            from .checkpoint import load_checkpoint

            ckpts = [load_checkpoint(m) for m in args.model]
            labels = ckpts[0]["meta"]["labels"]
            for model, ckpt in zip(args.model[1:], ckpts[1:]):
                if ckpt["meta"]["labels"] != labels:
                    raise ValueError(f"{model} has other labels than {args.model[0]}; an ensemble needs one label order")
        dataset = load_dataset(args.data, args.split, labels)
    except (DatasetError, ValueError) as exc:  # CheckpointError is a ValueError
        print(f"fer-eval: error: {exc}", file=sys.stderr)
        return 2
    if args.reframe != 1.0:
        if not 0.3 <= args.reframe <= 3.0:
            print(f"fer-eval: error: --reframe must be between 0.3 and 3, got {args.reframe}", file=sys.stderr)
            return 2
        dataset.read = Reframed(dataset.read, args.reframe)
    if args.limit and args.limit < len(dataset):
        dataset = dataset.subset(np.sort(np.random.default_rng(0).permutation(len(dataset))[:args.limit]))
    try:
        if onnx_model:
            logits = onnx_logits(classifier, dataset)
            temperature = classifier.metadata.temperature
            scores = softmax(logits, temperature)
        else:
            scores = sum(predict_checkpoint(ckpt, dataset, args.flip) for ckpt in ckpts) / len(ckpts)
    except KeyboardInterrupt:
        print("fer-eval: interrupted before any result was written", file=sys.stderr)
        return 130
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calibration = {}
    if args.calibration:
        curves = {"as given" if not onnx_model or temperature == 1.0 else f"temperature {temperature}": scores}
        if onnx_model and temperature != 1.0:
            curves = {"uncalibrated (temperature 1)": softmax(logits), **curves}
        title = f"{Path(args.model[0]).name} on {args.data.split(':')[0]} {args.split}"
        calibration = calibration_report(curves, dataset.hard_labels, out / "reliability.png", title)
        for name, curve in calibration.items():
            print(f"expected calibration error ({BINS} bins), {name}: {100 * curve['ece']:.2f}%")
    if args.logit_adjust:
        scores = logit_adjusted(scores, class_prior(args.data, labels), args.logit_adjust)
    report = report_from_predictions(labels, dataset.hard_labels, scores.argmax(1))
    print(report.table())
    (out / "metrics.json").write_text(json.dumps({"model": args.model, "data": args.data, "split": args.split,
                                                  "reframe": args.reframe, "logit_adjust": args.logit_adjust,
                                                  "flip": args.flip, **asdict(report),
                                                  "calibration": calibration}, indent=1))
    title = " + ".join(Path(m).name for m in args.model)
    if importlib.util.find_spec("matplotlib") is None:
        print(f"all numbers: {out / 'metrics.json'}; the confusion matrix PNG needs matplotlib: "
              "pip install 'fer-edge[gui]'")
        return 0
    plot_confusion(report, out / "confusion_matrix.png", f"{title} on {args.data.split(':')[0]} {args.split}")
    print(f"confusion matrix: {out / 'confusion_matrix.png'}; all numbers: {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
