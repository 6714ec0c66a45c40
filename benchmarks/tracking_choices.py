"""Why the tracker's defaults are what they are, measured on a video with YuNet (the README's Face detection and
Performance sections quote this):

    python -m benchmarks.tracking_choices --source ../shared/media/short_hamilton_clip.mp4

1. `YuNetFaceDetector.region_face_width`: for each value, the time per region search and per full-frame scan, and
   the default pipeline's recall against YuNet on the whole of every frame (IoU >= 0.4, as `benchmarks.fps`).
2. Carried-over frames keeping their probabilities (`FramePipeline(classify_every_frame=False)`, the default):
   how often the smoothed label of a face agrees with classifying every frame (the boxes are the same in both).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

from runtime import ExpressionClassifier, FramePipeline, LinearExponentialSmoothing
from runtime.detectors import YuNetFaceDetector
from runtime.tracking import IntervalDetector

from .fps import DEFAULT_SOURCE, DEFAULT_YUNET, FAST, SLOW, make_detector, recall


def frames_of(source: Path, limit: int) -> list:
    capture = cv2.VideoCapture(str(source))
    frames = []
    while len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    return frames


class TimedYuNet(YuNetFaceDetector):
    """YuNet that adds up the time and count of its full-frame scans and region searches."""

    def __init__(self, *args, **kwargs):
        self.seconds, self.calls = {"full": 0.0, "region": 0.0}, {"full": 0, "region": 0}
        super().__init__(*args, **kwargs)  # runs one check detection: not counted below
        self.seconds, self.calls = {"full": 0.0, "region": 0.0}, {"full": 0, "region": 0}

    def detect(self, frame, roi=None, size_range=None):
        started = time.perf_counter()
        boxes = super().detect(frame, roi, size_range)
        kind = "full" if roi is None else "region"
        self.seconds[kind] += time.perf_counter() - started
        self.calls[kind] += 1
        return boxes


def region_widths(frames: list, yunet: Path, widths: list[int]) -> None:
    classifier = ExpressionClassifier(threads=1)
    whole_frames = make_detector("yunet", yunet, **SLOW)
    reference = [[tuple(int(v) for v in box) for box in whole_frames.detect(f)] for f in frames]
    print(f"{'region_face_width':>18} {'ms/region search':>17} {'ms/full scan':>13} {'searches':>9} {'recall':>7}")
    for width in widths:
        detector = TimedYuNet(yunet, detect_width=FAST["detect_width"])
        detector.region_face_width = width or None
        pipeline = FramePipeline(IntervalDetector(detector, every=FAST["detect_every"]), classifier, LinearExponentialSmoothing(0.3))
        found = [[r["box"] for r in pipeline(f)] for f in frames]
        ms = {k: 1e3 * detector.seconds[k] / max(1, detector.calls[k]) for k in detector.seconds}
        print(f"{width or 'full size':>18} {ms['region']:17.2f} {ms['full']:13.2f} {detector.calls['region']:9d} "
              f"{recall(found, reference):7.1%}")


def label_agreement(frames: list, yunet: Path) -> None:
    pipelines = [FramePipeline(make_detector("auto", yunet, **FAST), ExpressionClassifier(threads=1),
                               LinearExponentialSmoothing(0.3), classify_every_frame=every) for every in (True, False)]
    same = total = 0
    for frame in frames:
        every, carried = (p(frame) for p in pipelines)
        total += len(every)
        same += sum(a["label"] == b["label"] for a, b in zip(every, carried))
    print(f"carried-over frames keep their probabilities: the smoothed label agrees with classifying every frame "
          f"on {same} of {total} faces ({same / max(1, total):.1%})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tracking_choices", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=str(DEFAULT_SOURCE))
    p.add_argument("--detector-model", default=DEFAULT_YUNET and str(DEFAULT_YUNET), help="YuNet ONNX file")
    p.add_argument("--frames", type=int, default=275)
    p.add_argument("--widths", type=int, nargs="+", default=[0, 64, 48, 40, 32], help="0: full size")
    args = p.parse_args(argv)
    if not args.detector_model or not Path(args.detector_model).is_file():
        print("tracking_choices: error: needs YuNet (--detector-model FILE, or reinstall fer-edge)",
              file=sys.stderr)
        return 2
    frames = frames_of(Path(args.source), args.frames)
    if not frames:
        print(f"tracking_choices: error: no frames in {args.source}", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    region_widths(frames, Path(args.detector_model), args.widths)
    label_agreement(frames, Path(args.detector_model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
