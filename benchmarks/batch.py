"""fer-batch's scale on a generated archive: copies of the sample clip and photos (../shared/media, else the
repository's portraits and a video made of one), each configuration run as a user runs it (`fer-batch` in a fresh
process, into a fresh output folder).

    python -m benchmarks.batch                        # 6 clips + 48 photos: 1 and 2 local workers, Ray local
    python -m benchmarks.batch --videos 12 --photos 0 --configs local1,local2

Printed per configuration: wall time (start-up included), frames (a photo counts as one), frames per second, the
ratio to one worker, the largest peak RSS of one worker (from the manifest) and of the whole run (`ray` counts only
its actors); a JSON copy in --out.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT.parent / "shared" / "media"
CONFIGS = {"local1": ["--workers", "1"], "local2": ["--workers", "2"], "ray": ["--engine", "ray", "--workers", "2"]}


def build_archive(folder: Path, videos: int, photos: int) -> None:
    """`videos` copies of the sample clip and `photos` copies of the sample photos, in two subfolders."""
    clip = MEDIA / "short_hamilton_clip.mp4"
    pictures = sorted(p for p in MEDIA.glob("*") if p.suffix.lower() in (".jpg", ".png")) if MEDIA.is_dir() else []
    if not clip.is_file():  # a fresh clone without ../shared: the repository's portraits
        from tests.test_batch import write_video

        clip = write_video(folder / "made.mp4", frames=275, fps=29.97)
    pictures = pictures or sorted((ROOT / "tests" / "data").glob("*.jpg"))
    (folder / "videos").mkdir(parents=True)
    (folder / "photos").mkdir()
    for i in range(videos):
        shutil.copy(clip, folder / "videos" / f"clip{i:03d}{clip.suffix}")
    for i in range(photos):
        source = pictures[i % len(pictures)]
        shutil.copy(source, folder / "photos" / f"photo{i:03d}{source.suffix}")
    (folder / "made.mp4").unlink(missing_ok=True)


def run_config(name: str, archive: Path, out: Path) -> dict:
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "runtime.batch", str(archive), "--output", str(out), "--quiet",
                          *CONFIGS[name]], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"{name}: fer-batch exited {run.returncode}: {run.stderr.strip()[-500:]}")
    entries = {}
    for line in (out / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        entries[entry["source"]] = entry
    frames = sum(e["frames"] for e in entries.values())
    return {"config": name, "wall_s": round(wall, 2), "frames": frames, "faces": sum(e["faces"] for e in entries.values()),
            "fps": round(frames / wall, 1), "worker_peak_rss_mb": max(e["worker_rss_mb"] for e in entries.values()),
            "children_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.batch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=6, help="copies of the sample clip (default %(default)s)")
    p.add_argument("--photos", type=int, default=48, help="copies of the sample photos (default %(default)s)")
    p.add_argument("--configs", default="local1,local2,ray", help="of local1, local2, ray (default %(default)s)")
    p.add_argument("--out", default="runs/batch", help="folder for results.json (default %(default)s)")
    args = p.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        p.error(f"unknown configuration {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive"
        build_archive(archive, args.videos, args.photos)
        print(f"archive: {args.videos} videos, {args.photos} photos; {platform.processor() or platform.machine()}, "
              f"{len(__import__('os').sched_getaffinity(0))} cores, OpenCV {cv2.__version__}")
        for name in configs:
            result = run_config(name, archive, Path(tmp) / f"out-{name}")
            results.append(result)
            base = next((r for r in results if r["config"] == "local1"), None)
            ratio = f"{result['fps'] / base['fps']:.2f}x" if base else "-"
            print(f"{name:7s} {result['wall_s']:7.1f} s  {result['frames']} frames  {result['faces']} faces  "
                  f"{result['fps']:6.1f} frames/s  {ratio:>6s} of local1  worker peak RSS "
                  f"{result['worker_peak_rss_mb']:.0f} MB", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(
        {"date": time.strftime("%Y-%m-%d"), "videos": args.videos, "photos": args.photos, "results": results},
        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
