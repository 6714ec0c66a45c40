"""Photos of every size and orientation through the photo path (`runtime.photos` + `runtime.align`), as
`fer-camera --source PHOTO` and `BatchSolver` run them.

    python -m benchmarks.photos                      # all sections (about 15 minutes on 2 cores)
    python -m benchmarks.photos --ferplus-count 500  # fewer FER+ faces per angle
    python -m benchmarks.photos --skip-ferplus       # the sample media only (about 2 minutes)
    python -m benchmarks.photos --sizes-only         # section 1

1. sizes: the sample portraits (obama-1080p.jpg, biden.jpg from ../shared/media) scaled to 0.3 to 48 megapixels
   and written as JPEGs; each read and solved in a fresh process, as `fer-camera` does: faces found, label, the
   process's peak RSS, the time to decode the photo and the time of the pipeline (detect + align + classify).
2. rotations: the same portraits turned by 0, +-15, +-30, 90, 180 and 270 degrees (the canvas grows to hold the
   turned photo): faces found and whether the label is the upright photo's.
3. a 4x4 grid of small faces: the portraits at 16 sizes (faces of about 20 to 60 pixels) in one 1280x720 photo.
4. false faces: every sample photo, with the faces it holds (a face found beyond them is false).
5. FER+ test faces as small photos, as the photos issue measured them: each 48x48 face padded by 25% (edge pixels
   repeated), upscaled to 144x144, turned, solved by `BatchSolver` (the largest face); a face not found counts as
   wrong. The label is right when it is the majority of the ten annotators.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from runtime.progress import progress

from runtime import BatchSolver, ExpressionClassifier
from runtime.detectors import create_detector
from runtime.photos import read_photo
from runtime.pipeline import FramePipeline

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT.parent / "shared" / "media"
FERPLUS = Path(os.environ.get("FERPLUS_ROOT", ROOT.parent / "shared" / "datasets" / "ferplus"))
PORTRAITS = ("obama-1080p.jpg", "biden.jpg")
MEGAPIXELS = (0.3, 2.0, 8.0, 12.0, 24.0, 48.0)
ANGLES = (0, 15, -15, 30, -30, 90, 180, 270)
PHOTO_PAD, PHOTO_SIDE = 0.25, 144  # a FER+ face as a small photo: padded by 25% of its side, upscaled
FACES_IN = {"obama-1080p.jpg": 1, "obama-480p.jpg": 1, "biden.jpg": 1, "two_people.jpg": 2,
            "lin-manuel-miranda.png": 1, "alex-lacamoire.png": 1, "obama_partial_face.jpg": 1}


def turned(image: np.ndarray, degrees: float, grow: bool = True) -> np.ndarray:
    """`image` turned `degrees` counter-clockwise; exact for quarter turns; otherwise on a canvas grown to hold it
    (`grow`) or of the same size, the corners filled by repeating the edge."""
    quarter = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
    if degrees % 360 in quarter:
        return cv2.rotate(image, quarter[degrees % 360])
    if degrees % 360 == 0:
        return image
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    size = (w, h)
    if grow:
        cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
        size = (int(np.ceil(w * cos + h * sin)), int(np.ceil(w * sin + h * cos)))
        matrix[:, 2] += (size[0] / 2 - w / 2, size[1] / 2 - h / 2)
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def ferplus_photo(face: np.ndarray) -> np.ndarray:
    """A 48x48 FER+ face as a small BGR photo: padded by PHOTO_PAD of its side (edge pixels repeated, half on each
    side), upscaled to PHOTO_SIDE pixels."""
    pad = round(face.shape[0] * PHOTO_PAD / 2)
    face = cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    face = cv2.resize(face, (PHOTO_SIDE, PHOTO_SIDE), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(face, cv2.COLOR_GRAY2BGR) if face.ndim == 2 else face


def solve_one(path: str, model: str | None) -> dict:
    """One photo solved as fer-camera solves it (in this process): faces, labels and times."""
    classifier = ExpressionClassifier(model) if model else ExpressionClassifier()
    pipeline = FramePipeline(create_detector(), classifier, photos=True)
    pipeline(np.zeros((64, 64, 3), np.uint8))  # load and warm both models
    t0 = time.perf_counter()
    image = read_photo(path)
    t1 = time.perf_counter()
    results = pipeline(image)
    t2 = time.perf_counter()
    return {"size": [image.shape[1], image.shape[0]], "read_s": t1 - t0, "solve_s": t2 - t1,
            "faces": [[list(r["box"]), r["label"], round(r["probability"], 3)] for r in results],
            "rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM where Linux gives it (a child's getrusage would also count the memory of the
    parent it was forked from), else getrusage's."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource

        scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024 / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def in_fresh_process(path: Path, model: str | None) -> dict:
    """`solve_one` in a child process (its peak RSS in MB included)."""
    cmd = [sys.executable, "-m", "benchmarks.photos", "--one", str(path)] + (["--model", model] if model else [])
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)


def sizes(media: Path, model: str | None, folder: Path) -> list[str]:
    lines = ["| photo | pixels | megapixels | faces found | label | peak RSS | decode | pipeline |", "|---|---|---|---|---|---|---|---|"]
    for name in PORTRAITS:
        image = cv2.imread(str(media / name), cv2.IMREAD_COLOR)
        for mp in MEGAPIXELS:
            scale = np.sqrt(mp * 1e6 / (image.shape[0] * image.shape[1]))
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            path = folder / f"{Path(name).stem}-{mp:g}mp.jpg"
            cv2.imwrite(str(path), cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if scale > 1 else
                                              cv2.INTER_AREA), [cv2.IMWRITE_JPEG_QUALITY, 92])
            r = in_fresh_process(path, model)
            labels = ", ".join(f"{label} {p:.2f}" for _, label, p in r["faces"]) or "-"
            lines.append(f"| {name} | {size[0]}x{size[1]} | {mp:g} | {len(r['faces'])} | {labels} | "
                         f"{r['rss_mb']:.0f} MB | {r['read_s']:.2f} s | {r['solve_s']:.2f} s |")
            print(lines[-1], flush=True)
            path.unlink()
    return lines


def rotations(media: Path, pipeline: FramePipeline) -> list[str]:
    lines = ["| photo | turned | faces found | label (upright's) | time |", "|---|---|---|---|---|"]
    for name in PORTRAITS:
        image = cv2.imread(str(media / name), cv2.IMREAD_COLOR)
        upright = None
        for degrees in ANGLES:
            t0 = time.perf_counter()
            results = pipeline(turned(image, degrees))
            seconds = time.perf_counter() - t0
            label = results[0]["label"] if results else "-"
            upright = upright or label
            lines.append(f"| {name} | {degrees} | {len(results)} | {label} "
                         f"{'(same)' if label == upright else '(differs)'} | {seconds:.2f} s |")
            print(lines[-1], flush=True)
    return lines


def grid(media: Path, pipeline: FramePipeline) -> list[str]:
    """16 portraits in a 4x4 grid of 320x180 cells, scaled so their faces are about 20 to 60 pixels wide."""
    canvas = np.full((720, 1280, 3), 200, np.uint8)
    want = []
    cells = [(r, c) for r in range(4) for c in range(4)]
    for i, (r, c) in enumerate(cells):
        image = cv2.imread(str(media / PORTRAITS[i % 2]), cv2.IMREAD_COLOR)
        face = pipeline(image)[0]
        width = 20 + 40 * i / 15  # the face's width in the grid
        scale = width / face["box"][2]
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        fx, fy = (face["box"][0] + face["box"][2] / 2) * scale, (face["box"][1] + face["box"][3] / 2) * scale
        x0, y0 = max(0, int(fx - 160)), max(0, int(fy - 90))  # the cell's part of the portrait
        patch = small[y0:y0 + 180, x0:x0 + 320]
        canvas[r * 180:r * 180 + patch.shape[0], c * 320:c * 320 + patch.shape[1]] = patch
        want.append((c * 320 + fx - x0, r * 180 + fy - y0, round(width), face["label"]))
    t0 = time.perf_counter()
    results = pipeline(canvas)
    seconds = time.perf_counter() - t0
    found = same = 0
    for cx, cy, _, label in want:
        hit = [r for r in results if abs(r["box"][0] + r["box"][2] / 2 - cx) < 20
               and abs(r["box"][1] + r["box"][3] / 2 - cy) < 20]
        found += bool(hit)
        same += bool(hit) and hit[0]["label"] == label
    extra = len(results) - found
    return [f"4x4 grid, faces {want[0][2]}-{want[-1][2]} px in 1280x720: {found}/16 found, {same}/16 with the "
            f"full-size portrait's label, {extra} other boxes, {seconds:.2f} s"]


def false_faces(media: Path, pipeline: FramePipeline) -> list[str]:
    lines, extra = [], 0
    for name, count in FACES_IN.items():
        if not (media / name).exists():
            continue
        image = read_photo(media / name)
        for degrees in (0, 90, 180):
            found = len(pipeline(turned(image, degrees)))
            extra += max(0, found - count)
            if found != count:
                lines.append(f"{name} turned {degrees}: {found} faces found, {count} there")
    return lines + [f"false faces on the sample photos (each at 0, 90 and 180 degrees): {extra}"]


def ferplus(model: str | None, count: int | None, detector_kind: str) -> list[str]:
    from training.datasets import load_dataset  # needs no torch

    classifier = ExpressionClassifier(model) if model else ExpressionClassifier()
    data = load_dataset(f"ferplus:{FERPLUS}", "test", classifier.labels)
    picks = np.arange(len(data)) if count is None else \
        np.random.default_rng(0).permutation(len(data))[:count]
    solver = BatchSolver(create_detector(detector_kind), classifier)
    lines = [f"FER2013Test, {len(picks)} faces as 144x144 photos (48x48 padded by 25%, upscaled):",
             "| turned | found | right (not found = wrong) |", "|---|---|---|"]
    for degrees in ANGLES[:7]:
        found = right = 0
        for start in progress(range(0, len(picks), 64), desc=f"FER+ at {degrees} degrees", leave=False):
            batch = picks[start:start + 64]
            photos = [turned(ferplus_photo(data.read(data.items[i])), degrees, grow=False) for i in batch]
            out = solver.solve(list(zip(batch, photos)))
            for i, exist, label in zip(batch, out["Exist"], out["Class"]):
                found += exist
                right += exist and label == classifier.labels[data.hard_labels[i]]
        lines.append(f"| {degrees} | {100 * found / len(picks):.1f}% | {100 * right / len(picks):.1f}% |")
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fer-bench-photos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--media", default=str(MEDIA), help="folder with the sample photos (default: ../shared/media)")
    p.add_argument("--model", help="expression model (default: the shipped one)")
    p.add_argument("--ferplus-count", type=int, help="FER+ test faces per angle (default: all)")
    p.add_argument("--skip-ferplus", action="store_true", help="leave out section 5")
    p.add_argument("--sizes-only", action="store_true", help="section 1 only")
    p.add_argument("--one", help=argparse.SUPPRESS)  # a child process of section 1
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(solve_one(args.one, args.model)))
        return 0
    media = Path(args.media)
    if not all((media / name).exists() for name in PORTRAITS):
        print(f"fer-bench-photos: error: {media} lacks {' or '.join(PORTRAITS)} (give --media)", file=sys.stderr)
        return 2
    classifier = ExpressionClassifier(args.model) if args.model else ExpressionClassifier()
    pipeline = FramePipeline(create_detector(), classifier, photos=True)
    with tempfile.TemporaryDirectory() as folder:
        out = sizes(media, args.model, Path(folder))
    if args.sizes_only:
        print("\n".join(out))
        return 0
    out += rotations(media, pipeline) + grid(media, pipeline) + false_faces(media, pipeline)
    if not args.skip_ferplus:
        if not FERPLUS.is_dir():
            out.append(f"FER+ section skipped: {FERPLUS} not found (set FERPLUS_ROOT)")
        else:
            out += ferplus(args.model, args.ferplus_count, "yunet")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
