"""The torch-free runtime on real faces: detectors, classifier, smoothing, solvers, visualizer."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from runtime import (BatchSolver, CameraSolver, CascadeFaceDetector, CV2FaceDetector, ExpressionClassifier,
                     FramePipeline, LinearExponentialSmoothing, ModelError, ModelMetadata, VideoSolver, Visualizer,
                     YuNetFaceDetector)
from runtime.boxes import box_iou, largest_box, widen_box
from runtime.image import preprocess
from runtime.tracking import IntervalDetector

from .conftest import DATA, ROOT


def test_import_runtime_never_imports_torch():
    code = ("import sys, runtime, runtime.camera; "
            "bad = [m for m in ('torch', 'torchvision') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["obama-480p.jpg", "obama-1080p.jpg", "biden.jpg"])
def test_haar_finds_one_face_on_portraits(name):
    frame = cv2.imread(str(DATA / name))
    boxes = CascadeFaceDetector().detect(frame)
    assert boxes.shape == (1, 4) and boxes.dtype == np.int32
    x, y, w, h = boxes[0]
    assert 0 <= x and 0 <= y and x + w <= frame.shape[1] and y + h <= frame.shape[0] and w > 48


def test_haar_gray_bgra_and_downscaled_detection_agree():
    frame = cv2.imread(str(DATA / "obama-1080p.jpg"))
    full = CascadeFaceDetector().detect(frame)[0]
    assert box_iou(CascadeFaceDetector().detect(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))[0], full) > 0.99
    assert box_iou(CascadeFaceDetector().detect(cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA))[0], full) > 0.99
    small = CascadeFaceDetector(detect_width=480).detect(frame)
    assert len(small) == 1 and box_iou(small[0], full) > 0.7


def test_seed_detector_name_still_finds_the_face():
    frame = cv2.imread(str(DATA / "obama-480p.jpg"))
    boxes = CV2FaceDetector().detect(frame)
    assert boxes.shape == (1, 4) and box_iou(boxes[0], CascadeFaceDetector().detect(frame)[0]) == 1.0


def test_two_people_and_rgba_png(media):
    assert len(CascadeFaceDetector().detect(cv2.imread(str(media / "two_people.jpg")))) == 2
    for name in ("lin-manuel-miranda.png", "alex-lacamoire.png"):
        rgba = cv2.imread(str(media / name), cv2.IMREAD_UNCHANGED)
        assert rgba.shape[2] == 4
        assert len(CascadeFaceDetector().detect(rgba)) == 1


def test_missing_cascade_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="Haar cascade not found"):
        CascadeFaceDetector(tmp_path / "nope.xml")
    (tmp_path / "bad.xml").write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(ValueError, match="cannot read Haar cascade"):
        CascadeFaceDetector(tmp_path / "bad.xml")


def test_yunet(yunet_model, media):
    detector = YuNetFaceDetector(yunet_model)
    assert len(detector.detect(cv2.imread(str(DATA / "obama-480p.jpg")))) == 1
    boxes = detector.detect(cv2.imread(str(media / "two_people.jpg")))
    assert boxes.shape == (2, 4) and boxes.dtype == np.int32
    haar = CascadeFaceDetector().detect(cv2.imread(str(DATA / "obama-480p.jpg")))[0]
    assert box_iou(detector.detect(cv2.imread(str(DATA / "obama-480p.jpg")))[0], haar) > 0.4


def test_predict_probabilities_for_any_face_format(tiny_onnx):
    clf = ExpressionClassifier(tiny_onnx)
    faces = [np.full((48, 48), 120, np.uint8), np.zeros((100, 80, 3), np.uint8), np.zeros((30, 30, 4), np.uint8)]
    probs = clf.predict(faces)
    assert probs.shape == (3, 7) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    assert clf.labels[0] == "Surprise" and len(clf.labels) == 7 and clf.express_table == clf.labels
    assert clf.predict([]).shape == (0, 7)
    assert not np.allclose(probs[0], probs[2])  # a real model: different faces, different outputs


def test_detect_fields_and_box_outside_frame(tiny_onnx):
    clf = ExpressionClassifier(tiny_onnx)
    frame = cv2.imread(str(DATA / "obama-480p.jpg"))  # 853 x 480
    boxes = [(10, 20, 100, 100), (-30, 400, 100, 100), (900, 10, 50, 50), (100, -200, 80, 80)]
    results = clf.detect(frame, boxes)
    # the last two lie entirely outside the frame (even widened by the face margin): dropped; a result's box is the
    # part of the given box inside the frame
    assert [r["box"] for r in results] == [(10, 20, 100, 100), (0, 400, 70, 80)]
    for r in results:
        assert set(r) == {"box", "vector", "result", "probability", "label", "sharpness", "quality", "reliable"}
        assert r["vector"].dtype == np.float32 and r["label"] == clf.labels[r["result"]]
        assert r["probability"] == pytest.approx(float(r["vector"].max()))
    # the partly outside box is classified on the part inside the frame, widened by the margin and clipped
    np.testing.assert_allclose(results[1]["vector"], clf.predict([frame[390:480, 0:80]])[0], rtol=1e-6)


def test_crop_widens_by_the_models_face_margin(tiny_onnx):
    clf = ExpressionClassifier(tiny_onnx)
    frame = np.arange(200 * 300, dtype=np.uint32).reshape(200, 300).astype(np.uint8)
    assert clf.metadata.face_margin == 0.1
    assert np.array_equal(clf.crop(frame, (100, 50, 60, 80)), frame[42:138, 94:166])
    assert widen_box((100, 50, 60, 80), 0.1, frame.shape) == (94, 42, 72, 96)
    assert clf.crop(frame, (400, 10, 20, 20)).size == 0


def test_preprocess_numbers():
    face = np.full((96, 64, 3), (0, 128, 255), np.uint8)  # BGR: gray 0.114*0 + 0.587*128 + 0.299*255
    batch = preprocess([face], 48, 1, [0.5], [0.25])
    gray = round(0.587 * 128 + 0.299 * 255)
    assert batch.shape == (1, 1, 48, 48) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, (gray / 255 - 0.5) / 0.25, atol=0.01)
    rgb = preprocess([face], 32, 3, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(rgb[0, :, 0, 0], [(255 / 255 - 0.5) / 0.5, (128 / 255 - 0.5) / 0.5, -1.0], atol=1e-6)


def test_largest_box():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 30, 20], [1, 1, 20, 20]], np.int32)
    assert largest_box(boxes).tolist() == [[5, 5, 30, 20]]
    assert largest_box(np.zeros((0, 4), np.int32)).shape == (0, 4)


def test_metadata_schema_round_trip_and_errors():
    meta = ModelMetadata(labels=["A", "B"], input_size=64, channels=3, mean=[0.5] * 3, std=[0.2] * 3, accuracy=81.5)
    assert ModelMetadata.from_props(meta.to_props()) == meta
    assert ModelMetadata.from_dict({**meta.to_dict(), "epoch": 3}).extra == {"epoch": 3}
    bad = {**meta.to_props(), "input_size": "big"}
    with pytest.raises(ModelError, match="malformed metadata"):
        ModelMetadata.from_props(bad, "m.onnx")
    with pytest.raises(ModelError, match="channels 3 with mean"):
        ModelMetadata.from_props({**meta.to_props(), "mean": "[0.5]"}, "m.onnx")


def test_frame_pipeline_smooths_and_times_its_stages(tiny_onnx):
    clf = ExpressionClassifier(tiny_onnx)
    frame = cv2.imread(str(DATA / "obama-480p.jpg"))
    other = cv2.imread(str(DATA / "biden.jpg"))
    pipeline = FramePipeline(CascadeFaceDetector(), clf, LinearExponentialSmoothing(0.5))
    first = pipeline(frame)[0]["vector"]
    box = CascadeFaceDetector().detect(frame)[0]
    # the same box on a different face: the smoothed vector is halfway between the two
    now = ExpressionClassifier(tiny_onnx).predict([clf.crop(cv2.resize(other, frame.shape[1::-1]), box)])[0]
    pipeline.detector = type("Fixed", (), {"detect": lambda self, f: np.array([box])})()
    second = pipeline(cv2.resize(other, frame.shape[1::-1]))[0]
    np.testing.assert_allclose(second["vector"], 0.5 * now + 0.5 * first, rtol=1e-5)
    assert second["label"] == clf.labels[int(np.argmax(second["vector"]))]
    assert all(pipeline.seconds[stage] > 0 for stage in ("detect", "classify", "smooth"))
    pipeline.reset()  # forgets the previous frame: no blending
    np.testing.assert_allclose(pipeline(frame)[0]["vector"], first, rtol=1e-6)


def test_model_without_required_metadata(tiny_onnx, tmp_path):
    onnx = pytest.importorskip("onnx", reason="editing a model's metadata needs the onnx package")
    proto = onnx.load(str(tiny_onnx))
    kept = [p for p in proto.metadata_props if p.key != "face_margin"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    path = tmp_path / "nomargin.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(ModelError, match="lacks the metadata key 'face_margin'"):
        ExpressionClassifier(path)


def test_missing_and_corrupt_model_files(tmp_path):
    with pytest.raises(ModelError, match="model not found"):
        ExpressionClassifier(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        ExpressionClassifier(tmp_path / "junk.onnx")


def _result(box, vector):
    vector = np.asarray(vector, np.float32)
    return {"box": box, "vector": vector, "result": int(vector.argmax()), "probability": float(vector.max())}


def test_smoothing_math_and_one_to_one_matching():
    smooth = LinearExponentialSmoothing(rate=0.3)
    a, b = (0, 0, 100, 100), (300, 0, 100, 100)
    smooth([_result(a, [1, 0, 0]), _result(b, [0, 0, 1])])
    out = smooth([_result((5, 0, 100, 100), [0, 1, 0]), _result((600, 0, 50, 50), [0, 1, 0])])
    np.testing.assert_allclose(out[0]["vector"], [0.7, 0.3, 0])  # 0.3 * now + 0.7 * previous
    assert out[0]["result"] == 0 and out[0]["probability"] == pytest.approx(0.7)
    np.testing.assert_allclose(out[1]["vector"], [0, 1, 0])  # no overlap: starts fresh
    # two faces overlapping the same previous face: only the best match blends
    smooth.reset()
    smooth([_result(a, [1, 0, 0])])
    out = smooth([_result((2, 0, 100, 100), [0, 0, 1]), _result((20, 0, 100, 100), [0, 0, 1])])
    np.testing.assert_allclose(out[0]["vector"], [0.7, 0, 0.3])
    np.testing.assert_allclose(out[1]["vector"], [0, 0, 1])


def test_smoothing_follows_track_ids_when_the_results_carry_them():
    """A stream's results carry track ids: the same id blends even when the box jumped; a new id, even on the same
    box (the next person after a scene cut), starts fresh."""
    smooth = LinearExponentialSmoothing(rate=0.3)
    box = (0, 0, 100, 100)
    smooth([{**_result(box, [1, 0, 0]), "track_id": 0}, {**_result((300, 0, 90, 90), [0, 1, 0]), "track_id": 1}])
    out = smooth([{**_result(box, [0, 0, 1]), "track_id": 2}, {**_result((400, 0, 90, 90), [0, 0, 1]), "track_id": 1}])
    np.testing.assert_allclose(out[0]["vector"], [0, 0, 1])  # a new track on the old box: fresh
    np.testing.assert_allclose(out[1]["vector"], [0, 0.7, 0.3])  # track 1, wherever its box is now


def test_face_ids_without_a_tracker_change_at_a_scene_cut():
    from runtime.identities import FaceIds

    ids, box = FaceIds(), (100, 100, 80, 80)
    dark, bright = np.full((360, 640, 3), 40, np.uint8), np.full((360, 640, 3), 200, np.uint8)
    assert ids([box], dark) == [0] and ids([(104, 100, 80, 80)], dark) == [0]  # followed
    assert ids([(104, 100, 80, 80)], bright) == [1]  # the same place after a cut: another person
    assert ids([(400, 100, 80, 80), (104, 100, 80, 80)], bright) == [2, 1]
    ids.reset()
    assert ids([box], dark) == [0]


def test_smoothing_starts_afresh_at_the_clips_scene_cuts(media):
    """With the shipped model and YuNet: on the first frame after each cut every face's probabilities are the
    classifier's own (nothing blended in from the shot before); one frame later they are smoothed."""
    from runtime import create_detector

    def run(smoother):
        solver = VideoSolver(create_detector("auto", detect_width=640), ExpressionClassifier(), smoother=smoother)
        with solver.start(media / "short_hamilton_clip.mp4"):
            return [[(r["track_id"], r["vector"]) for r in results] for results, _ in solver]

    smoothed, raw = run(LinearExponentialSmoothing(0.3)), run(None)
    assert len(smoothed) == 275
    for cut in (82, 211):
        assert smoothed[cut] and [i for i, _ in smoothed[cut]] == [i for i, _ in raw[cut]]
        for (_, s), (_, r) in zip(smoothed[cut], raw[cut]):
            np.testing.assert_allclose(s, r, rtol=1e-6)
        assert any(not np.allclose(s, r) for (_, s), (_, r) in zip(smoothed[cut + 2], raw[cut + 2]))


