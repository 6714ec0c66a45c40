"""Photos as people take them: read upright, faces of any size found on copies of bounded size, turned photos too.

    image = read_photo("IMG_0042.jpg")                   # EXIF orientation applied
    boxes = PhotoDetector(create_detector()).detect(image)  # x, y, w, h in the photo's own pixels

A detector finds faces in a band of sizes (YuNet: about 16 to 400 of its input's pixels), so a photo is searched at
several scales (`search_plan`): once whole, shrunk (or enlarged) to `COARSE_SIDE` pixels on its long side, which finds
the faces that fill a good part of it; then, for the smaller faces of a large photo, in tiles of at most `TILE`
pixels at finer scales, each finding the faces too small for the scale before it, down to `MIN_FACE` photo pixels.
Only one tile is resampled at a time, so the memory a search needs beyond the photo itself is a few tiles whatever
the photo's size. The finds of all scales are merged (`merge`: of overlapping boxes the best-scored is kept).

A photo in which nothing is found is searched again turned by 90, 180 and 270 degrees and, whole, tilted by 15 to 45
degrees either way (`rotations`; the orientation whose face the detector is surest of wins); and each face found
is looked at again, in its own neighbourhood, in the four orientations: the detector sees an upside-down or
sideways face best when it is turned upright, and gives landmarks that say which way is up (`runtime.align` then
turns the face upright for the classifier). Boxes and landmarks always come back in the photo's own pixels. None of
this is for video: a stream's frames go to the detector as they are (`runtime.tracking`).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import cv2
import numpy as np

from .align import roll_degrees, to_frame, upright_view
from .boxes import box_overlap
from .detectors import NO_BOXES

COARSE_SIDE = 400  # long side of the whole-photo pass: FER+ faces as 144 px photos are found best there (95.5% at
# 400 px, 86.2% at their own 144 px, 97.0% at 640)
TILE = 640  # the largest tile a finer pass hands the detector
MIN_FACE = 20  # photo pixels: the smallest face looked for
LEVEL_STEP = 4.0  # each finer pass is this many times the scale of the one before (YuNet's band spans about 25x)
DEFAULT_MIN_FACE = 16  # detector pixels: the smallest face a detector finds reliably, unless it says (`min_face`)
NEIGHBOURHOOD = 2.0  # the region of a face's orientation check, in face widths
CHECK_SIDE = 192  # that region's side in the detector's pixels for the orientation check (its scores say which way is up)
# ... and for landmarks: YuNet's landmarks give a face's tilt only when the face is about 200 of its pixels or more
# (the sample portraits turned by 15 and 30 degrees: under 100 px the eye line reads within a few degrees of level;
# at 200 px, whatever the face's size in the photo, within about 8 degrees of the truth)
LANDMARK_SIDE = 512
# the least detector score of a face in a photo, where the detector can be told (YuNet; its own default, 0.7, stays
# for video): of 600 FER2013Valid faces as 144 px photos 98.5% are found at 0.6 (96.5% at 0.7, 99.2% at 0.5), and
# the sample photos, upright and turned by 90 and 180 degrees, give no false face at 0.6 (one lost at 0.5)
PHOTO_SCORE_THRESHOLD = 0.6
# a photo in which no face is found upright is looked at whole (the coarse pass only) turned by these angles, up to 45
# degrees in competition with the quarter turns, beyond only when neither finds a face: a face tilted by 30 degrees
# in a photo that cuts its corners is missed upright, and found turned by 180 degrees gives landmarks that read its
# tilt wrong (1000 FER2013Valid faces as 144 px photos turned by 30 degrees: 83.7% right when the quarter turns
# came first, 85.8% with them competing; -30: 83.3%, 84.3%; 180: 81.4%, 80.7%; 90: 82.3%, 82.5%)
TILTS = (15.0, -15.0, 30.0, -30.0, 45.0, -45.0, 60.0, -60.0, 75.0, -75.0)
TURNS = (cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE)  # turn k (1-3) is TURNS[k - 1]


def read_photo(path: str | os.PathLike) -> np.ndarray | None:
    """The photo at `path` as uint8 gray or BGR, upright (its EXIF orientation applied), 16-bit images scaled to 8
    bits by their brightest value; None when OpenCV cannot decode the file. An alpha channel is dropped.

    A JPEG or PNG is decoded into an array made for it from the size in its header (`stored_size`): OpenCV's own
    allocation would hold the image twice while decoding (a 48 MP photo: 280 MB instead of 140)."""
    size = stored_size(path)
    try:
        image = cv2.imread(str(path), np.empty((*size, 3), np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH) \
            if size else None
    except cv2.error:
        image = None
    if image is None or image.size == 0:  # OpenCV decides what the file holds
        image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is not None and image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(1, int(image.max())))
    return image


def stored_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) of a JPEG or PNG as it will be shown (an EXIF orientation of 5-8 swaps them), from its
    header; None for other files or a header that does not say."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)  # markers before the frame header, EXIF included, fit in 64 KiB
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return height, width
    if head[:2] != b"\xff\xd8":
        return None
    at, turned = 2, False
    while at + 4 <= len(head) and head[at] == 0xFF:
        marker, length = head[at + 1], struct.unpack(">H", head[at + 2:at + 4])[0]
        if marker == 0xE1 and head[at + 4:at + 10] == b"Exif\x00\x00":
            turned = _exif_orientation(head[at + 10:at + 2 + length]) in (5, 6, 7, 8)
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            height, width = struct.unpack(">HH", head[at + 5:at + 9])
            return (width, height) if turned else (height, width)
        at += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int:
    """The Orientation tag (0x0112) of an EXIF block's first image directory (1 when absent)."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    start = struct.unpack(order + "I", tiff[4:8])[0]
    if start + 2 > len(tiff):
        return 1
    for i in range(struct.unpack(order + "H", tiff[start:start + 2])[0]):
        entry = tiff[start + 2 + 12 * i:start + 14 + 12 * i]
        if len(entry) == 12 and struct.unpack(order + "H", entry[:2])[0] == 0x0112:
            return struct.unpack(order + "H", entry[8:10])[0]
    return 1


