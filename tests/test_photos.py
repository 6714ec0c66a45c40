"""Photos as people take them (runtime.photos, runtime.align): any size, EXIF orientation, turned photos, faces
turned upright on their landmarks. Real photos: the repository's portraits and, where present, ../shared/media."""
from __future__ import annotations

import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

from runtime import BatchSolver, ExpressionClassifier
from runtime.align import face_crop, roll_degrees
from runtime.boxes import box_iou
from runtime.detectors import YuNetFaceDetector, create_detector
from runtime.metadata import ModelMetadata
from runtime.photos import TILE, Face, PhotoDetector, _unturn, merge, read_photo, search_plan
from runtime.pipeline import FramePipeline
from runtime.tracking import tracked

from .conftest import DATA, ROOT


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return cv2.imread(str(DATA / "obama-480p.jpg"), cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def pipeline(shipped_onnx) -> FramePipeline:
    return FramePipeline(create_detector(), ExpressionClassifier(shipped_onnx), photos=True)


@pytest.fixture(scope="module")
def upright(pipeline, portrait) -> dict:
    """The portrait's one face, upright: Happiness (the official portrait smiles)."""
    results = pipeline(portrait)
    assert len(results) == 1 and results[0]["label"] == "Happiness"
    return results[0]


def jpeg_with_orientation(image: np.ndarray, orientation: int) -> bytes:
    """A JPEG of `image` with an EXIF APP1 segment holding only the Orientation tag (0x0112), as a phone writes
    it for a photo stored sideways."""
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + \
        struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = jpeg.tobytes()
    return data[:2] + app1 + data[2:]  # right after SOI


def test_exif_orientation_is_applied(portrait, pipeline, upright, tmp_path):
    # stored turned 90 degrees counter-clockwise, tagged 6: "rotate 90 clockwise to show"
    stored = cv2.rotate(portrait, cv2.ROTATE_90_COUNTERCLOCKWISE)
    path = tmp_path / "phone.jpg"
    path.write_bytes(jpeg_with_orientation(stored, 6))
    assert cv2.imread(str(path), cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_COLOR).shape == stored.shape
    image = read_photo(path)
    assert image.shape == portrait.shape
    results = pipeline(image)
    assert len(results) == 1 and results[0]["label"] == "Happiness"
    assert box_iou(results[0]["box"], upright["box"]) > 0.8


def test_read_photo_gives_8_bit_bgr_of_16_bit_and_alpha_images(portrait, tmp_path):
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), portrait.astype(np.uint16) * 257)
    alpha = tmp_path / "alpha.png"
    cv2.imwrite(str(alpha), cv2.cvtColor(portrait, cv2.COLOR_BGR2BGRA))
    for path in (deep, alpha):
        image = read_photo(path)
        assert image.dtype == np.uint8 and image.shape == portrait.shape
        assert np.abs(image.astype(int) - portrait).max() <= 1
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    assert read_photo(tmp_path / "broken.jpg") is None


