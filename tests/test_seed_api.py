"""Code written as the seed's README wrote it (`../shared/seed/README.zh.md`, its `solver` and `api` modules), with
only the import changed to `runtime`, runs and gives the seed's results: its three label tables, its positional
signatures, its default Haar path."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from runtime import BatchSolver, CV2FaceDetector, ExpressionClassifier, VideoSolver

from .conftest import DATA, ROOT

RAFDB_TABLE = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
AFFECTNET_TABLE = ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger"]  # the seed's affectnet7
AFFECTNET_6 = {0: "Happy", 1: "Sad", 2: "Surprise", 3: "Fear", 4: "Disgust", 5: "Anger"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A short video of the repository's portraits (20 frames each)."""
    path = tmp_path_factory.mktemp("seed") / "portraits.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (853, 480))
    for name in ("obama-480p.jpg", "obama-480p.jpg"):
        frame = cv2.resize(cv2.imread(str(DATA / name)), (853, 480))
        for _ in range(20):
            writer.write(frame)
    writer.release()
    return path


SEED_SCRIPT = '''
import json, sys
import cv2
from runtime import *   # the seed: from solver import *

model = "fp32"          # the seed: get_trained_model(mbnet.MobileNetV3_Small(), "ckpt/....pth.tar")
detector = CV2FaceDetector('ckpt/haarcascade_frontalface_default.xml')
frame = cv2.imread(sys.argv[2])
results = detector.detect(frame)

smoother = LinearExponentialSmoothing(0.3)
affectnet_table = {0:"Happy", 1:"Sad", 2:"Surprise", 3:"Fear", 4:"Disgust", 5:"Anger"}
classifier = ExpressionClassifier(model, affectnet_table, smoother)

vid_solver = VideoSolver(detector, classifier)
vid_solver.start(sys.argv[1])
labels = []
for i in range(30):
    results, frame = vid_solver.get_solved_frame()
    labels.append([r["label"] for r in results])
vid_solver.close()

vizor = Visualizer(label_table=classifier.express_table)

solver = BatchSolver(detector, classifier, "cpu", None, batch_size=32)
solver.set_batch_size(8)
out = json.loads(solver.solve_in_json([(0, cv2.imread(sys.argv[2]))]))
print(json.dumps({"boxes": len(detector.detect(cv2.imread(sys.argv[2]))), "table": classifier.express_table,
                  "video": labels, "batch": out}))
'''