@dataclass(frozen=True)
class Pass:
    """One scale of a photo's search: `scale` detector pixels per photo pixel, the `tiles` (x0, y0, x1, y1 in photo
    pixels) to look at, and the widest face kept (detector pixels; None: any), larger ones being a coarser pass's."""
    scale: float
    tiles: tuple[tuple[int, int, int, int], ...]
    max_face: float | None


def _tiles(width: int, height: int, scale: float, overlap: float) -> tuple[tuple[int, int, int, int], ...]:
    """Tiles of at most TILE detector pixels covering the photo, neighbours overlapping by `overlap` detector pixels
    (so every face up to that width lies wholly inside one of them)."""
    side = TILE / scale  # in photo pixels
    step = max(1.0, (TILE - overlap) / scale)

    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        count = int(np.ceil((length - side) / step)) + 1
        return [round(i * (length - side) / (count - 1)) for i in range(count)]  # spread evenly, the last at the end

    s = round(side)
    return tuple((x, y, min(width, x + s), min(height, y + s)) for y in starts(height) for x in starts(width))


def search_plan(width: int, height: int, min_face: float = DEFAULT_MIN_FACE, coarse_side: int = COARSE_SIDE,
                upscale: bool = True) -> list[Pass]:
    """The passes that find faces from MIN_FACE photo pixels to the whole photo with a detector whose smallest
    reliable face is `min_face` of its pixels: the whole photo at `coarse_side` pixels on its long side (never
    enlarged unless `upscale`), then finer tiled passes up to the scale that makes a MIN_FACE face `min_face` wide
    (at most 1 unless `upscale`)."""
    scale = coarse_side / max(width, height)
    scale = scale if upscale else min(1.0, scale)
    plan = [Pass(scale, ((0, 0, width, height),), None)]
    finest = min_face / MIN_FACE if upscale else min(1.0, min_face / MIN_FACE)
    while scale < finest:
        finer = min(scale * LEVEL_STEP, finest)
        max_face = min_face * finer / scale * 1.25  # the coarser pass's smallest face, with a margin
        plan.append(Pass(finer, _tiles(width, height, finer, max_face), max_face))
        scale = finer
    return plan