def test_batch_solver_json(tiny_onnx):
    solver = BatchSolver(CascadeFaceDetector(), ExpressionClassifier(tiny_onnx), batch_size=2)
    face = cv2.imread(str(DATA / "obama-480p.jpg"))
    blank = np.zeros((240, 320, 3), np.uint8)
    items = [(7, face), (8, blank), (9, cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)), (10, face)]
    out = json.loads(solver.solve_in_json(items))
    assert list(out) == ["Vector", "Class", "Boxes", "Exist", "Index"]
    assert out["Index"] == [7, 8, 9, 10] and out["Exist"] == [True, False, True, True]
    assert np.array(out["Vector"]).shape == (4, 7) and np.array(out["Boxes"]).shape == (4, 4)
    assert out["Vector"][1] == [0.0] * 7 and out["Class"][1] == "" and out["Boxes"][1] == [0, 0, 0, 0]
    assert all(isinstance(v, int) for v in out["Boxes"][0]) and all(isinstance(e, bool) for e in out["Exist"])
    assert all(v == round(v, 3) for v in out["Vector"][0]) and abs(sum(out["Vector"][0]) - 1) < 0.01
    assert out["Vector"][0] == out["Vector"][3]
    # the JSON holds what the classifier says about the detected face's crop
    box = CascadeFaceDetector().detect(face)[0]
    expected = solver.classifier.predict([solver.classifier.crop(face, box)])[0]
    assert out["Boxes"][0] == box.tolist() and out["Vector"][0] == [round(float(v), 3) for v in expected]
    assert out["Class"][0] == solver.classifier.labels[int(np.argmax(expected))]


