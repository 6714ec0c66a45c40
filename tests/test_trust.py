"""Readings a user can trust: calibrated probabilities (the model's temperature), head pose from YuNet's landmarks,
and the quality score and reliable flag of every face, with `--min-quality` in fer-camera."""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from runtime import ExpressionClassifier
from runtime.classifier import softmax
from runtime.detectors import YuNetFaceDetector
from runtime.mqtt import ExpressionEvents
from runtime.pipeline import FramePipeline
from runtime.pose import FACE_POINTS, camera_matrix, head_pose
from runtime.quality import RELIABLE_QUALITY, face_quality, sharpness
from runtime.smoothing import LinearExponentialSmoothing
from runtime.visualizer import PALETTE, dimmed, draw_faces
from training.calibration import expected_calibration_error, fit_temperature, reliability

from .conftest import ROOT, SHIPPED_INT8, SHIPPED_ONNX


# calibration -------------------------------------------------------------------------------------------------------

def test_reliability_table_and_ece_by_hand():
    """Ten faces at 0.95 of which nine are right, ten at 0.55 of which five are: ECE = (0.05 + 0.05) / 2."""
    p = np.zeros((20, 3))
    p[:10] = [0.95, 0.03, 0.02]
    p[10:] = [0.55, 0.40, 0.05]
    truth = np.array([0] * 9 + [1] + [0] * 5 + [1] * 5)
    table = reliability(p, truth)
    assert table.count[14] == 10 and table.count[8] == 10 and sum(table.count) == 20
    assert table.accuracy[14] == pytest.approx(0.9) and table.accuracy[8] == pytest.approx(0.5)
    assert table.ece == pytest.approx(0.05) == expected_calibration_error(p, truth)


def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20000, 7))
    z = np.exp(logits / 0.6 - (logits / 0.6).max(1, keepdims=True))
    p = z / z.sum(1, keepdims=True)
    truth = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)
    assert fit_temperature(logits, truth) == pytest.approx(0.6, abs=0.03)


@pytest.mark.parametrize("model", [SHIPPED_ONNX, SHIPPED_INT8])
def test_the_runtime_applies_the_models_temperature(model):
    """softmax(logits / T) with the metadata's T (< 1: the model was underconfident); the top label never moves."""
    classifier = ExpressionClassifier(model)
    temperature = classifier.metadata.temperature
    assert 0.3 < temperature < 1.0
    faces = [cv2.imread(str(ROOT / "tests" / "data" / "obama-480p.jpg"))[51:173, 381:503],
             np.random.default_rng(0).integers(0, 255, (72, 72), dtype=np.uint8)]
    logits = classifier.logits(faces)
    calibrated = classifier.predict(faces)
    np.testing.assert_allclose(calibrated, softmax(logits / temperature), rtol=1e-5, atol=1e-6)
    assert (calibrated.argmax(1) == logits.argmax(1)).all()
    assert calibrated.max(1)[0] > softmax(logits).max(1)[0]  # sharper than before


@pytest.mark.parametrize("model, ece_before", [(SHIPPED_ONNX, 0.10), (SHIPPED_INT8, 0.17)])
def test_shipped_models_are_calibrated_on_ferplus_test(ferplus, tmp_path, model, ece_before):
    """`fer-eval --calibration` on all of FER2013Test: the ECE before (temperature 1) and after the shipped
    temperature, as the model card gives them; the accuracy as before; the reliability diagram written."""
    from training.eval import main

    out = tmp_path / "eval"
    assert main(["--model", str(model), "--data", f"ferplus:{ferplus}", "--calibration", "--out", str(out)]) == 0
    report = json.loads((out / "metrics.json").read_text())
    before, after = report["calibration"].values()
    assert before["ece"] > ece_before and after["ece"] < 0.025
    assert report["accuracy"] > 0.84
    if importlib.util.find_spec("matplotlib"):
        assert cv2.imread(str(out / "reliability.png")) is not None


