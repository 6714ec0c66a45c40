"""What `--mqtt` costs the pipeline: `fer-camera` on a clip without --mqtt, with a broker that accepts and never
answers, and (when mosquitto is installed) with a real broker on loopback.

    python -m benchmarks.mqtt_overhead --source ../shared/media/short_hamilton_clip.mp4 --rounds 5

Each round runs the variants one after another (so a busy moment of the machine hits them alike); the report is
each variant's median and best FPS from its closing line (the frames' processing, not the start-up's wait for the
broker) and its median wall time for the whole command.
"""
from __future__ import annotations

import argparse
import getpass
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "media" / "short_hamilton_clip.mp4"
CLOSING = re.compile(r"\d+ frames, \d+ faces, ([\d.]+) fps")


def silent_broker() -> socket.socket:
    """A loopback port that accepts connections and never says a word (no CONNACK)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []  # the accepted connections stay open, unanswered

    def accept() -> None:
        try:
            while True:
                held.append(server.accept())
        except OSError:  # closed at the end
            pass
    threading.Thread(target=accept, daemon=True).start()
    return server


def mosquitto(folder: Path) -> tuple[subprocess.Popen, int] | None:
    """Debian's mosquitto on a free loopback port, or None when it is not installed."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = folder / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                      f"user {getpass.getuser()}\n")
    proc = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.1)
    proc.terminate()
    return None


def run_once(source: Path, extra: list[str]) -> tuple[float, float]:
    """One fer-camera run: (closing-line FPS, wall seconds)."""
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "runtime.camera", "--source", str(source), "--headless", *extra],
                         cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    found = CLOSING.search(run.stderr)
    if run.returncode != 0 or not found:
        sys.exit(f"mqtt_overhead: fer-camera failed: {run.stderr.strip().splitlines()[-1:]}")
    return float(found[1]), wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="a video file")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if not args.source.is_file():
        parser.error(f"--source: no such video: {args.source}")
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        parser.error("needs paho-mqtt: pip install -e '.[mqtt]'")
    silent = silent_broker()
    with tempfile.TemporaryDirectory() as folder:
        broker = mosquitto(Path(folder))
        variants = {"without --mqtt": [],
                    "broker never answers": ["--mqtt", f"mqtt://127.0.0.1:{silent.getsockname()[1]}/bench"]}
        if broker:
            variants["mosquitto on loopback"] = ["--mqtt", f"mqtt://127.0.0.1:{broker[1]}/bench", "--mqtt-rate", "0"]
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        try:
            for round_ in range(args.rounds):
                for name, extra in variants.items():
                    results[name].append(run_once(args.source, extra))
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            silent.close()
            if broker:
                broker[0].terminate()
                broker[0].wait(timeout=10)
    print(f"{args.source.name}, {args.rounds} rounds, {platform.processor() or platform.machine()}")
    print(f"{'variant':24} {'median fps':>10} {'best fps':>9} {'median wall s':>14}")
    for name, runs in results.items():
        fps, wall = [r[0] for r in runs], [r[1] for r in runs]
        print(f"{name:24} {statistics.median(fps):10.1f} {max(fps):9.1f} {statistics.median(wall):14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