def _unturn(points: np.ndarray, turn: int, width: float, height: float) -> np.ndarray:
    """Points [..., 2] of an image turned by `turn` quarter turns clockwise back in the unturned image's coordinates
    (`width` x `height`, pixel corners as 0 and width)."""
    u, v = points[..., 0], points[..., 1]
    if turn == 1:
        x, y = v, height - u
    elif turn == 2:
        x, y = width - u, height - v
    elif turn == 3:
        x, y = width - v, u
    else:
        x, y = u, v
    return np.stack([x, y], axis=-1)


@dataclass
class Face:
    """A face found in a photo: its box (float x, y, w, h in photo pixels), the detector's score and landmarks."""
    box: np.ndarray
    score: float
    landmarks: np.ndarray | None


def merge(faces: list[Face], overlap: float = 0.5) -> list[Face]:
    """The best-scored of every group of faces whose boxes overlap by more than `overlap` of the smaller box (the same
    face found at two scales, in two tiles, or cut by a tile's edge)."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if not any(box_overlap(face.box, k.box) > overlap for k in kept):
            kept.append(face)
    return kept


class PhotoDetector:
    """Any detector with the `detect(frame, roi=None, size_range=None) -> int [K, 4]` contract, run on photos of any
    size (module docstring). `rotations`: search turned photos when none is found upright, and check each face's
    orientation. `score_threshold`: the detector's least score while it looks at a photo (where it has one). After `detect`, `last_scores` and `last_landmarks` hold what the detector gave for each box
    (landmarks only from a detector that gives them, such as YuNet).

    A call with `roi` or `size_range` (a tracker's search) goes to the detector as it is."""

    def __init__(self, detector, rotations: bool = True, score_threshold: float | None = PHOTO_SCORE_THRESHOLD):
        self.detector, self.rotations, self.score_threshold = detector, rotations, score_threshold
        self.name = getattr(detector, "name", type(detector).__name__)
        self.min_face = float(getattr(detector, "min_face", DEFAULT_MIN_FACE))
        # a detector that scans every scale itself (Haar) looks at the whole photo at up to `photo_side` pixels and
        # is never given an enlarged copy (`photo_upscale`)
        self.coarse_side = int(getattr(detector, "photo_side", COARSE_SIDE))
        self.upscale = bool(getattr(detector, "photo_upscale", True))
        self.last_scores: dict[tuple[int, int, int, int], float] = {}
        self.last_landmarks: dict[tuple[int, int, int, int], np.ndarray] = {}
        self.last_turn = 0  # the quarter turns clockwise at which the last photo's faces were found
        self.last_tilt = 0.0  # or the tilt (degrees, counter-clockwise) of the whole-photo look that found them

    def __getattr__(self, name: str):  # the wrapped detector's other attributes (path, search_margin, ...)
        if name == "detector":
            raise AttributeError(name)
        return getattr(self.detector, name)

    def _find(self, image: np.ndarray, turn: int) -> list[Face]:
        """Faces found in `image` turned by `turn` quarter turns, in `image`'s own pixels (float boxes)."""
        found: list[Face] = []
        for plan in search_plan(image.shape[1], image.shape[0], self.min_face, self.coarse_side, self.upscale):
            for x0, y0, x1, y1 in plan.tiles:
                found += self._look(image[y0:y1, x0:x1], plan.scale, turn, (x0, y0), plan.max_face)
        return merge(found)

    def _look(self, region: np.ndarray, scale: float, turn: int, origin: tuple[float, float],
              max_face: float | None = None) -> list[Face]:
        """Faces the detector finds in `region` resampled by `scale` and turned by `turn`, in the coordinates of the
        image `region` lies in at `origin`."""
        h, w = region.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        # area interpolation where a tile shrinks a lot; a mild shrink (the finest passes) is linear, 4x faster
        tile = cv2.resize(region, size, interpolation=cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR) \
            if size != (w, h) else region
        if turn:
            tile = cv2.rotate(tile, TURNS[turn - 1])
        boxes = self.detector.detect(tile)
        scores = getattr(self.detector, "last_scores", {})
        marks = getattr(self.detector, "last_landmarks", {})
        faces = []
        for box in boxes:
            key = tuple(int(v) for v in box)
            if max_face is not None and box[2] > max_face:
                continue
            corners = _unturn(np.array([[box[0], box[1]], [box[0] + box[2], box[1] + box[3]]], np.float64),
                              turn, *size)
            low, high = corners.min(0), corners.max(0)
            points = marks.get(key)
            if points is not None:
                points = _unturn(np.asarray(points, np.float64), turn, *size) / (size[0] / w, size[1] / h) + origin
            faces.append(Face(np.array([*(low / (size[0] / w, size[1] / h) + origin),
                                        *((high - low) / (size[0] / w, size[1] / h))]),
                              float(scores.get(key, 1.0)), points))
        return faces

    def _detected(self, view: np.ndarray, matrix: np.ndarray, upright_box: bool = False) -> list[Face]:
        """Faces the detector finds in `view`, an image made from the photo by the 2x3 `matrix` (photo -> view
        pixels), in the photo's pixels: boxes as the bounding boxes of the view's, or with `upright_box` as the
        view's boxes' size on their centre (the face's own size when the view turned it upright)."""
        scale = np.sqrt(abs(np.linalg.det(matrix[:, :2])))
        if scale == 0:  # a view of nothing (a neighbourhood outside the photo)
            return []
        boxes = self.detector.detect(view)
        scores = getattr(self.detector, "last_scores", {})
        marks = getattr(self.detector, "last_landmarks", {})
        faces = []
        for box in boxes:
            key = tuple(int(v) for v in box)
            bx, by, bw, bh = (float(v) for v in box)
            if upright_box:
                centre = to_frame(np.array([bx + bw / 2, by + bh / 2]), matrix)
                found = np.array([*(centre - (bw / scale / 2, bh / scale / 2)), bw / scale, bh / scale])
            else:
                corners = to_frame(np.array([[bx, by], [bx + bw, by], [bx, by + bh], [bx + bw, by + bh]]), matrix)
                low, high = corners.min(0), corners.max(0)
                found = np.array([*low, *(high - low)])
            points = to_frame(marks[key], matrix) if key in marks else None
            faces.append(Face(found, float(scores.get(key, 1.0)), points))
        return faces

    def _view(self, image: np.ndarray, face: Face, degrees: float, size: int, upright_box: bool = False) -> list[Face]:
        """Faces the detector finds in `face`'s neighbourhood turned by `degrees` at `size` pixels, that are `face`
        (in the photo's pixels: boxes as the bounding boxes of the turned ones, or with `upright_box` as the turned
        ones' size on their centre)."""
        x, y, w, h = face.box
        view, matrix = upright_view(image, (x + w / 2, y + h / 2), NEIGHBOURHOOD * max(w, h), degrees, size)
        return [found for found in self._detected(view, matrix, upright_box)
                if box_overlap(found.box, face.box) > 0.5 and 0.5 < found.box[2] / max(w, 1e-6) < 2.0]

    def _upright(self, image: np.ndarray, face: Face) -> Face:
        """`face` as the detector sees it best in its neighbourhood turned by 0, 90, 180 or 270 degrees, all four at
        one scale (the detector's landmarks of an upside-down face say nothing of which way is up; those of an
        upright one do); the face as found unless a turn scores clearly better than no turn."""
        views = [max(self._view(image, face, 90 * turn, CHECK_SIDE), key=lambda f: f.score, default=None)
                 for turn in range(4)]
        best = max((v for v in views if v is not None), key=lambda f: f.score, default=None)
        if best is None or best is views[0] or (views[0] is not None and best.score <= views[0].score + 0.02):
            return face
        return best

    def _landmarks(self, image: np.ndarray, face: Face) -> Face:
        """`face` with landmarks measured where they show its tilt: its neighbourhood turned upright by the tilt
        they give, at `LANDMARK_SIDE` pixels (YuNet's landmarks of a face under about 200 pixels lie close to an
        upright face's, whatever its tilt), twice at most."""
        for _ in range(2):
            roll = roll_degrees(face.landmarks)
            found = self._view(image, face, roll, LANDMARK_SIDE, upright_box=True)
            if not found or found[0].landmarks is None:
                break
            face = max(found, key=lambda f: f.score)
            face = Face(face.box, face.score, face.landmarks)
            if abs(roll_degrees(face.landmarks) - roll) < 2.0:
                break
        return face

    def detect(self, frame: np.ndarray, roi=None, size_range: tuple[float, float] | None = None) -> np.ndarray:
        """Faces in the photo `frame` (x, y, w, h int32 [K, 4] in its pixels); see the class docstring."""
        if roi is not None or size_range is not None:
            return self.detector.detect(frame, roi, size_range)
        own = getattr(self.detector, "score_threshold", None)
        if own is None or self.score_threshold is None:
            return self._detect(frame)
        self.detector.score_threshold = self.score_threshold
        try:
            return self._detect(frame)
        finally:
            self.detector.score_threshold = own

    def _turned_or_tilted(self, frame: np.ndarray) -> tuple[list[Face], int, float]:
        """The faces of a photo in which none is found upright, with the quarter turns (clockwise) or the tilt
        (degrees) at which the detector is surest of them (its best score): the photo turned by 90, 180 and 270
        degrees and tilted by up to 45 degrees either way compete (a face tilted by 30 degrees is often found in a
        quarter turn too, upside down or sideways, whose landmarks say nothing of its tilt); the larger tilts only
        when none of these finds a face. ([], 0, 0.0) when nothing is found."""
        def best(faces: list[Face]) -> float:
            return max((f.score for f in faces), default=0.0)

        tries = [(self._find(frame, turn), turn, 0.0) for turn in (1, 2, 3)]
        tries += [(merge(self._tilted(frame, degrees)), 0, degrees) for degrees in TILTS if abs(degrees) <= 45]
        if not any(faces for faces, _, _ in tries):
            tries += [(merge(self._tilted(frame, degrees)), 0, degrees) for degrees in TILTS if abs(degrees) > 45]
        faces, turn, tilt = max(tries, key=lambda t: best(t[0]))
        return (faces, turn, tilt) if faces else ([], 0, 0.0)

    def _tilted(self, image: np.ndarray, degrees: float) -> list[Face]:
        """Faces the detector finds in the whole photo at the coarse pass's scale, turned by `degrees`
        (counter-clockwise, on a canvas grown to hold it), in the photo's pixels."""
        h, w = image.shape[:2]
        scale = self.coarse_side / max(w, h)
        scale = scale if self.upscale else min(1.0, scale)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        turn = cv2.getRotationMatrix2D((size[0] / 2, size[1] / 2), degrees, 1.0)
        cos, sin = abs(turn[0, 0]), abs(turn[0, 1])
        canvas = (int(np.ceil(size[0] * cos + size[1] * sin)), int(np.ceil(size[0] * sin + size[1] * cos)))
        turn[:, 2] += (canvas[0] / 2 - size[0] / 2, canvas[1] / 2 - size[1] / 2)
        view = cv2.warpAffine(small, turn, canvas, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return self._detected(view, turn @ np.diag([size[0] / w, size[1] / h, 1.0]))  # photo -> view pixels

    def _detect(self, frame: np.ndarray) -> np.ndarray:
        faces, self.last_turn, self.last_tilt = self._find(frame, 0), 0, 0.0
        if not faces and self.rotations:
            faces, self.last_turn, self.last_tilt = self._turned_or_tilted(frame)
        tilted = self.last_tilt != 0.0
        if hasattr(self.detector, "last_landmarks"):
            if self.rotations and not tilted:  # a tilted find's orientation is the tilt's
                faces = merge([self._upright(frame, face) for face in faces])
            faces = [self._landmarks(frame, f) if f.landmarks is not None else f for f in faces]
        boxes = np.round(np.array([f.box for f in faces])).astype(np.int32).reshape(-1, 4) if faces else NO_BOXES.copy()
        keys = [tuple(int(v) for v in b) for b in boxes]
        self.last_scores = {k: round(f.score, 4) for k, f in zip(keys, faces)}
        self.last_landmarks = {k: f.landmarks.astype(np.float32) for k, f in zip(keys, faces) if f.landmarks is not None}
        return boxes