def test_the_seeds_readme_runs_as_written(clip, tmp_path):
    script = tmp_path / "seed_demo.py"
    script.write_text(SEED_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(clip), str(DATA / "obama-480p.jpg")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(ROOT),
                                                                            "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["boxes"] == 1  # the seed's cascade path works without the file: OpenCV's copy
    assert report["table"] == list(AFFECTNET_6.values())
    assert len(report["video"]) == 30 and all(labels == ["Happy"] for labels in report["video"][5:])
    batch = report["batch"]
    assert list(batch) == ["Vector", "Class", "Boxes", "Exist", "Index"]
    assert batch["Class"] == ["Happy"] and batch["Exist"] == [True] and len(batch["Vector"][0]) == 6
    assert abs(sum(batch["Vector"][0]) - 1) < 0.01


@pytest.mark.parametrize("table, happy", [(RAFDB_TABLE, "Happiness"), (AFFECTNET_TABLE, "Happy"),
                                          (AFFECTNET_6, "Happy")])
def test_each_seed_table_names_and_orders_the_classes(shipped_onnx, table, happy):
    frame = cv2.imread(str(DATA / "obama-480p.jpg"))
    full = ExpressionClassifier(shipped_onnx)
    chosen = ExpressionClassifier(shipped_onnx, table)
    names = list(table.values()) if isinstance(table, dict) else table
    assert chosen.labels == names and chosen.express_table == names
    box = CV2FaceDetector().detect(frame)[0]
    crop = full.crop(frame, box)
    everything, picked = full.predict([crop])[0], chosen.predict([crop])[0]
    # the table's classes, in its order, renormalized over them (as the seed did)
    synonyms = {"Happy": "Happiness", "Sad": "Sadness"}
    columns = [full.labels.index(synonyms.get(n, n)) for n in names]
    np.testing.assert_allclose(picked, everything[columns] / everything[columns].sum(), rtol=1e-5)
    assert chosen.labels[int(picked.argmax())] == happy
    out = BatchSolver(CV2FaceDetector(), full, "cpu", table, batch_size=32).solve([(3, frame)])
    assert out["Class"] == [happy] and len(out["Vector"][0]) == len(names)


def test_the_seeds_two_argument_classifier_runs_video(shipped_onnx, clip):
    # `ExpressionClassifier(model, table)`: the table is the table (it once became the smoother)
    solver = VideoSolver(CV2FaceDetector(), ExpressionClassifier(shipped_onnx, RAFDB_TABLE))
    solver.start(clip)
    results, frame = solver.get_solved_frame()
    assert frame is not None and results[0]["label"] == "Happiness"
    solver.close()


def test_the_seeds_fps_is_a_frame_step(shipped_onnx, clip):
    every = VideoSolver(CV2FaceDetector(), ExpressionClassifier(shipped_onnx)).start(clip)
    third = VideoSolver(CV2FaceDetector(), ExpressionClassifier(shipped_onnx), 3).start(clip)
    assert sum(1 for _ in every) == 40 and sum(1 for _ in third) == 13  # frames 3, 6, ... 39
    with pytest.raises(ValueError, match="fps .* must be an integer >= 1"):
        VideoSolver(CV2FaceDetector(), ExpressionClassifier(shipped_onnx), 0)


@pytest.mark.parametrize("call, message", [
    (lambda m: ExpressionClassifier(m, ["Happy", "Contempt"]), "names 'Contempt', a class the model .* lacks"),
    (lambda m: ExpressionClassifier(m, {1: "Happy"}), "keys must be 0 to 0"),
    (lambda m: ExpressionClassifier(m, None, None, None, "cuda:0"), "runs on the CPU only"),
    (lambda m: BatchSolver(CV2FaceDetector(), ExpressionClassifier(m), "cuda"), "runs on the CPU only"),
    (lambda m: ExpressionClassifier(m, None, None, lambda face: face), "leave preprocesser out"),
    (lambda m: BatchSolver(CV2FaceDetector(), ExpressionClassifier(m), "cpu", None, 0), "batch_size must be"),
])
def test_what_the_runtime_cannot_do_is_one_clear_error(shipped_onnx, call, message):
    with pytest.raises(ValueError, match=message) as error:
        call(shipped_onnx)
    assert "\n" not in str(error.value)


def test_a_smoother_in_the_tables_place_is_a_clear_type_error(shipped_onnx):
    from runtime import LinearExponentialSmoothing

    with pytest.raises(TypeError, match="express_table must be a list of class names or a dict"):
        ExpressionClassifier(shipped_onnx, LinearExponentialSmoothing(0.3))


def test_the_seeds_cascade_path_falls_back_to_opencvs_copy_only_for_that_path(tmp_path):
    assert len(CV2FaceDetector("ckpt/haarcascade_frontalface_default.xml").detect(
        cv2.imread(str(DATA / "obama-480p.jpg")))) == 1
    assert len(CV2FaceDetector(model_para_dir=str(tmp_path / "ckpt" / "haarcascade_frontalface_default.xml"))
               .detect(cv2.imread(str(DATA / "obama-480p.jpg")))) == 1
    with pytest.raises(FileNotFoundError, match="Haar cascade not found"):
        CV2FaceDetector(tmp_path / "my_cascade.xml")


def test_the_seed_script_is_the_readmes_text():
    # the calls above are the seed README's own lines, where it is beside the project
    seed = ROOT.parent / "shared" / "seed" / "README.zh.md"
    if not seed.is_file():
        pytest.skip("the seed's README is not at ../shared/seed")
    text = seed.read_text()
    for line in ("detector = CV2FaceDetector('ckpt/haarcascade_frontalface_default.xml')",
                 'affectnet_table = {0:"Happy", 1:"Sad", 2:"Surprise", 3:"Fear", 4:"Disgust", 5:"Anger"}',
                 "classifier = ExpressionClassifier(model, affectnet_table, smoother)",
                 "vid_solver = VideoSolver(detector, classifier)",
                 "vizor = Visualizer(label_table=classifier.express_table)"):
        assert line in text and line in textwrap.dedent(SEED_SCRIPT)
