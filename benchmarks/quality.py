"""Does the quality flag tell right readings from wrong ones? FER+ faces shown to the pipeline as photos, clean and
degraded by known blur and downscaling, and the sample clip.

    python -m benchmarks.quality --count 1500

Each FER+ face becomes a small photo as in `benchmarks.photos` (48x48 padded by 25%, upscaled to 144 px) in five
variants: clean; blurred (Gaussian, sigma 1.5 and 3 pixels of the 48 px face); downscaled ("24 px", "16 px": the
photo shrunk by 2 and 3, so the face's 48 pixels are shown on 24 and 16; the detector's box, which takes in more than
the face's pixels, is then about 55 and 37 px). Each photo goes through the photo pipeline (YuNet, the largest face), which gives
every face its `quality` and `reliable` flag (`runtime.quality`). On FER2013Valid the threshold is chosen: the lowest
at which at least 90% of the reliable faces' top labels are right (all variants together); the table for
FER2013Test then gives, per variant, the faces found, the share of them right, the share flagged reliable and the
share right among the reliable and the unreliable ones. On the sample clip: the share of faces flagged reliable
and the three laughing faces in three-quarter view at frame 260 (Happiness, read as Neutral).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from runtime.progress import progress

from benchmarks.photos import ferplus_photo
from runtime import ExpressionClassifier
from runtime.detectors import YuNetFaceDetector
from runtime.models import BUNDLED
from runtime.pipeline import FramePipeline
from runtime.pose import HeadPose
from runtime.quality import RELIABLE_QUALITY, face_quality

ROOT = Path(__file__).resolve().parent.parent
FERPLUS = Path(os.environ.get("FERPLUS_ROOT", ROOT.parent / "shared" / "datasets" / "ferplus"))
CLIP = ROOT.parent / "shared" / "media" / "short_hamilton_clip.mp4"
VARIANTS = {"clean": (0.0, 48), "blur 1.5": (1.5, 48), "blur 3": (3.0, 48), "24 px": (0.0, 24), "16 px": (0.0, 16)}
TARGET = 0.90  # share of reliable faces' top labels right


def degraded_photo(face: np.ndarray, blur: float, side: int) -> np.ndarray:
    """A FER+ face blurred by `blur` (sigma in pixels of the 48 px face) and shrunk to `side` pixels, as a photo
    (`benchmarks.photos.ferplus_photo`, then scaled by side / 48)."""
    if blur:
        face = cv2.GaussianBlur(face, (0, 0), blur)
    photo = ferplus_photo(face)
    if side != face.shape[0]:
        scale = side / face.shape[0]
        photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return photo


def collect(split: str, count: int | None, classifier: ExpressionClassifier,
            variants: tuple[str, ...] = tuple(VARIANTS)) -> list[dict]:
    """One row per (face, variant): the truth, and what the pipeline said of the largest face found (if any)."""
    from training.datasets import load_dataset  # needs no torch

    data = load_dataset(f"ferplus:{FERPLUS}", split, classifier.labels)
    picks = np.arange(len(data)) if count is None else np.sort(np.random.default_rng(0).permutation(len(data))[:count])
    pipeline = FramePipeline(YuNetFaceDetector(BUNDLED["yunet"].path), classifier, photos=True, largest_only=True)
    rows = []
    for variant in variants:
        blur, side = VARIANTS[variant]
        for start in progress(range(0, len(picks), 64), desc=f"{split}, {variant}", leave=False):
            batch = picks[start:start + 64]
            photos = [degraded_photo(data.read(data.items[i]), blur, side) for i in batch]
            for i, results in zip(batch, pipeline.solve_batch(photos)):
                row = {"variant": variant, "truth": int(data.hard_labels[i]), "found": bool(results)}
                if results:
                    r = results[0]
                    row.update(right=bool(r["result"] == data.hard_labels[i]), quality=r["quality"],
                               probability=round(r["probability"], 4), side=min(r["box"][2:]),
                               sharpness=r["sharpness"], turned=max(abs(r.get("yaw", 0)), abs(r.get("pitch", 0))))
                rows.append(row)
    return rows


def rescored(rows: list[dict]) -> list[dict]:
    """Saved rows with their quality recomputed from their signals by the current `runtime.quality.face_quality`."""
    for r in rows:
        if r["found"]:
            r["quality"] = face_quality(r["probability"], r["side"], r["sharpness"], HeadPose(r["turned"], 0.0, 0.0))
    return rows


def choose_threshold(rows: list[dict], target: float = TARGET) -> float:
    """The lowest quality threshold (0.05 steps) at which at least `target` of the reliable faces are right, among
    the clean faces and among all five variants."""
    found = [r for r in rows if r["found"]]
    quality = np.array([r["quality"] for r in found])
    right = np.array([r["right"] for r in found])
    clean = np.array([r["variant"] == "clean" for r in found])
    for threshold in np.arange(0.0, 1.0, 0.05):
        kept = quality >= threshold - 1e-9
        if (kept & clean).any() and right[kept].mean() >= target and right[kept & clean].mean() >= target:
            return round(float(threshold), 2)
    return 1.0


def table(rows: list[dict], threshold: float) -> list[str]:
    lines = ["| faces | found | right (of found) | reliable (of found) | right among reliable | right among unreliable |",
             "|---|---|---|---|---|---|"]
    present = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    groups = {v: [r for r in rows if r["variant"] == v] for v in present}
    if len(present) > 1:
        groups[f"all {len(present)}"] = rows
    for name, group in groups.items():
        found = [r for r in group if r["found"]]
        reliable = [r for r in found if r["quality"] >= threshold]
        unreliable = [r for r in found if r["quality"] < threshold]

        def share(part, of):
            return f"{100 * len(part) / len(of):.1f}%" if of else "-"

        lines.append(f"| {name} | {share(found, group)} | {share([r for r in found if r['right']], found)} | "
                     f"{share(reliable, found)} | {share([r for r in reliable if r['right']], reliable)} | "
                     f"{share([r for r in unreliable if r['right']], unreliable)} |")
    return lines


def clip_lines(classifier: ExpressionClassifier, threshold: float) -> list[str]:
    """The sample clip through fer-camera's video pipeline: share of faces reliable, and the faces of frame 260."""
    from runtime.smoothing import LinearExponentialSmoothing
    from runtime.tracking import IntervalDetector

    if not CLIP.is_file():
        return [f"(the sample clip {CLIP} is not here)"]
    detector = IntervalDetector(YuNetFaceDetector(BUNDLED["yunet"].path))
    pipeline = FramePipeline(detector, classifier, LinearExponentialSmoothing(0.3), track_ids=True,
                             min_quality=threshold)
    capture = cv2.VideoCapture(str(CLIP))
    faces = reliable = 0
    at_260 = []
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        results = pipeline(frame)
        faces += len(results)
        reliable += sum(r["reliable"] for r in results)
        if index == 260:
            at_260 = [f"{r['label']} {r['probability']:.2f}, yaw {r.get('yaw')}, quality {r['quality']:.2f}, "
                      f"{'reliable' if r['reliable'] else 'unreliable'}" for r in results]
        index += 1
    return [f"sample clip: {index} frames, {faces} faces, {100 * reliable / max(faces, 1):.1f}% flagged reliable",
            "frame 260 (three laughing faces in three-quarter view, and one more):", *[f"- {a}" for a in at_260]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=1500, help="faces per split (0: all)")
    p.add_argument("--model", help="ONNX model (default: the shipped fp32)")
    p.add_argument("--out", default="runs/quality", help="folder for the per-face rows (JSON)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated variants to run (default: all of {', '.join(VARIANTS)})")
    p.add_argument("--skip-clip", action="store_true", help="leave out the sample clip")
    p.add_argument("--from-rows", action="store_true",
                   help="do not run the pipeline: re-score the rows an earlier run saved in --out with the current "
                        "runtime.quality constants (to try other ramps or thresholds in seconds)")
    args = p.parse_args(argv)
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        p.error(f"--variants: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(VARIANTS)}")
    if not FERPLUS.is_dir():
        print(f"benchmarks.quality: error: FER+ not found at {FERPLUS} (set FERPLUS_ROOT)", file=sys.stderr)
        return 2
    classifier = ExpressionClassifier(args.model) if args.model else ExpressionClassifier()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for split in ("valid", "test"):
        if args.from_rows:
            rows[split] = rescored(json.loads((out / f"faces_{split}.json").read_text()))
            continue
        rows[split] = collect(split, args.count or None, classifier, variants)
        (out / f"faces_{split}.json").write_text(json.dumps(rows[split]))
    chosen = choose_threshold(rows["valid"])
    print(f"threshold chosen on FER2013Valid ({TARGET:.0%} of reliable faces right): {chosen} "
          f"(runtime.quality.RELIABLE_QUALITY = {RELIABLE_QUALITY})")
    for split in ("valid", "test"):
        faces = sum(r["variant"] == "clean" for r in rows[split])
        print(f"\nFER2013{split.title()}, {faces} faces x {len({r['variant'] for r in rows[split]})} variants, "
              f"reliable = quality >= {RELIABLE_QUALITY}:")
        print("\n".join(table(rows[split], RELIABLE_QUALITY)))
    if not args.skip_clip:
        print()
        print("\n".join(clip_lines(classifier, RELIABLE_QUALITY)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