def test_calibrate_fits_on_valid_writes_a_copy_and_never_the_input(ferplus, tmp_path):
    pytest.importorskip("onnx", reason="export.calibrate writes ONNX files: the train extra")
    from export.calibrate import main

    digest = hashlib.sha256(SHIPPED_ONNX.read_bytes()).hexdigest()
    done = subprocess.run([sys.executable, "-m", "export.calibrate", "--model", str(SHIPPED_ONNX), "--data",
                           f"ferplus:{ferplus}", "--output", str(SHIPPED_ONNX)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("is the input model; give another file (it is never overwritten)")
    copy = tmp_path / "again.onnx"
    assert main(["--model", str(SHIPPED_ONNX), "--data", f"ferplus:{ferplus}", "--output", str(copy)]) == 0
    assert hashlib.sha256(SHIPPED_ONNX.read_bytes()).hexdigest() == digest
    # the shipped model is already calibrated: fitting again on its calibrated logits... is done on raw logits,
    # so the same temperature comes out
    assert ExpressionClassifier(copy).metadata.temperature == pytest.approx(
        ExpressionClassifier(SHIPPED_ONNX).metadata.temperature, abs=0.002)


# head pose ---------------------------------------------------------------------------------------------------------

def _projected(yaw: float, pitch: float, roll: float, shape=(480, 640)) -> np.ndarray:
    """The generic face's five points seen by `camera_matrix(shape)`, the head turned by these viewer's angles."""
    ry, rx, rz = np.radians([-yaw, -pitch, roll])
    rot_x = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
    rot_y = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
    rot_z = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    rvec = cv2.Rodrigues(rot_z @ rot_x @ rot_y)[0]  # runtime.pose: yaw, then pitch, then roll in the image plane
    points, _ = cv2.projectPoints(FACE_POINTS, rvec, np.array([0.0, 0.0, 700.0]), camera_matrix(shape), None)
    return points.reshape(5, 2)


@pytest.mark.parametrize("yaw, pitch, roll", [(0, 0, 0), (30, 0, 0), (-30, 0, 0), (0, 20, 0), (0, -20, 0), (40, 15, 0),
                                             (-25, -10, 20), (20, 10, 90), (-30, 5, 180)])
def test_head_pose_of_the_generic_face_turned_by_known_angles(yaw, pitch, roll):
    pose = head_pose(_projected(yaw, pitch, roll), (480, 640))
    assert pose.yaw == pytest.approx(yaw, abs=1.5) and pose.pitch == pytest.approx(pitch, abs=1.5)
    assert pose.roll == pytest.approx(roll, abs=1.5) and pose.turned_away() == max(abs(pose.yaw), abs(pose.pitch))


def _turned(image: np.ndarray, degrees: float) -> np.ndarray:
    from benchmarks.photos import turned

    return turned(image, degrees)


def test_head_pose_on_real_faces_roll_exact_and_yaw_by_its_sign(media, yunet_model):
    """The portrait turned by known angles gives the roll it was turned by (within 3 degrees) and about the same yaw;
    a face mirrored gives the opposite yaw; a frontal portrait faces the camera."""
    pipeline = FramePipeline(YuNetFaceDetector(yunet_model), ExpressionClassifier(), photos=True, largest_only=True)
    portrait = cv2.imread(str(media / "obama-480p.jpg"))
    upright = pipeline.solve_batch([portrait])[0][0]
    assert abs(upright["yaw"]) < 10 and abs(upright["pitch"]) < 15 and abs(upright["roll"]) < 5
    for degrees in (15, -30, 90, 180):
        r = pipeline.solve_batch([_turned(portrait, degrees)])[0][0]
        # turned counter-clockwise by `degrees`: the roll (clockwise positive) goes down by as much
        assert (r["roll"] - upright["roll"] + degrees + 180) % 360 - 180 == pytest.approx(0, abs=3), degrees
        assert abs(r["yaw"] - upright["yaw"]) < 12  # measured: up to 10 degrees (the landmarks move, not the head)
    two = cv2.imread(str(media / "two_people.jpg"))
    every_face = FramePipeline(YuNetFaceDetector(yunet_model), ExpressionClassifier(), photos=True)
    turned_face = max(every_face.solve_batch([two])[0], key=lambda r: abs(r["yaw"]))
    assert abs(turned_face["yaw"]) > 15
    mirrored = every_face.solve_batch([two[:, ::-1].copy()])[0]
    mirrored_face = max(mirrored, key=lambda r: abs(r["yaw"]))
    assert np.sign(mirrored_face["yaw"]) == -np.sign(turned_face["yaw"])
    assert abs(mirrored_face["yaw"] + turned_face["yaw"]) < 8


# quality -----------------------------------------------------------------------------------------------------------

def test_quality_factors():
    assert face_quality(0.9, 200, 3.0, None) == pytest.approx(0.9)  # large, sharp, pose unknown: the probability
    assert face_quality(0.9, 8, 3.0, None) == 0.0  # too small to read
    assert face_quality(0.9, 200, 0.5, None) == 0.0  # a smear
    from runtime.pose import HeadPose
    assert face_quality(0.9, 200, 3.0, HeadPose(80, 0, 0)) == 0.0  # in profile
    assert face_quality(0.9, 200, 3.0, HeadPose(20, -10, 90)) == pytest.approx(0.9)  # roll does not count


def test_sharpness_falls_with_blur_on_a_real_face():
    face = cv2.imread(str(ROOT / "tests" / "data" / "obama-480p.jpg"))[51:173, 381:503]
    values = [sharpness(cv2.GaussianBlur(face, (0, 0), s) if s else face) for s in (0, 1, 2, 4)]
    assert values == sorted(values, reverse=True) and values[0] - values[-1] > 1.0


def test_every_face_carries_its_quality_and_a_blurred_small_face_is_unreliable(media, yunet_model):
    pipeline = FramePipeline(YuNetFaceDetector(yunet_model), ExpressionClassifier(), photos=True, largest_only=True)
    portrait = cv2.imread(str(media / "obama-1080p.jpg"))
    sharp = pipeline.solve_batch([portrait])[0][0]
    assert sharp["reliable"] is True and sharp["quality"] >= RELIABLE_QUALITY and sharp["label"] == "Happiness"
    assert {"yaw", "pitch", "roll", "sharpness", "quality", "reliable"} <= set(sharp)
    json.dumps(sharp.to_dict())
    # the portrait at a tenth of its size (a face of about 35 px) blurred by sigma 2: its smile is lost (read Neutral)
    small = cv2.GaussianBlur(cv2.resize(portrait, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA), (0, 0), 2.0)
    found = pipeline.solve_batch([small])[0]
    assert found and found[0]["reliable"] is False and found[0]["quality"] < sharp["quality"]
    assert found[0]["sharpness"] < sharp["sharpness"] - 1.0


def test_smoothing_skips_unreliable_faces_only_when_asked():
    def frame(vector, reliable):
        return [{"box": (0, 0, 50, 50), "vector": np.array(vector, np.float32), "result": int(np.argmax(vector)),
                 "probability": float(max(vector)), "track_id": 1, "reliable": reliable}]

    for skip, expected in ((True, 0), (False, 1)):
        smoother = LinearExponentialSmoothing(0.5, skip_unreliable=skip)
        smoother(frame([0.9, 0.1], True))
        for _ in range(3):  # the face turns away for three frames: read as class 1, unreliable
            out = smoother(frame([0.0, 1.0], False))
        assert out[0]["result"] == expected


def test_mqtt_events_leave_out_unreliable_faces_when_asked():
    def record(t, label, reliable):
        return {"timestamp": t, "faces": [{"track_id": 3, "label": label, "probability": 0.9, "reliable": reliable}]}

    for reliable_only, kinds in ((True, ["appeared"]), (False, ["appeared", "changed"])):
        events = ExpressionEvents(hold_s=0.5, reliable_only=reliable_only)
        seen = []
        for t, label, reliable in [(0.0, "Happiness", True), (0.1, "Neutral", False), (0.4, "Neutral", False),
                                   (0.8, "Neutral", False), (1.5, "Neutral", False), (2.4, "Neutral", False)]:
            seen += [e["event"] for e in events(record(t, label, reliable))]
        assert seen == kinds  # unreliable frames keep the face present (no 'left') and its label


def test_unreliable_faces_are_drawn_dimmed():
    image = np.full((200, 300, 3), 255, np.uint8)
    results = [{"box": (20, 60, 80, 80), "result": 3, "label": "Happiness", "probability": 0.9, "reliable": True},
               {"box": (180, 60, 80, 80), "result": 3, "label": "Happiness", "probability": 0.9, "reliable": False}]
    draw_faces(image, results)
    assert tuple(image[100, 20]) == PALETTE[3]  # the left edge of each box
    assert tuple(image[100, 180]) == dimmed(PALETTE[3]) != PALETTE[3]


# fer-camera --------------------------------------------------------------------------------------------------------

def test_min_quality_leaves_unreliable_faces_out_of_summary_and_plot_but_not_json(media, tmp_path):
    """The sample clip (its three-quarter faces at frame 260 among them): --json keeps every face with its pose and
    flag; --summary holds exactly the reliable ones."""
    lines, summary = tmp_path / "f.jsonl", tmp_path / "s.csv"
    env = {**os.environ, "FER_EDGE_HOME": str(tmp_path / "models")}
    done = subprocess.run([sys.executable, "-m", "runtime.camera", "--source", str(media / "short_hamilton_clip.mp4"),
                           "--headless", "--max-frames", "300", "--min-quality", "0.6", "--json", str(lines),
                           "--summary", str(summary)], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    faces = [f for line in lines.read_text().splitlines() for f in json.loads(line)["faces"]]
    assert faces and all({"yaw", "pitch", "roll", "quality", "reliable"} <= set(f) for f in faces)
    assert all(f["reliable"] == (f["quality"] >= 0.6) for f in faces)
    unreliable = [f for f in faces if not f["reliable"]]
    assert unreliable and len(unreliable) < len(faces)
    rows = list(csv.DictReader(summary.open()))
    assert len(rows) == len(faces) - len(unreliable) and all(r["reliable"] == "1" for r in rows)
    at_260 = [f for line in lines.read_text().splitlines() if json.loads(line)["frame"] == 260
              for f in json.loads(line)["faces"]]
    assert sum(f["yaw"] < -30 for f in at_260) >= 3  # the faces turned to the image's left