@pytest.mark.parametrize("megapixels", [0.3, 24])
def test_a_face_is_found_in_photos_small_and_large(megapixels, pipeline, portrait, upright):
    scale = np.sqrt(megapixels * 1e6 / portrait.shape[0] / portrait.shape[1])
    photo = cv2.resize(portrait, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    results = pipeline(photo)
    assert len(results) == 1 and results[0]["label"] == "Happiness"
    assert box_iou(results[0]["box"], [round(v * scale) for v in upright["box"]]) > 0.8


def test_small_faces_in_a_large_photo_are_found_too(pipeline, portrait):
    # eight portraits whose faces are about 30 px wide, spread over an 8 MP photo
    photo = np.full((2400, 3600, 3), 180, np.uint8)
    small = cv2.resize(portrait, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    spots = [(200 + 1600 * (i % 2) + 300 * (i // 4), 300 + 500 * (i % 4)) for i in range(8)]
    for x, y in spots:
        photo[y:y + small.shape[0], x:x + small.shape[1]] = small
    results = pipeline(photo)
    assert len(results) == 8
    for r in results:
        assert 20 <= r["box"][2] <= 50
        assert any(x <= r["box"][0] <= x + small.shape[1] and y <= r["box"][1] <= y + small.shape[0]
                   for x, y in spots)


@pytest.mark.parametrize("turn", [cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE])
def test_turned_photos_are_read_like_upright_ones_in_their_own_coordinates(turn, pipeline, portrait, upright):
    photo = cv2.rotate(portrait, turn)
    results = pipeline(photo)
    assert len(results) == 1 and results[0]["label"] == "Happiness"
    # the upright box's corners, turned as the photo was
    x, y, w, h = upright["box"]
    marker = np.zeros(portrait.shape[:2], np.uint8)
    marker[y:y + h, x:x + w] = 1
    ys, xs = np.nonzero(cv2.rotate(marker, turn))
    expected = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert box_iou(results[0]["box"], expected) > 0.7


def test_rotations_can_be_turned_off(shipped_onnx, portrait):
    sideways = cv2.rotate(portrait, cv2.ROTATE_90_CLOCKWISE)
    off = FramePipeline(create_detector(), ExpressionClassifier(shipped_onnx), photos=True, rotations=False)
    assert off(sideways) == []
    solver = BatchSolver(create_detector(), ExpressionClassifier(shipped_onnx), rotations=False)
    assert solver.solve([(0, sideways)])["Exist"] == [False]
    assert BatchSolver(create_detector(), ExpressionClassifier(shipped_onnx)).solve([(0, sideways)])["Exist"] == [True]


def test_fer_camera_turns_photos_unless_told_not_to(portrait, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "sideways.jpg"), cv2.rotate(portrait, cv2.ROTATE_90_CLOCKWISE))
    for extra, faces in (([], 1), (["--no-rotations"], 0)):
        lines = tmp_path / f"faces{len(extra)}.jsonl"
        done = subprocess.run([sys.executable, "-m", "runtime.camera", "--source", folder, "--headless",
                               "--json", lines, *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        import json

        record = json.loads(lines.read_text().splitlines()[0])
        assert len(record["faces"]) == faces
        if faces:
            assert record["faces"][0]["label"] == "Happiness"


def test_a_tilted_face_is_read_as_upright(pipeline, portrait, upright):
    h, w = portrait.shape[:2]
    for degrees in (30, -30):
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
        tilted = cv2.warpAffine(portrait, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)
        results = pipeline(tilted)
        assert len(results) == 1 and results[0]["label"] == "Happiness"
        assert results[0]["probability"] > 0.8


def test_roll_is_the_eye_lines_angle(yunet_model, portrait):
    photos = PhotoDetector(YuNetFaceDetector(yunet_model))
    h, w = portrait.shape[:2]

    def roll(image):
        box = photos.detect(image)[0]
        return roll_degrees(photos.last_landmarks[tuple(int(v) for v in box)])

    level = roll(portrait)
    assert abs(level) < 5
    for degrees in (30, 15, -15, -30):  # OpenCV turns counter-clockwise for a positive angle: the eye line's falls
        tilted = cv2.warpAffine(portrait, cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0), (w, h))
        assert roll(tilted) == pytest.approx(level - degrees, abs=5)
    assert abs(roll(cv2.rotate(portrait, cv2.ROTATE_180))) > 170


def test_raw_yunet_landmarks_of_a_small_face_hide_its_tilt(yunet_model, portrait):
    # why the photo path measures landmarks on a 200 px view: at the portrait's own 480p (a face of about 110 px)
    # YuNet reads a 20-degree tilt as about 10
    detector = YuNetFaceDetector(yunet_model)
    h, w = portrait.shape[:2]
    tilted = cv2.warpAffine(portrait, cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0), (w, h))
    box = detector.detect(tilted)[0]
    assert abs(roll_degrees(detector.last_landmarks[tuple(int(v) for v in box)])) < 15


def test_face_crop_turns_only_faces_tilted_beyond_the_models_angle(portrait, yunet_model):
    detector = PhotoDetector(YuNetFaceDetector(yunet_model))

    def face(image):
        box = detector.detect(image)[0]
        return box, detector.last_landmarks[tuple(int(v) for v in box)]

    box, marks = face(portrait)
    plain = face_crop(portrait, box, 0.1)
    assert np.shares_memory(plain, portrait)  # a view
    assert np.array_equal(face_crop(portrait, box, 0.1, marks, align_roll=20.0), plain)  # level: as it is
    h, w = portrait.shape[:2]
    tilted = cv2.warpAffine(portrait, cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1.0), (w, h))
    box, marks = face(tilted)
    crop = face_crop(tilted, box, 0.1, marks, align_roll=20.0, size=72)
    as_is = face_crop(tilted, box, 0.1)
    assert crop.shape[2] == 3 and max(crop.shape[:2]) <= 144  # the level framing's rectangle, at most twice `size`
    assert abs(crop.shape[0] / crop.shape[1] - as_is.shape[0] / as_is.shape[1]) < 0.05
    # turned upright, it looks like the level face's crop, more than the tilted crop does
    reference = cv2.resize(plain, (72, 72)).astype(float).ravel()
    crop, as_is = cv2.resize(crop, (72, 72)), cv2.resize(as_is, (72, 72))
    corr = [np.corrcoef(c.astype(float).ravel(), reference)[0, 1] for c in (crop, as_is)]
    assert corr[0] > 0.7 and corr[0] > corr[1] + 0.2, corr


def test_align_roll_travels_in_the_metadata():
    meta = ModelMetadata(labels=["a", "b"], input_size=48, channels=1, mean=[0.5], std=[0.25], align_roll=12.5)
    assert ModelMetadata.from_props(meta.to_props()).align_roll == 12.5
    never = ModelMetadata(labels=["a", "b"], input_size=48, channels=1, mean=[0.5], std=[0.25], align_roll=None)
    assert never.to_props()["align_roll"] == "none"
    assert ModelMetadata.from_props(never.to_props()).align_roll is None
    older = {k: v for k, v in meta.to_props().items() if k != "align_roll"}
    assert ModelMetadata.from_props(older).align_roll is None  # a file exported before the key: never turned


def test_the_shipped_models_say_their_framing(shipped_onnx):
    from .conftest import SHIPPED_INT8

    for path in (shipped_onnx, SHIPPED_INT8):
        meta = ExpressionClassifier(path).metadata
        assert (meta.face_margin, meta.align_roll) == (0.1, 20.0)


def test_search_plan_covers_the_photo_with_tiles_the_detector_can_take():
    width, height = 6000, 4000
    plan = search_plan(width, height, min_face=16)
    assert plan[0].tiles == ((0, 0, width, height),) and max(width, height) * plan[0].scale == pytest.approx(400)
    assert plan[-1].scale == pytest.approx(16 / 20)  # a 20 px face is 16 detector pixels at the finest pass
    for step in plan[1:]:
        covered = np.zeros((height, width), bool)
        for x0, y0, x1, y1 in step.tiles:
            assert (x1 - x0) * step.scale <= TILE + 1 and (y1 - y0) * step.scale <= TILE + 1
            covered[y0:y1, x0:x1] = True
        assert covered.all()
    assert len(search_plan(320, 240, min_face=16)) == 1  # small photos: one look


def test_unturned_points_come_back_where_they_were():
    width, height = 40, 30
    points = np.array([[3.0, 4.0], [39.0, 1.0], [0.0, 29.0]])
    marker = np.zeros((height, width), np.uint8)
    for turn, code in enumerate([None, cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE]):
        turned_shape = (width, height) if turn % 2 else (height, width)
        for x, y in points:  # the pixel at (x, y) lands in the turned image where _unturn maps it back from
            marker[:] = 0
            marker[int(y), int(x)] = 1
            moved = marker if code is None else cv2.rotate(marker, code)
            assert moved.shape == turned_shape
            v, u = np.argwhere(moved)[0]
            back = _unturn(np.array([u + 0.5, v + 0.5]), turn, width, height)  # the unturned image's size
            assert back == pytest.approx([x + 0.5, y + 0.5])


def test_merge_keeps_the_best_of_overlapping_finds():
    faces = [Face(np.array([0, 0, 100, 100.0]), 0.8, None), Face(np.array([10, 10, 80, 80.0]), 0.9, None),
             Face(np.array([300, 0, 50, 50.0]), 0.6, None)]
    assert [f.score for f in merge(faces)] == [0.9, 0.6]


def test_video_frames_go_to_the_detector_as_they_are(yunet_model, portrait):
    # a stream is not a photo: no turned search, however the frame looks
    detector = tracked(YuNetFaceDetector(yunet_model), 5)
    assert len(detector.detect(cv2.rotate(portrait, cv2.ROTATE_90_CLOCKWISE))) == 0
    boxes = detector.detect(portrait)
    assert len(boxes) == 1 and tuple(int(v) for v in boxes[0]) in detector.last_landmarks


def test_stored_size_is_the_shown_size(portrait, tmp_path):
    from runtime.photos import stored_size

    stored = cv2.rotate(portrait, cv2.ROTATE_90_COUNTERCLOCKWISE)
    tagged = tmp_path / "phone.jpg"
    tagged.write_bytes(jpeg_with_orientation(stored, 6))
    assert stored_size(tagged) == portrait.shape[:2]
    cv2.imwrite(str(tmp_path / "plain.png"), portrait)
    assert stored_size(tmp_path / "plain.png") == portrait.shape[:2]
    assert stored_size(DATA / "biden.jpg") == (2204, 970)
    (tmp_path / "other.bmp").write_bytes(b"BM" + bytes(100))
    assert stored_size(tmp_path / "other.bmp") is None


def test_a_large_photo_is_held_once_while_it_is_decoded(portrait, tmp_path):
    # OpenCV's own allocation holds a decoded JPEG twice at its peak; read_photo decodes into one array
    path = tmp_path / "large.jpg"
    cv2.imwrite(str(path), cv2.resize(portrait, (6000, 3375)))
    code = ("import resource, sys; from runtime.photos import read_photo; "
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; image = read_photo(sys.argv[1]); "
            "print(image.nbytes, 1024 * (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before))")
    done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    size, grew = map(int, done.stdout.split())
    assert size == 6000 * 3375 * 3 and grew < 1.3 * size


def _eye_line(photos: PhotoDetector, photo: np.ndarray) -> float | None:
    """The eye line's angle of the first face `photos` finds in `photo` (None: no face)."""
    boxes = photos.detect(photo)
    return roll_degrees(photos.last_landmarks[tuple(int(v) for v in boxes[0])]) if len(boxes) else None


def test_faces_missed_upright_are_found_in_the_photo_tilted(ferplus, yunet_model):
    # FER+ faces as small photos turned by 30 degrees inside their own canvas (their corners cut off): YuNet misses
    # about one in six upright; the whole-photo looks at +-15 to +-75 degrees find them
    from benchmarks.photos import ferplus_photo, turned

    from .conftest import ferplus_test_faces

    faces, _ = ferplus_test_faces(ferplus, ExpressionClassifier().labels, 60)
    photos = PhotoDetector(YuNetFaceDetector(yunet_model))
    found, tilts, agree, pairs = 0, [], 0, 0
    for face in faces:
        upright = _eye_line(photos, ferplus_photo(face))
        turned_roll = _eye_line(photos, turned(ferplus_photo(face), 30, grow=False))
        found += turned_roll is not None
        if turned_roll is not None:
            tilts.append(photos.last_tilt)
            if upright is not None:  # the eye line falls by about the turn
                pairs += 1
                agree += abs(turned_roll - (upright - 30)) < 15
    assert found >= 57 and any(t != 0 for t in tilts) and agree >= 0.9 * pairs
    photos.rotations = False
    assert sum(len(photos.detect(turned(ferplus_photo(f), 30, grow=False))) > 0 for f in faces) < found


def test_a_tilted_face_missed_upright_is_not_read_upside_down(ferplus, yunet_model):
    # FER+ faces as small photos turned by +-30 degrees; about one in six is missed upright and then found in a quarter
    # turn too (upside down or sideways, where YuNet's landmarks do not show the tilt): the tilts compete with the
    # quarter turns, so its eye line reads about the turn (200 faces: 6 of about 70 read 20 degrees or more off when
    # the quarter turns came first, 1 now)
    from benchmarks.photos import ferplus_photo, turned

    from .conftest import ferplus_test_faces

    faces, _ = ferplus_test_faces(ferplus, ExpressionClassifier().labels, 200)
    photos = PhotoDetector(YuNetFaceDetector(yunet_model))
    missed_upright = off = 0
    for face in faces:
        upright = _eye_line(photos, ferplus_photo(face))
        for degrees in (30, -30):
            tilted = _eye_line(photos, turned(ferplus_photo(face), degrees, grow=False))
            if upright is None or tilted is None or (photos.last_turn == 0 and photos.last_tilt == 0):
                continue
            missed_upright += 1
            off += abs((tilted - (upright - degrees) + 180) % 360 - 180) >= 20
    assert missed_upright >= 40 and off <= 2


def test_a_face_cut_off_by_the_edge_gets_a_box_inside_the_frame(pipeline, portrait, shipped_onnx):
    # the portrait's face with its left third cut off: the detector's square reaches past the edge
    x, y, w, h = pipeline(portrait)[0]["box"]
    cut = np.ascontiguousarray(portrait[:, x + w // 3:])
    for results in (pipeline(cut), pipeline.solve_batch([cut])[0]):
        assert len(results) == 1
        bx, by, bw, bh = results[0]["box"]
        assert bx >= 0 and by >= 0 and bx + bw <= cut.shape[1] and by + bh <= cut.shape[0] and bw > 0
    solver = BatchSolver(create_detector(), ExpressionClassifier(shipped_onnx))
    assert min(solver.solve([(0, cut)])["Boxes"][0]) >= 0


def test_results_turn_into_json(pipeline, portrait):
    import json

    results = pipeline(portrait)
    again = json.loads(json.dumps([r.to_dict() for r in results]))
    assert again[0]["label"] == results[0]["label"] and again[0]["box"] == list(results[0]["box"])
    assert again[0]["vector"] == pytest.approx(results[0]["vector"].tolist())
    assert isinstance(results[0], dict) and results[0]["vector"].dtype == np.float32  # the seed's dict as before
