"""Is the shipped model as accurate on faces turned upright on their landmarks as on the data set's crops?

    python -m benchmarks.aligned_ferplus            # FER2013Valid chooses align_roll, FER2013Test reports it
    python -m benchmarks.aligned_ferplus --count 500

Each FER+ face (48x48) is shown to the photo path as a small photo (padded by 25%, edge pixels repeated, upscaled to
144x144: `benchmarks.photos.ferplus_photo`); `runtime.photos.PhotoDetector` finds it and measures its landmarks as
it does for every photo. The face's tilt (`runtime.align.roll_degrees`) then decides its crop: the data set's crop as
it is, or turned upright about its centre (the runtime's `face_crop` on a face whose tilt exceeds the model's
`align_roll`). A face the detector does not find keeps its crop. Accuracy is the top label against the majority of
the ten annotators, for align_roll = never, always (0) and 5 to 20 degrees; the best on FER2013Valid is the one the
model's metadata should carry.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from runtime.progress import progress

from runtime import ExpressionClassifier
from runtime.align import roll_degrees, turned_rect
from runtime.detectors import create_detector
from runtime.photos import PhotoDetector

from .photos import FERPLUS, PHOTO_PAD, PHOTO_SIDE, ferplus_photo

THRESHOLDS = (None, 0.0, 5.0, 10.0, 15.0, 20.0)


def rolls(faces: list[np.ndarray], detector: PhotoDetector, split: str) -> list[float | None]:
    """Each face's tilt as the photo path measures it (None: not found)."""
    out = []
    for face in progress(faces, desc=f"landmarks, {split}", leave=False):
        boxes = detector.detect(ferplus_photo(face))
        marks = detector.last_landmarks.get(tuple(int(v) for v in max(boxes, key=lambda b: b[2]))) \
            if len(boxes) else None
        out.append(None if marks is None else roll_degrees(marks))
    return out


def accuracy(classifier: ExpressionClassifier, faces: list[np.ndarray], labels: np.ndarray,
             tilts: list[float | None], align_roll: float | None) -> float:
    crops = []
    for face, roll in zip(faces, tilts):
        turn = roll is not None and align_roll is not None and abs(roll) > align_roll
        side = face.shape[0]
        crops.append(turned_rect(face, (0, 0, side, side), (side / 2, side / 2), roll, side) if turn else face)
    predicted = np.concatenate([classifier.predict(crops[i:i + 256]).argmax(1) for i in range(0, len(crops), 256)])
    return 100 * float(np.mean(predicted == labels))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fer-bench-aligned", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(FERPLUS), help="FER+ folder (default: ../shared/datasets/ferplus)")
    p.add_argument("--model", help="expression model (default: the shipped one)")
    p.add_argument("--count", type=int, help="faces per split, spread evenly (default: all)")
    args = p.parse_args(argv)
    if not (Path(args.data) / "FER2013Test" / "label.csv").is_file():
        print(f"fer-bench-aligned: error: no FER+ at {args.data} (give --data)", file=sys.stderr)
        return 2
    from training.datasets import load_dataset  # needs no torch

    classifier = ExpressionClassifier(args.model) if args.model else ExpressionClassifier()
    detector = PhotoDetector(create_detector())
    print(f"model {classifier.metadata.arch}, align_roll in its metadata: {classifier.metadata.align_roll}; "
          f"faces as {PHOTO_SIDE} px photos padded by {PHOTO_PAD:.0%}")
    chosen = None
    for split in ("valid", "test"):
        data = load_dataset(f"ferplus:{args.data}", split, classifier.labels)
        picks = np.arange(len(data)) if args.count is None else \
            np.linspace(0, len(data) - 1, args.count).round().astype(int)
        faces = [data.read(data.items[i]) for i in picks]
        tilts = rolls(faces, detector, split)
        found = [abs(r) for r in tilts if r is not None]
        print(f"FER2013{split.title()}: {len(faces)} faces, found {100 * len(found) / len(faces):.1f}%, tilt median "
              f"{np.median(found):.1f}, 90th percentile {np.percentile(found, 90):.1f} degrees")
        options = THRESHOLDS if split == "valid" else (None, chosen)
        scores = {t: accuracy(classifier, faces, data.hard_labels[picks], tilts, t) for t in options}
        for t, score in scores.items():
            name = "never turned (the data set's crops)" if t is None else f"align_roll {t:g}"
            print(f"  {name}: {score:.2f}%")
        if split == "valid":
            chosen = max((t for t in THRESHOLDS if t is not None), key=lambda t: (scores[t], t))
            print(f"  chosen on FER2013Valid: align_roll {chosen:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
