"""Does the quality flag tell right readings from wrong ones? FER+ faces shown to the pipeline as photos, clean and
degraded by known blur and downscaling, and the sample clip.

    python -m benchmarks.quality --count 1500
    python -m benchmarks.quality --count 0 --degraded-count 1500 --out runs/quality_full  # the shipped choice (45 min)
    python -m benchmarks.quality --from-rows --search --out runs/quality_full  # the ramps, on those rows (1 min)

Each FER+ face becomes a small photo as in `benchmarks.photos` (48x48 padded by 25%, upscaled to 144 px) in five
variants: clean; blurred (Gaussian, sigma 1.5 and 3 pixels of the 48 px face); downscaled ("24 px", "16 px": the
photo shrunk by 2 and 3, so the face's 48 pixels are shown on 24 and 16; the detector's box, which takes in more than
the face's pixels, is then about 55 and 37 px). Each photo goes through the photo pipeline (YuNet, the largest face), which gives
every face its `quality` and `reliable` flag (`runtime.quality`). On FER2013Valid the threshold is chosen
(`choose_threshold`: the lowest at which the reliable faces' top labels are 90% right with 95% confidence, among
the clean faces and among all, and 90% right in each degraded variant); with `--search`, the size and sharpness
ramps too (`SEARCH`, on saved rows with `--from-rows`). The table for FER2013Test then gives, per variant, the
faces found, the share of them right, the share flagged reliable and the share right among the reliable and the
unreliable ones. On the sample clip: the share of faces flagged reliable
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
from runtime.quality import RELIABLE_QUALITY, SHARPNESS, SIZE, Ramp, face_quality

ROOT = Path(__file__).resolve().parent.parent
FERPLUS = Path(os.environ.get("FERPLUS_ROOT", ROOT.parent / "shared" / "datasets" / "ferplus"))
CLIP = ROOT.parent / "shared" / "media" / "short_hamilton_clip.mp4"
VARIANTS = {"clean": (0.0, 48), "blur 1.5": (1.5, 48), "blur 3": (3.0, 48), "24 px": (0.0, 24), "16 px": (0.0, 16)}
TARGET = 0.90  # share of reliable faces' top labels right
# the ramps `--search` tries (runtime.quality's size and sharpness ramps): zero and one points
SEARCH = {"size": [Ramp(z, o) for z, o in ((8, 24), (8, 32), (8, 40), (8, 48), (12, 36), (16, 32))],
          "sharpness": [Ramp(z, o) for z in (0.6, 0.8, 1.0, 1.2, 1.4) for o in (1.6, 1.8, 2.0, 2.2, 2.6)]}


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
            variants: tuple[str, ...] = tuple(VARIANTS), degraded_count: int = -1) -> list[dict]:
    """One row per (face, variant): the truth, and what the pipeline said of the largest face found (if any).
    `count` faces of the split (None: all), the same random ones for every variant; the degraded variants only the
    first `degraded_count` of them (-1: as many as the clean ones)."""
    from training.datasets import load_dataset  # needs no torch

    data = load_dataset(f"ferplus:{FERPLUS}", split, classifier.labels)
    order = np.random.default_rng(0).permutation(len(data))
    pipeline = FramePipeline(YuNetFaceDetector(BUNDLED["yunet"].path), classifier, photos=True, largest_only=True)
    rows = []
    for variant in variants:
        blur, side = VARIANTS[variant]
        n = count if variant == "clean" or degraded_count == -1 else degraded_count
        picks = np.sort(order[:n]) if n else np.arange(len(data))
        for start in progress(range(0, len(picks), 64), desc=f"{split}, {variant}", leave=False):
            batch = picks[start:start + 64]
            photos = [degraded_photo(data.read(data.items[i]), blur, side) for i in batch]
            for i, results in zip(batch, pipeline.solve_batch(photos)):
                row = {"variant": variant, "index": int(i), "truth": int(data.hard_labels[i]), "found": bool(results)}
                if results:
                    r = results[0]
                    row.update(right=bool(r["result"] == data.hard_labels[i]), quality=r["quality"],
                               probability=round(r["probability"], 4), side=min(r["box"][2:]),
                               sharpness=r["sharpness"], yaw=r.get("yaw"), pitch=r.get("pitch"))
                rows.append(row)
    return rows


def rescored(rows: list[dict], size_ramp: Ramp = SIZE, sharpness_ramp: Ramp = SHARPNESS) -> list[dict]:
    """Copies of saved rows with their quality recomputed from their signals by `runtime.quality.face_quality` (the
    shipped ramps, or those given)."""
    return [{**r, "quality": face_quality(r["probability"], r["side"], r["sharpness"],
                                          HeadPose(r["yaw"], r["pitch"], 0.0) if r["yaw"] is not None else None,
                                          size_ramp, sharpness_ramp)}
            if r["found"] else r for r in rows]


def wilson_lower(right: int, count: int, z: float = 1.96) -> float:
    """The lower end of the Wilson score interval (95% for z = 1.96) of a share of `right` out of `count`."""
    if count == 0:
        return 0.0
    share = right / count
    centre = share + z * z / (2 * count)
    spread = z * np.sqrt(share * (1 - share) / count + z * z / (4 * count * count))
    return float((centre - spread) / (1 + z * z / count))


def choose_threshold(rows: list[dict], target: float = TARGET, least: int = 20) -> float:
    """The lowest quality threshold (0.01 steps) at which the share of reliable faces right is at least `target`
    with 95% confidence (`wilson_lower`) among the clean faces and among all of them, and at least `target` among
    the reliable faces of each degraded variant that has `least` of them or more (1.0 if none)."""
    found = [r for r in rows if r["found"]]
    quality = np.array([r["quality"] for r in found])
    right = np.array([r["right"] for r in found])
    variant = np.array([r["variant"] for r in found])
    for threshold in np.arange(0.0, 1.0, 0.01):
        kept = quality >= threshold - 1e-9
        clean = kept & (variant == "clean")
        degraded = [kept & (variant == v) for v in sorted(set(variant) - {"clean"})]
        if clean.any() and all(wilson_lower(int(right[g].sum()), int(g.sum())) >= target for g in (kept, clean)) \
                and all(right[g].mean() >= target for g in degraded if g.sum() >= least):
            return round(float(threshold), 2)
    return 1.0


def kept_share(rows: list[dict], threshold: float, variant: str | None = "clean") -> float:
    """The share of a variant's faces (None: of all rows), found or not, flagged reliable at `threshold`."""
    group = [r for r in rows if variant is None or r["variant"] == variant]
    return sum(r["found"] and r["quality"] >= threshold - 1e-9 for r in group) / max(len(group), 1)


