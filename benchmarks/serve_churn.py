"""Memory of `fer-camera --serve` under client churn: a dashboard that reconnects every few seconds for days.

    python -m benchmarks.serve_churn --connections 10000 --clients 20 --seconds 1 --out churn.png

Starts `fer-camera --source CLIP --serve PORT --loop --headless` (YuNet, the sample clip), then runs rounds of
`--clients` MJPEG and as many Server-Sent-Events clients at once, each reading for `--seconds` and then hanging up,
until `--connections` connections were made. After each round it reads the server's resident memory (RSS) and thread
count from /proc. Prints one line per tenth of the run and the growth after warm-up (the first `--warmup` rounds);
writes the series as CSV and a PNG chart when asked.
"""
from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from .fps import DEFAULT_SOURCE

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> tuple[float, int]:
    """(RSS in MB, threads) of process `pid`."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def client(url: str, seconds: float, counts: list[int]) -> None:
    """Read `url` for `seconds`, then hang up; counts the bytes read."""
    deadline, read = time.monotonic() + seconds, 0
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            while time.monotonic() < deadline:
                chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
                if not chunk:
                    break
                read += len(chunk)
    except OSError:
        pass
    counts.append(read)


def chart(rows: list[dict], path: Path) -> None:
    width, height, left, bottom = 900, 360, 70, 40
    image = np.full((height, width, 3), 255, np.uint8)
    rss = np.array([r["rss_mb"] for r in rows])
    low, high = float(rss.min()) - 5, float(rss.max()) + 5
    xs = left + np.arange(len(rss)) / max(1, len(rss) - 1) * (width - left - 20)
    ys = height - bottom - (rss - low) / (high - low) * (height - bottom - 30)
    cv2.polylines(image, [np.stack([xs, ys], 1).round().astype(np.int32)], False, (200, 90, 30), 2, cv2.LINE_AA)
    cv2.rectangle(image, (left, 30), (width - 20, height - bottom), (160, 160, 160), 1)
    for value in (low, (low + high) / 2, high):
        y = round(height - bottom - (value - low) / (high - low) * (height - bottom - 30))
        cv2.putText(image, f"{value:.0f}", (10, y + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.putText(image, f"fer-camera --serve RSS (MB) over {rows[-1]['connections']} connections", (left, 20),
                cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), image)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="serve_churn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=str(DEFAULT_SOURCE), help="video the server plays in a loop")
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=20, help="MJPEG clients per round, and as many SSE clients")
    p.add_argument("--seconds", type=float, default=1.0, help="how long each client reads")
    p.add_argument("--warmup", type=int, default=10, help="rounds before the growth is measured")
    p.add_argument("--csv", help="write the per-round series here")
    p.add_argument("--out", help="write a PNG chart of RSS here")
    args = p.parse_args(argv)
    if not Path(args.source).is_file():
        print(f"serve_churn: error: no video at {args.source} (give --source)", file=sys.stderr)
        return 2
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "runtime.camera", "--source", args.source, "--serve", str(port),
                               "--loop", "--headless", "--quiet"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    base = f"http://127.0.0.1:{port}"
    rows: list[dict] = []
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        rounds = -(-args.connections // (2 * args.clients))
        started = time.monotonic()
        for number in range(1, rounds + 1):
            counts: list[int] = []
            threads = [threading.Thread(target=client, args=(f"{base}/{path}", args.seconds, counts))
                       for path in ("stream.mjpg", "events") for _ in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            time.sleep(0.2)  # the server's client threads end
            rss, thread_count = proc_status(server.pid)
            rows.append({"round": number, "connections": number * 2 * args.clients, "rss_mb": round(rss, 1),
                         "threads": thread_count, "bytes_read": sum(counts), "seconds": round(time.monotonic()
                                                                                               - started, 1)})
            if number % max(1, rounds // 10) == 0 or number == rounds:
                print(f"round {number}/{rounds}: {rows[-1]['connections']} connections, RSS {rss:.1f} MB, "
                      f"{thread_count} threads, {sum(counts) / 1e6:.1f} MB read this round", flush=True)
    finally:
        server.terminate()
        server.communicate(timeout=30)
    warm = rows[min(args.warmup, len(rows) - 1)]
    tail = [r["rss_mb"] for r in rows[args.warmup:]] or [warm["rss_mb"]]
    print(f"after {warm['connections']} connections (warm-up) RSS {warm['rss_mb']:.1f} MB; over the remaining "
          f"{rows[-1]['connections'] - warm['connections']}: min {min(tail):.1f}, max {max(tail):.1f}, last "
          f"{rows[-1]['rss_mb']:.1f} MB ({rows[-1]['rss_mb'] - warm['rss_mb']:+.1f} MB), threads at the end "
          f"{rows[-1]['threads']}")
    if args.csv:
        with open(args.csv, "w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if args.out:
        chart(rows, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
