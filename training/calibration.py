"""How far a model's probabilities mean what they say, and the temperature that makes them (numpy only, no torch).

`expected_calibration_error`: the top label's probability against how often it is right, in 15 equal-width bins
(Guo et al., 2017), weighted by the share of faces in each bin. `fit_temperature`: the T that minimises the negative
log-likelihood of the true labels under softmax(logits / T) on a validation split; dividing by one T never changes
the argmax, so accuracy stays the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.classifier import softmax

BINS = 15
MIN_PLOTTED = 10  # faces in a bin for the reliability diagram to draw it


@dataclass
class Reliability:
    """Per bin of top-label probability: its mean probability, its accuracy and its number of faces."""
    confidence: list[float]
    accuracy: list[float]
    count: list[int]
    ece: float


def reliability(probabilities: np.ndarray, truth: np.ndarray, bins: int = BINS) -> Reliability:
    """The reliability table and expected calibration error of the top label."""
    top = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == np.asarray(truth)
    which = np.minimum((top * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    confidence = np.bincount(which, weights=top, minlength=bins) / np.maximum(count, 1)
    accuracy = np.bincount(which, weights=right, minlength=bins) / np.maximum(count, 1)
    ece = float(np.sum(count * np.abs(confidence - accuracy)) / max(len(top), 1))
    return Reliability(confidence.round(4).tolist(), accuracy.round(4).tolist(), count.tolist(), round(ece, 4))


def expected_calibration_error(probabilities: np.ndarray, truth: np.ndarray, bins: int = BINS) -> float:
    return reliability(probabilities, truth, bins).ece


def negative_log_likelihood(logits: np.ndarray, truth: np.ndarray, temperature: float) -> float:
    p = softmax(np.asarray(logits, np.float64), temperature)[np.arange(len(truth)), np.asarray(truth)]
    return float(-np.mean(np.log(np.maximum(p, 1e-12))))


def fit_temperature(logits: np.ndarray, truth: np.ndarray, low: float = 0.05, high: float = 20.0) -> float:
    """The temperature in [low, high] of least negative log-likelihood (golden-section search on log T; the
    likelihood is unimodal in T)."""
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = (negative_log_likelihood(logits, truth, np.exp(x)) for x in (c, d))
    while b - a > 1e-4:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = negative_log_likelihood(logits, truth, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = negative_log_likelihood(logits, truth, np.exp(d))
    return round(float(np.exp((a + b) / 2)), 4)


def plot_reliability(curves: dict[str, Reliability], path: Path, title: str) -> None:
    """A reliability diagram (accuracy against confidence per bin, the diagonal is perfect) of each named curve;
    bins of fewer than `MIN_PLOTTED` faces are left out of the lines (they count in the ECE)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="perfectly calibrated")
    for (name, curve), marker in zip(curves.items(), "os^v"):
        used = [i for i, n in enumerate(curve.count) if n >= MIN_PLOTTED]
        ax.plot([curve.confidence[i] for i in used], [curve.accuracy[i] for i in used], marker=marker,
                label=f"{name}: ECE {100 * curve.ece:.1f}%")
    ax.set(xlabel=f"top label's probability (bin mean; bins of {MIN_PLOTTED}+ faces)", ylabel="share of top labels right", xlim=(0, 1),
           ylim=(0, 1), title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