def search(rows: list[dict]) -> list[tuple[float, float, Ramp, Ramp, float]]:
    """Every pair of ramps in SEARCH with the threshold `choose_threshold` gives it on `rows` (FER2013Valid) and the
    shares of all faces and of the clean ones it keeps reliable, most kept first."""
    out = []
    for size_ramp in SEARCH["size"]:
        for sharpness_ramp in SEARCH["sharpness"]:
            scored = rescored(rows, size_ramp, sharpness_ramp)
            threshold = choose_threshold(scored)
            out.append((kept_share(scored, threshold, None), kept_share(scored, threshold), size_ramp,
                        sharpness_ramp, threshold))
    return sorted(out, key=lambda t: (-round(t[0], 4), -t[1]))


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
    p.add_argument("--degraded-count", type=int, default=-1,
                   help="faces per split in each degraded variant, the first of the clean ones (0: all; default: as "
                        "many as --count): a blurred photo in which no face is found upright is searched turned and "
                        "tilted, 20 times slower than a clean one")
    p.add_argument("--model", help="ONNX model (default: the shipped fp32)")
    p.add_argument("--out", default="runs/quality", help="folder for the per-face rows (JSON)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated variants to run (default: all of {', '.join(VARIANTS)})")
    p.add_argument("--skip-clip", action="store_true", help="leave out the sample clip")
    p.add_argument("--search", action="store_true",
                   help="try every pair of size and sharpness ramps in SEARCH on FER2013Valid's rows (each with the "
                        "threshold the rule chooses) and print the five that keep the most faces reliable (all variants, then the "
                        "clean ones)")
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
        rows[split] = collect(split, args.count or None, classifier, variants, args.degraded_count)
        (out / f"faces_{split}.json").write_text(json.dumps(rows[split]))
    if args.search:
        print("size ramp | sharpness ramp | threshold | FER2013Valid reliable: all faces, clean faces | "
              "FER2013Test clean faces: reliable, right among them")
        for share_all, share, size_ramp, sharpness_ramp, threshold in search(rows["valid"])[:5]:
            test = [r for r in rescored(rows["test"], size_ramp, sharpness_ramp) if r["variant"] == "clean"]
            kept = [r for r in test if r["found"] and r["quality"] >= threshold - 1e-9]
            print(f"{size_ramp.zero:g}-{size_ramp.one:g} px | {sharpness_ramp.zero:g}-{sharpness_ramp.one:g} | "
                  f"{threshold} | {100 * share_all:.1f}%, {100 * share:.1f}% | {100 * kept_share(test, threshold):.1f}%, "
                  f"{100 * np.mean([r['right'] for r in kept]):.1f}%")
    chosen = choose_threshold(rows["valid"])
    print(f"threshold chosen on FER2013Valid ({TARGET:.0%} of reliable faces right, with 95% confidence): {chosen} "
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
