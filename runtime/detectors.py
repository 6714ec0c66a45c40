"""Face detectors with one contract: `detect(frame, roi=None, size_range=None) -> int array [K, 4]` of
x, y, w, h boxes in the frame's own pixels, for BGR, BGRA or grayscale frames. `roi` limits the search
to a region and `size_range` to faces of a width range (both in frame pixels): the cheap search that
`runtime.tracking` runs around a known face."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .image import to_bgr, to_gray

NO_BOXES = np.zeros((0, 4), dtype=np.int32)
VIDEO_DETECT_WIDTH = 640  # video and cameras are detected on a copy this wide (photos: runtime.photos)


def _shrink_factor(width: int, detect_width: int | None) -> float:
    """The factor that makes an image `width` pixels wide `detect_width` wide (never enlarging)."""
    return width / detect_width if detect_width and width > detect_width else 1.0


def _search_area(frame: np.ndarray, scale: float, roi, convert) -> tuple[np.ndarray, int, int]:
    """The part of `frame` to search: the `roi` (x, y, w, h; the whole frame when None), converted
    by `convert` (to_gray, to_bgr), then shrunk by `scale`.
    Returns (image, x and y offset of the region)."""
    x, y = 0, 0
    if roi is not None:
        x, y, w, h = (int(v) for v in roi)
        frame = frame[y:y + h, x:x + w]
    frame = convert(frame)
    if scale > 1.0:
        size = (max(1, round(frame.shape[1] / scale)), max(1, round(frame.shape[0] / scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return frame, x, y


def _to_frame_pixels(boxes, scale: float, x: int, y: int) -> np.ndarray:
    """Boxes found in a search area, as int32 x, y, w, h in the frame's pixels."""
    if len(boxes) == 0:
        return NO_BOXES.copy()
    boxes = np.round(np.asarray(boxes, dtype=np.float64)[:, :4] * scale).astype(np.int32)
    boxes[:, :2] += (x, y)
    return boxes


class CascadeFaceDetector:
    """OpenCV Haar-cascade face detector (frontal faces; bundled with OpenCV, always available).

    `min_neighbors` overlapping hits make a face on a whole frame; a search in a region around a
    known face (`roi`) needs only `roi_min_neighbors`: the face is already known, and a cropped
    region samples the image on another grid, which leaves fewer overlapping hits on the same face."""

    name = "Haar cascade"
    min_face = 48  # pixels: the default min_size (runtime.photos plans its search scales with it)
    # photos (runtime.photos): the cascade scans every scale itself, so a photo is searched whole at up to this
    # many pixels on its long side (then in tiles at full size), never enlarged
    photo_side, photo_upscale = 1280, False

    def __init__(self, cascade_path: str | os.PathLike | None = None, scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_size: tuple[int, int] = (48, 48), detect_width: int | None = None,
                 roi_min_neighbors: int = 1):
        path = Path(cascade_path) if cascade_path else Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        if not path.is_file():
            raise FileNotFoundError(f"Haar cascade not found: {path}")
        try:
            self.cascade = cv2.CascadeClassifier(str(path))
        except (cv2.error, SystemError):
            self.cascade = None
        if self.cascade is None or self.cascade.empty():
            raise ValueError(f"cannot read Haar cascade {path}: not an OpenCV cascade XML file")
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.min_size, self.detect_width = tuple(min_size), detect_width
        self.min_face = min(self.min_size)
        self.roi_min_neighbors = roi_min_neighbors

    def detect(self, frame: np.ndarray, roi=None, size_range: tuple[float, float] | None = None) -> np.ndarray:
        """Faces in `frame` (or in its `roi`), optionally only those `size_range` = (min, max) pixels wide."""
        low, high = size_range if size_range else (0, 0)
        scale = _shrink_factor(frame.shape[1], self.detect_width)
        area, x, y = _search_area(frame, scale, roi, to_gray)
        min_side = tuple(max(1, round(max(low, side) / scale)) for side in self.min_size)
        max_side = (round(high / scale),) * 2 if high else (0, 0)
        if area.shape[0] < min_side[1] or area.shape[1] < min_side[0] or (high and max_side[0] < min_side[0]):
            return NO_BOXES.copy()
        neighbors = self.min_neighbors if roi is None else self.roi_min_neighbors
        boxes = self.cascade.detectMultiScale(area, scaleFactor=self.scale_factor, minNeighbors=neighbors,
                                              minSize=min_side, maxSize=max_side)
        return _to_frame_pixels(boxes, scale, x, y)


SEED_CASCADE = "ckpt/haarcascade_frontalface_default.xml"  # where the seed's README put the cascade


class CV2FaceDetector(CascadeFaceDetector):
    """The seed's name and signature: `CV2FaceDetector(model_para_dir="ckpt/haarcascade_frontalface_default.xml")`.

    The seed had its users download OpenCV's frontal-face cascade to that path. When no file is there, OpenCV's own
    copy of the same cascade (`cv2.data.haarcascades`) is used, so the seed's call works without the download; a
    path that is given and names another missing file is still a FileNotFoundError."""

    def __init__(self, model_para_dir: str | os.PathLike = SEED_CASCADE, **options):
        path = Path(model_para_dir)
        if not path.is_file() and path.as_posix().endswith(SEED_CASCADE):
            path = None  # the seed's default path, not downloaded: OpenCV's copy of the same file
        super().__init__(path, **options)