@pytest.mark.parametrize("bad, message", [(None, "image 5: expected a numpy array"),
                                          (np.zeros((0, 0, 3), np.uint8), "image 5: expected a non-empty"),
                                          (np.zeros((10, 10, 3), np.float32), "image 5: expected dtype uint8"),
                                          (np.zeros((10, 10, 2), np.uint8), "image 5: expected a non-empty")])
def test_batch_solver_bad_items(tiny_onnx, bad, message):
    solver = BatchSolver(CascadeFaceDetector(), ExpressionClassifier(tiny_onnx))
    with pytest.raises(ValueError, match=message):
        solver.solve([(4, np.zeros((10, 10), np.uint8)), (5, bad)])


def test_video_solver_over_sample_clip(tiny_onnx, media):
    with VideoSolver(IntervalDetector(CascadeFaceDetector(detect_width=320)), ExpressionClassifier(tiny_onnx)) as solver:
        solver.start(media / "short_hamilton_clip.mp4")
        assert solver.fps == pytest.approx(29.97, abs=0.01)
        frames = faces = 0
        for results, frame in solver:
            assert frame.shape == (360, 640, 3)
            frames, faces = frames + 1, faces + len(results)
        assert frames == 275 and faces > 100
        assert solver.get_solved_frame() == ([], None)
    with pytest.raises(FileNotFoundError, match="video not found"):
        VideoSolver(CascadeFaceDetector(), ExpressionClassifier(tiny_onnx)).start("missing.mp4")


