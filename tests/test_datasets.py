"""Each loader on small files written in the real format."""
from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

pytest.importorskip("torch", reason="needs torch (the train extra: pip install -e '.[train]')")

from training.datasets import DatasetError, load_dataset  # noqa: E402
from training.labels import LABELS_7, LABELS_8, canonical_label  # noqa: E402

from .conftest import write_class_folder


def _face(value: int, size=48, color=False) -> np.ndarray:
    image = np.full((size, size), value, np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if color else image


def test_ferplus_soft_targets_and_majority(tmp_path):
    folder = tmp_path / "FER2013Test"
    folder.mkdir()
    # columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
    rows = [("a.png", [6, 4, 0, 0, 0, 0, 0, 0, 0, 0]),   # Neutral, soft 0.6/0.4
            ("b.png", [0, 0, 5, 0, 0, 0, 5, 0, 0, 0]),   # tie surprise/fear: first column (surprise) wins
            ("c.png", [1, 0, 0, 0, 0, 0, 0, 8, 1, 0]),   # contempt wins: dropped for 7 classes
            ("d.png", [0, 0, 0, 0, 0, 0, 0, 0, 2, 8])]   # not a face: dropped
    with open(folder / "label.csv", "w", newline="") as f:
        for name, votes in rows:
            csv.writer(f).writerow([name, "(0, 0, 48, 48)", *votes])
            cv2.imwrite(str(folder / name), _face(100))
    ds = load_dataset(f"ferplus:{tmp_path}", "test", LABELS_7)
    assert len(ds) == 2
    assert [LABELS_7[i] for i in ds.hard_labels] == ["Neutral", "Surprise"]
    np.testing.assert_allclose(ds.targets[0][[LABELS_7.index("Neutral"), LABELS_7.index("Happiness")]], [0.6, 0.4])
    np.testing.assert_allclose(ds.targets.sum(1), 1, rtol=1e-6)
    image, target = ds[0]
    assert image.shape == (48, 48) and image.dtype == np.uint8 and target.shape == (7,)
    ds8 = load_dataset(f"ferplus:{tmp_path}", "test", LABELS_8)
    assert [LABELS_8[i] for i in ds8.hard_labels] == ["Neutral", "Surprise", "Contempt"]


def test_fer2013_csv(tmp_path):
    path = tmp_path / "fer2013.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for emotion, usage in [(0, "Training"), (3, "Training"), (5, "PublicTest"), (6, "PrivateTest")]:
            w.writerow([emotion, " ".join(["7"] * 2304), usage])
    train = load_dataset(f"fer2013:{path}", "train", LABELS_7)
    assert [LABELS_7[i] for i in train.hard_labels] == ["Anger", "Happiness"]
    assert [LABELS_7[i] for i in load_dataset(f"fer2013:{tmp_path}", "valid", LABELS_7).hard_labels] == ["Surprise"]
    assert train[0][0].shape == (48, 48)


def test_rafdb(tmp_path):
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "Image" / "aligned").mkdir(parents=True)
    lines = [f"train_{i:05d}.jpg {1 + i % 7}" for i in range(1, 21)] + ["test_0001.jpg 4", "test_0002.jpg 7"]
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        stem = line.split()[0][:-4]
        cv2.imwrite(str(tmp_path / "Image" / "aligned" / f"{stem}_aligned.jpg"), _face(90, 100, color=True))
    test = load_dataset(f"rafdb:{tmp_path}", "test", LABELS_7)
    assert [LABELS_7[i] for i in test.hard_labels] == ["Happiness", "Neutral"]
    train, valid = (load_dataset(f"rafdb:{tmp_path}", s, LABELS_7) for s in ("train", "valid"))
    assert len(train) + len(valid) == 20 and len(valid) == 2
    assert train[0][0].shape == (100, 100, 3)


def test_affectnet_crops_and_drops(tmp_path):
    images = tmp_path / "Manually_Annotated_Images" / "1"
    images.mkdir(parents=True)
    cv2.imwrite(str(images / "x.jpg"), _face(120, 200, color=True))
    header = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
              "expression", "valence", "arousal"]
    with open(tmp_path / "validation.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for expression in (1, 6, 7, 8, 10):  # Happy, Anger, Contempt, None, Not a face
            w.writerow(["1/x.jpg", 20, 30, 100, 120, "", expression, 0, 0])
    test = load_dataset(f"affectnet:{tmp_path}", "test", LABELS_7)
    assert [LABELS_7[i] for i in test.hard_labels] == ["Happiness", "Anger"]
    assert test[0][0].shape == (120, 100, 3)
    assert len(load_dataset(f"affectnet:{tmp_path}", "test", LABELS_8)) == 3


def test_class_folder_names_matched(tmp_path):
    write_class_folder(tmp_path, per_class=10)
    train = load_dataset(f"folder:{tmp_path}", "train", LABELS_7)
    valid = load_dataset(f"folder:{tmp_path}", "valid", LABELS_7)
    assert len(train) + len(valid) == 70
    assert set(np.unique(np.concatenate([train.hard_labels, valid.hard_labels]))) == set(range(7))
    assert canonical_label("HAPPY") == "Happiness" and canonical_label("angry") == "Anger"


def test_class_folder_unknown_name(tmp_path):
    (tmp_path / "bored").mkdir()
    with pytest.raises(ValueError, match="unknown expression class 'bored'"):
        load_dataset(f"folder:{tmp_path}", "train", LABELS_7)


def test_bad_specs(tmp_path):
    with pytest.raises(DatasetError, match="KIND:PATH"):
        load_dataset("imagenet:/x", "train", LABELS_7)
    with pytest.raises(DatasetError, match="FER\\+ label file not found"):
        load_dataset(f"ferplus:{tmp_path}", "train", LABELS_7)


def test_ferplus_pack_loads_like_the_folder(tmp_path):
    """`python -m training.pack data` (what travels to a lent GPU) gives the folder's rows and targets, and faces
    within the WebP loss."""
    from training.pack import main as pack_main

    folder = tmp_path / "ferplus" / "FER2013Train"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(folder / "label.csv", "w", newline="") as f:
        for i in range(1030):  # more than one 32x32 mosaic
            votes = rng.multinomial(10, [0.3, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.03, 0.02])
            csv.writer(f).writerow([f"{i}.png", "(0, 0, 48, 48)", *votes])
            face = cv2.GaussianBlur(rng.integers(0, 256, (48, 48), dtype=np.uint8), (7, 7), 2) + (i % 50)
            cv2.imwrite(str(folder / f"{i}.png"), face)
    pack = tmp_path / "pack" / "ferplus.npz"
    assert pack_main(["data", "--ferplus", str(tmp_path / "ferplus"), "--splits", "train", "--out", str(pack)]) == 0
    for labels in (LABELS_7, LABELS_8):
        plain, packed = (load_dataset(f"ferplus:{p}", "train", labels) for p in (tmp_path / "ferplus", pack))
        assert len(packed) == len(plain) > 900
        np.testing.assert_array_equal(packed.hard_labels, plain.hard_labels)
        np.testing.assert_array_equal(packed.targets, plain.targets)
        error = np.abs(packed.items.astype(int) - plain.items.astype(int))
        assert error.mean() < 4 and packed.items.dtype == np.uint8 and packed.items.shape[1:] == (48, 48)
    with pytest.raises(DatasetError, match="holds no valid split"):
        load_dataset(f"ferplus:{pack}", "valid", LABELS_7)
    assert pack_main(["data", "--ferplus", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.npz")]) == 2
    assert not (tmp_path / "x.npz").exists()