class YuNetFaceDetector:
    """OpenCV Zoo's YuNet DNN detector through `cv2.FaceDetectorYN` (shipped in the package: `runtime.models`).

    YuNet's own boxes are narrower and taller than Haar's (measured on the sample photos and clip: 0.82x
    the width, 1.12x the height, same centre). The classifier was checked on Haar-framed faces, so each
    box is returned as the square Haar would draw: `face_scale` (1.22) times YuNet's width, on its centre
    (`face_scale=None`: YuNet's own boxes). `python -m benchmarks.detector_framing` measures it.
    With it, the classifier gives the Haar crop's label on 86.5% of the faces both detectors find, against 79%
    for YuNet's raw box (Haar's own box 5% larger or smaller: 91-92%).
    After each call, `last_scores` and `last_landmarks` hold each returned box's score and five landmarks.
    """

    name = "YuNet"
    min_face = 16  # pixels of its input: the smallest face found reliably (the sample portrait: score 0.9 at 16 px)
    # the region that runtime.tracking searches around a known face, as a share of its size on each side:
    # on the sample clip 0.5 finds 90% of the faces of YuNet on every frame, 0.35 (Haar's) 85%
    search_margin = 0.5
    # a region search (runtime.tracking) shrinks the region until the smallest face it looks for is this many
    # pixels wide: YuNet's cost grows with the pixels it sees, and it needs no more to find a known face again
    region_face_width = 48

    def __init__(self, model_path: str | os.PathLike, score_threshold: float = 0.7,
                 detect_width: int | None = None, face_scale: float | None = 1.22):
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"YuNet model not found: {path}")
        self.path, self.detect_width, self.face_scale = path, detect_width, face_scale
        self._score_threshold = score_threshold
        self._input_size: tuple[int, int] | None = None
        self.last_scores: dict[tuple[int, int, int, int], float] = {}  # box -> YuNet's score, last call
        # box -> its five landmarks (float32 [5, 2] frame pixels: the eyes, the nose tip, the mouth corners, the
        # image's left one first in each pair), last call
        self.last_landmarks: dict[tuple[int, int, int, int], np.ndarray] = {}
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # no OpenCV log lines for a wrong file
        try:
            self.net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold)
            self.detect(np.zeros((64, 64, 3), np.uint8))  # any ONNX file loads; running it tells a YuNet model
        except cv2.error:
            raise ValueError(f"{path} is not a YuNet face-detection model (leave out --detector-model to use "
                             "the one in the package)") from None
        finally:
            cv2.utils.logging.setLogLevel(level)

    def detect(self, frame: np.ndarray, roi=None, size_range: tuple[float, float] | None = None) -> np.ndarray:
        """Faces in `frame` (or in its `roi`), optionally only those `size_range` = (min, max) pixels wide."""
        scale = _shrink_factor(frame.shape[1], self.detect_width)
        if roi is not None and size_range and self.region_face_width:
            scale = max(scale, size_range[0] / self.region_face_width)
        area, x, y = _search_area(frame, scale, roi, to_bgr)
        size = (area.shape[1], area.shape[0])
        if size != self._input_size:
            self.net.setInputSize(size)
            self._input_size = size
        _, faces = self.net.detect(area)
        if faces is not None and self.face_scale:
            faces = self._haar_framed(faces)
        boxes = _to_frame_pixels(faces if faces is not None else [], scale, x, y)
        scores = faces[:, -1] if faces is not None else np.zeros(0)
        points = faces[:, 4:14].reshape(-1, 5, 2) * scale + (x, y) if faces is not None else np.zeros((0, 5, 2))
        if size_range:
            keep = (boxes[:, 2] >= size_range[0]) & (boxes[:, 2] <= size_range[1])
            boxes, scores, points = boxes[keep], scores[keep], points[keep]
        keys = [tuple(int(v) for v in b) for b in boxes]
        self.last_scores = {k: round(float(s), 4) for k, s in zip(keys, scores)}
        self.last_landmarks = {k: p.astype(np.float32) for k, p in zip(keys, points)}
        return boxes

    @property
    def score_threshold(self) -> float:
        """The least score of a face returned (runtime.photos lowers it for photos)."""
        return self._score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self.net.setScoreThreshold(float(value))
        self._score_threshold = float(value)

    def _haar_framed(self, faces: np.ndarray) -> np.ndarray:
        """YuNet's x, y, w, h rows as squares `face_scale` times as wide, on the same centres."""
        centre = faces[:, :2] + faces[:, 2:4] / 2
        side = faces[:, 2:3] * self.face_scale
        return np.hstack([centre - side / 2, side, side, faces[:, 4:]])


DETECTORS = ("auto", "haar", "yunet")


def create_detector(kind: str = "auto", model_path: str | os.PathLike | None = None,
                    detect_width: int | None = None):
    """The face detector to use: "auto" and "yunet" give YuNet (`model_path`, else the model folder's file, else
    the package's own copy: `runtime.models.find`); "haar" the Haar cascade. "auto" falls back to Haar only when no
    YuNet file is there at all (a package whose data was stripped). Raises FileNotFoundError or ValueError with
    a one-line reason."""
    from .models import find

    if kind not in DETECTORS:
        raise ValueError(f"unknown detector {kind!r}; choose one of {', '.join(DETECTORS)}")
    if kind == "haar":
        return CascadeFaceDetector(detect_width=detect_width)
    path = model_path or find("yunet")
    if path is None:
        if kind == "yunet":
            raise FileNotFoundError("YuNet is missing from this install: reinstall fer-edge, run "
                                    "`python -m runtime.models download yunet` or give its file with --detector-model")
        return CascadeFaceDetector(detect_width=detect_width)
    return YuNetFaceDetector(path, detect_width=detect_width)
