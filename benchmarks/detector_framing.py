"""How YuNet's boxes compare with Haar's, and which crop makes the classifier agree with Haar's.

    python -m benchmarks.detector_framing    # YuNet: the package's file (or --yunet FILE)

On the sample photos and every frame of the sample clip, the faces both detectors find (IoU > 0.3) are paired.
Prints the median geometry of YuNet's raw box relative to Haar's, and the share of faces on which the classifier
gives the Haar crop's label for: YuNet's raw box, YuNet's Haar-framed square (what YuNetFaceDetector returns),
and Haar's own box grown or shrunk by 5% (the noise floor).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from runtime import CascadeFaceDetector, ExpressionClassifier, YuNetFaceDetector
from runtime.boxes import box_iou
from runtime.models import find

ROOT = Path(__file__).resolve().parent.parent
MEDIA = ROOT.parent / "shared" / "media"


def frames(media: Path) -> list[np.ndarray]:
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sorted((ROOT / "tests" / "data").glob("*.jpg"))]
    images += [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sorted(media.glob("*.jpg")) + sorted(media.glob("*.png"))]
    capture = cv2.VideoCapture(str(media / "short_hamilton_clip.mp4"))
    while True:
        ok, frame = capture.read()
        if not ok:
            return images
        images.append(frame)


def square(box, scale: float) -> tuple[int, int, int, int]:
    """A square `scale` times the box's width on the box's centre."""
    x, y, w, h = box
    side = scale * w
    return round(x + w / 2 - side / 2), round(y + h / 2 - side / 2), round(side), round(side)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fer-bench-framing", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--yunet", default=str(find("yunet")), help="YuNet ONNX file (default: the one fer-camera uses)")
    p.add_argument("--media", default=str(MEDIA), help="folder with the sample photos and short_hamilton_clip.mp4")
    p.add_argument("--model", help="expression model (default: the shipped one)")
    args = p.parse_args(argv)
    haar, raw = CascadeFaceDetector(), YuNetFaceDetector(args.yunet, face_scale=None)
    framed = YuNetFaceDetector(args.yunet)
    pairs = []
    for frame in frames(Path(args.media)):
        yunet_boxes = list(raw.detect(frame))
        for h in haar.detect(frame):
            best = max(yunet_boxes, key=lambda y: box_iou(y, h), default=None)
            if best is not None and box_iou(best, h) > 0.3:
                pairs.append((frame, h, best))
    if not pairs:
        print("fer-bench-framing: error: no face found by both detectors", file=sys.stderr)
        return 2
    g = np.array([[y[2] / h[2], y[3] / h[3], (y[0] + y[2] / 2 - h[0] - h[2] / 2) / h[2],
                   (y[1] + y[3] / 2 - h[1] - h[3] / 2) / h[3]] for _, h, y in pairs])
    width, height, dx, dy = np.median(g, 0)
    print(f"{len(pairs)} faces found by both; YuNet's box against Haar's (median): width {width:.3f}x, height "
          f"{height:.3f}x, centre shifted by {dx:+.3f} of the width and {dy:+.3f} of the height; "
          f"a Haar-like square is {1 / width:.3f}x YuNet's width")
    classifier = ExpressionClassifier(args.model)
    labels = lambda boxes: classifier.predict([classifier.crop(f, b) for (f, _, _), b in zip(pairs, boxes)]).argmax(1)
    reference = labels([h for _, h, _ in pairs])
    rows = [("YuNet's raw box", [y for _, _, y in pairs]),
            (f"YuNet as a {framed.face_scale}x square (the default)", [framed._haar_framed(np.array([y], float))[0]
                                                                       for _, _, y in pairs]),
            ("Haar's box 5% larger", [square(h, 1.05) for _, h, _ in pairs]),
            ("Haar's box 5% smaller", [square(h, 0.95) for _, h, _ in pairs])]
    for name, boxes in rows:
        print(f"{name:40} same label as the Haar crop on {100 * (labels(boxes) == reference).mean():.1f}% of faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