def test_video_solver_start_forgets_the_previous_video(tiny_onnx, media):
    """A second start() gives the same results as a fresh solver: tracking and smoothing state are reset."""
    clip = media / "short_hamilton_clip.mp4"

    def first_frames(solver, n=20):
        solver.start(clip)
        return [[(r["box"], r["vector"].round(5).tolist()) for r in results] for (results, _), _ in zip(solver, range(n))]

    reused = VideoSolver(CascadeFaceDetector(), ExpressionClassifier(tiny_onnx),
                         smoother=LinearExponentialSmoothing(0.3))
    first_frames(reused, 10)
    again = first_frames(reused)
    fresh = first_frames(VideoSolver(CascadeFaceDetector(), ExpressionClassifier(tiny_onnx),
                                     smoother=LinearExponentialSmoothing(0.3)))
    assert again == fresh and any(again)


def test_camera_that_does_not_exist(tiny_onnx):
    with pytest.raises(RuntimeError, match="cannot open camera 57"):
        CameraSolver(CascadeFaceDetector(), ExpressionClassifier(tiny_onnx)).start(57)


def test_visualizer_renders_boxes_and_charts(tiny_onnx):
    clf = ExpressionClassifier(tiny_onnx)
    frame = cv2.imread(str(DATA / "obama-480p.jpg"))
    vis = Visualizer(clf.labels, window_size=5)
    for _ in range(7):
        vis.update(clf.detect(frame, CascadeFaceDetector().detect(frame)), frame)
    image = vis.render()
    assert image.shape == (480, 853 + 320, 3)
    assert len(vis.history) == 5
    assert image[:, 853:].std() > 10  # the chart panel is drawn


