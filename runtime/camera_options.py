"""fer-camera's command-line options (`runtime.camera` runs them): each value checked as it is parsed, a bad one
refused in one line with exit code 2."""
from __future__ import annotations

import argparse
import math
import os
import re
from typing import Callable

from .classifier import SHIPPED_MODELS
from .detectors import DETECTORS
from .quality import RELIABLE_QUALITY
from .sources import RECONNECT_S
from .tracking import DEFAULT_DETECT_EVERY


def checked(kind: Callable, accepts: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """An argparse type: `kind(text)`, refused unless `accepts` it, the message naming what is accepted."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    return parse


def _size(text: str) -> tuple[int, int]:
    """An argparse type: WxH, e.g. 1280x720."""
    match = re.fullmatch(r"(\d+)[xX](\d+)", text)
    if not match or not all(16 <= int(v) <= 8192 for v in match.groups()):
        raise argparse.ArgumentTypeError(f"expected WxH with sides from 16 to 8192, e.g. 1280x720, got {text!r}")
    return int(match[1]), int(match[2])


class OneLineParser(argparse.ArgumentParser):
    """An argument error is one line (no usage block above it), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def package_version() -> str:
    """The installed fer-edge's version ("unknown" from a source tree that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fer-edge")
    except PackageNotFoundError:
        return "unknown"


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model, --detector and --detector-model, as fer-camera and fer-batch take them."""
    p.add_argument("--model", help=f"expression ONNX model: {' or '.join(SHIPPED_MODELS)} (the shipped ones, "
                                   "default fp32) or a file")
    p.add_argument("--detector", choices=DETECTORS, default="auto",
                   help="auto (default) or yunet: YuNet, shipped in the package; haar: OpenCV's Haar cascade")
    p.add_argument("--detector-model", help="YuNet ONNX file (default: the model folder's, else the package's)")


def parse_args(argv: list[str] | None, description: str = "") -> argparse.Namespace:
    """fer-camera's options, each checked as it is parsed (one line and exit 2 for a bad one)."""
    p = OneLineParser(prog="fer-camera", description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"fer-camera {package_version()}")
    p.add_argument("--source", default="0", help="camera index or /dev/videoN, rtsp:// rtsps:// http:// https:// "
                                                 "stream, picamera[:N] (Raspberry Pi Camera Module), video file, "
                                                 "image file or folder of images (default 0)")
    p.add_argument("--camera-size", type=_size, metavar="WxH", help="ask a camera or the Pi Camera Module for this "
                                                                     "frame size (the start-up line says what it gives)")
    p.add_argument("--camera-fps", type=checked(float, lambda v: 0 < v <= 240, "a rate in (0, 240]"),
                   help="ask a camera or the Pi Camera Module for this frame rate")
    p.add_argument("--reconnect", type=checked(float, lambda v: math.isfinite(v) and v >= 0, "seconds >= 0"),
                   default=RECONNECT_S, metavar="SECONDS",
                   help="a live source that stops delivering is reopened (after 1 s, doubling to 30 s) for up to "
                        "this long each time; 0 gives up at once (default %(default)g)")
    add_model_options(p)
    p.add_argument("--smoothing", type=checked(float, lambda v: math.isfinite(v) and 0 <= v < 1, "a rate in [0, 1)"),
                   default=0.3, help="smoothing rate across frames, 0 turns it off (default %(default)s)")
    p.add_argument("--min-quality", type=checked(float, lambda v: 0 <= v <= 1, "a number from 0 to 1"),
                   metavar="Q", help="flag faces whose quality (size, sharpness, head pose, calibrated probability) "
                                     "is below Q unreliable and leave them out of --summary, --plot, the MQTT "
                                     "expression events and the smoothing; --json keeps every face with its flag "
                                     f"(default: flagged below {RELIABLE_QUALITY}, nothing left out)")
    p.add_argument("--detect-every", type=checked(int, lambda v: v >= 1, "an integer >= 1"),
                   default=DEFAULT_DETECT_EVERY,
                   help="full face detection every N frames (and at scene cuts), known faces looked for "
                        "near their last box in between (default %(default)s; 1: every frame)")
    p.add_argument("--detect-width", type=checked(int, lambda v: v == 0 or v >= 64, "0 or an integer >= 64"),
                   default=None, help="video and camera: detect on a copy this wide, 0 for full size (default "
                                      "640); photos are searched at several scales whatever their size")
    p.add_argument("--no-rotations", action="store_true",
                   help="photos: do not look for faces in the photo turned by 90, 180 and 270 degrees or tilted when "
                        "none is found upright, nor check each face's orientation")
    p.add_argument("--headless", action="store_true", help="never open a window")
    p.add_argument("--output", help="annotated .mp4/.avi for video or camera; image file or folder for images")
    p.add_argument("--json", help="write one JSON line per frame here")
    p.add_argument("--summary", help="video or camera: a CSV row per frame and face (time, track_id, box, "
                                     "every label's probability)")
    p.add_argument("--plot", help="video or camera: a PNG chart of each followed face's expressions over time")
    p.add_argument("--max-frames", type=checked(int, lambda v: v >= 1, "an integer >= 1"), default=None,
                   help="stop after N frames")
    p.add_argument("--threads", type=checked(int, lambda v: 1 <= v <= 64, "an integer from 1 to 64"), default=None,
                   help="onnxruntime threads (default: all cores)")
    p.add_argument("--serve", metavar="[HOST:]PORT", help="serve a live web view of a camera or video (host default "
                                                         "127.0.0.1; 0.0.0.0 to let the network in); a video then "
                                                         "plays at its own frame rate")
    p.add_argument("--serve-token", default=os.environ.get("FER_EDGE_TOKEN"),
                   help="with --serve: every request needs ?token=TOKEN or 'Authorization: Bearer TOKEN' "
                        "(default: $FER_EDGE_TOKEN)")
    p.add_argument("--serve-width", type=checked(int, lambda v: 64 <= v <= 4096, "an integer from 64 to 4096"),
                   default=640, help="with --serve: largest width of the streamed frames (default %(default)s)")
    p.add_argument("--jpeg-quality", type=checked(int, lambda v: 1 <= v <= 100, "an integer from 1 to 100"),
                   default=70, help="with --serve: JPEG quality of the stream (default %(default)s)")
    p.add_argument("--serve-metrics-only", action="store_true",
                   help="with --serve: only /health and /metrics (a headless fleet; no frames are encoded)")
    p.add_argument("--mqtt", metavar="URL", help="publish results to an MQTT broker: mqtt://[user[:password]@]host"
                                                 "[:port][/prefix] or mqtts://... (password also from "
                                                 "$FER_EDGE_MQTT_PASSWORD; prefix default fer-edge/<hostname>)")
    p.add_argument("--mqtt-ca", metavar="FILE", help="with mqtts://: the CA certificate to check the broker with")
    p.add_argument("--mqtt-rate", type=checked(float, lambda v: math.isfinite(v) and v >= 0, "a rate >= 0"),
                   default=5.0, help="at most this many .../faces messages a second (default %(default)g; 0: every "
                                     "frame with faces)")
    p.add_argument("--mqtt-discovery", action="store_true",
                   help="announce the faces and dominant-expression sensors to Home Assistant (MQTT discovery)")
    p.add_argument("--loop", action="store_true", help="play a video file again from the start when it ends")
    p.add_argument("--quiet", action="store_true", help="print nothing but warnings and errors")
    p.add_argument("--verbose", action="store_true", help="let OpenCV and FFmpeg print their own log lines")
    return p.parse_args(argv)
