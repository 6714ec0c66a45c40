"""Per-face latency of expression models, measured in one run so that they can be compared.

    python -m benchmarks.latency ckpt/ferplus_efficientnet_lite0.onnx OLD.onnx --threads 1

Each model classifies one real face crop (`ExpressionClassifier.predict`: preprocessing and the model, batch 1)
`--repeats` times after a warm-up, the models taking turns so that a busy machine slows them alike.
Prints p50/p95 milliseconds, the file size, and each model's p50 relative to the first one.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from runtime import CascadeFaceDetector, ExpressionClassifier, ModelError

FACE = Path(__file__).resolve().parent.parent / "tests" / "data" / "obama-480p.jpg"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fer-bench-latency", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="ONNX models (or fp32 / int8 for the shipped ones)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    p.add_argument("--repeats", type=int, default=2000)
    args = p.parse_args(argv)
    try:
        classifiers = [ExpressionClassifier(m, threads=args.threads) for m in args.models]
    except ModelError as exc:
        print(f"fer-bench-latency: error: {exc}", file=sys.stderr)
        return 2
    frame = cv2.imread(str(FACE))
    face = classifiers[0].crop(frame, CascadeFaceDetector().detect(frame)[0])
    times = [[] for _ in classifiers]
    for _ in range(50):
        for c in classifiers:
            c.predict([face])
    for _ in range(args.repeats):
        for c, t in zip(classifiers, times):
            started = time.perf_counter()
            c.predict([face])
            t.append(time.perf_counter() - started)
    base = np.median(times[0])
    print(f"{'model':50} {'p50 ms':>7} {'p95 ms':>7} {'x first':>8} {'MB':>6}")
    for c, t in zip(classifiers, times):
        print(f"{str(c.path)[-50:]:50} {1e3 * np.median(t):7.3f} {1e3 * np.percentile(t, 95):7.3f} "
              f"{np.median(t) / base:8.2f} {c.path.stat().st_size / 1e6:6.2f}")
    print(f"{args.threads} onnxruntime thread(s), {args.repeats} calls each, batch 1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