def test_frame_pipeline_keeps_probabilities_on_frames_the_tracker_carries_over(tiny_onnx):
    class CountingClassifier(ExpressionClassifier):
        calls = 0

        def predict(self, faces):
            CountingClassifier.calls += 1
            return super().predict(faces)

    frame = cv2.imread(str(DATA / "obama-480p.jpg"))
    frames = [np.clip(frame.astype(int) + 3 * i, 0, 255).astype(np.uint8) for i in range(8)]  # a changing face
    for every_frame, expected_calls in ((True, 8), (False, 4)):
        CountingClassifier.calls = 0
        tracker = IntervalDetector(CascadeFaceDetector(), every=15, follow_every=2)
        pipeline = FramePipeline(tracker, CountingClassifier(tiny_onnx), classify_every_frame=every_frame)
        results, carried = [], []
        for f in frames:
            results.append(pipeline(f)[0])
            carried.append(tracker.carried_over)
        assert carried == [False, True] * 4 and CountingClassifier.calls == expected_calls
        for i in (1, 3, 5, 7):  # carried-over frames: the same box, the previous frame's probabilities, or new ones
            assert results[i]["box"] == results[i - 1]["box"]
            assert np.array_equal(results[i]["vector"], results[i - 1]["vector"]) is not every_frame
    calls = CountingClassifier.calls
    pipeline.reset()  # a new video: its first frame is searched and classified
    pipeline(frames[1])
    assert CountingClassifier.calls == calls + 1 and tracker.carried_over is False


def test_labels_stay_inside_the_image_and_apart_in_a_grid_of_small_faces():
    from runtime.visualizer import draw_faces, label_layout

    shape = (720, 1280, 3)
    # at the edges: the whole label inside the image
    for box in [(0, 0, 60, 60), (1240, 5, 40, 40), (1200, 690, 80, 30), (-20, 300, 60, 60)]:
        _, (x0, y0, x1, y1), _, _ = label_layout(shape, box, "Happiness", 0.98)
        assert 0 <= x0 < x1 <= shape[1] and 0 <= y0 < y1 <= shape[0]
    # a 4x4 grid of 32 px faces a face apart: no label covers a neighbour's
    boxes = [(100 + 64 * c, 100 + 64 * r, 32, 32) for r in range(4) for c in range(4)]
    spots = [label_layout(shape, b, "Happiness", 0.98)[1] for b in boxes]
    for i, a in enumerate(spots):
        for b in spots[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    # a large face on a large photo keeps a large, readable label
    text, (x0, y0, x1, y1), scale, _ = label_layout((2204, 970, 3), (300, 400, 400, 400), "Happiness", 0.98)
    assert text == "Happiness 0.98" and scale > 1.5 and y1 <= 400
    image = np.zeros(shape, np.uint8)
    draw_faces(image, [{"box": b, "result": 3, "label": "Happiness", "probability": 0.98} for b in boxes])
    assert image.any()


def test_plot_time_starts_at_zero_and_every_class_has_its_own_colour():
    from runtime.summary import MAX_FACES, PANEL, ExpressionPlot
    from runtime.visualizer import PALETTE

    colours = np.array(PALETTE, float)
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(colours) for b in colours[i + 1:]]
    assert min(gaps) > 80  # no two classes in nearly the same colour (Disgust and Happiness were two greens)
    plot = ExpressionPlot(["a", "b"], title="clip.mp4")
    vector = np.array([0.3, 0.7], np.float32)
    for t in range(5, 20):  # the first face shows at 5 s
        plot.add(t, float(t), [{"track_id": 1, "vector": vector}])
    for track in range(2, 2 + MAX_FACES + 2):  # and ten short ones
        plot.add(19, 19.0, [{"track_id": track, "vector": vector}])
    assert plot.time_axis() == (0.0, 19.0)
    chart = plot.render()
    assert chart.shape[0] == 40 + 24 * 2 + MAX_FACES * PANEL[1]  # the title and the note of the 3 left out
