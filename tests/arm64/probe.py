"""What the runtime computes on this machine, as one JSON object on stdout (run on x86 and under emulation).

    python tests/arm64/probe.py                     # from the repository root, in a runtime-only environment
    python tests/arm64/probe.py --faces FACES.npy   # the shipped INT8 model's labels of these face crops

Records the interpreter and CPU architecture, whether importing `runtime` pulled in torch, the Haar boxes found
in the committed portraits, and the shipped fp32 and INT8 models' probabilities for each face at three framings.
`tests/arm64/check.py` compares the records of two machines.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PORTRAITS = sorted((ROOT / "tests" / "data").glob("*.jpg"))
MARGINS = (-0.05, 0.0, 0.1)  # widening of the detector's box on each side, as a fraction of its size


def probe() -> dict:
    """The record: {"python", "machine", "torch_loaded", "boxes": {name: [[x, y, w, h], ...]},
    "probs": {"fp32": [[p, ...], ...], "int8": [...]}} (probabilities: every face at every framing, in order)."""
    import cv2

    import runtime
    from runtime.boxes import widen_box
    from runtime.classifier import SHIPPED_MODELS

    record = {"python": platform.python_version(), "machine": platform.machine(),
              "torch_loaded": "torch" in sys.modules, "boxes": {}, "probs": {}}
    detector = runtime.CascadeFaceDetector()
    crops = []
    for path in PORTRAITS:
        frame = cv2.imread(str(path))
        boxes = detector.detect(frame)
        record["boxes"][path.name] = boxes.tolist()
        crops += [(frame, widen_box(box, margin, frame.shape)) for box in boxes for margin in MARGINS]
    for name in SHIPPED_MODELS:
        classifier = runtime.ExpressionClassifier(name, threads=1)
        faces = [classifier.crop(frame, box) for frame, box in crops]
        record["probs"][name] = classifier.predict(faces).astype(float).tolist()
    return record


def int8_labels(faces_path: str) -> dict:
    """{"machine", "labels"}: the shipped INT8 model's top label for each face of a [N, H, W] uint8 file."""
    import numpy as np

    import runtime

    faces = np.load(faces_path)
    classifier = runtime.ExpressionClassifier("int8")
    probs = np.concatenate([classifier.predict(list(faces[i:i + 100])) for i in range(0, len(faces), 100)])
    return {"machine": platform.machine(), "labels": probs.argmax(1).tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", help="a .npy file of face crops: report the INT8 model's labels for them")
    args = parser.parse_args()
    json.dump(int8_labels(args.faces) if args.faces else probe(), sys.stdout)
    print()
