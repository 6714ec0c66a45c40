"""Face-expression data sets, all mapped into one label table (see `training.labels`).

Every loader yields `FaceDataset`s: images as uint8 arrays (gray HxW or BGR HxWx3), a soft target
vector per image (a vote distribution, or one-hot), and the hard label used for evaluation.
`load_dataset("ferplus:PATH", "train", labels)` picks the loader from the spec's prefix. Reading needs no torch
(the checks on emulated CPUs read FER2013Test in the runtime-only environment); a FaceDataset is a map-style
data set for torch's DataLoader.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
from runtime.progress import progress

from .labels import canonical_label, index_map

SPLITS = ("train", "valid", "test")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
HOLDOUT_EVERY = 10  # data sets without a validation split keep every 10th training item for it


class DatasetError(ValueError):
    """A data set that cannot be read; the message says what is wrong and where."""


class FaceDataset:
    """Images (or lazy references to them), soft targets and hard labels for one split."""

    def __init__(self, items: Sequence, targets: np.ndarray, hard_labels: np.ndarray,
                 read: Callable[[object], np.ndarray], name: str = ""):
        if len(items) == 0:
            raise DatasetError(f"{name}: no usable images found")
        self.items, self.read, self.name = items, read, name
        self.targets = targets.astype(np.float32)
        self.hard_labels = hard_labels.astype(np.int64)
        self.transform: Callable | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        import torch

        image = self.read(self.items[i])
        if self.transform is not None:
            image = self.transform(image)
        return image, torch.from_numpy(self.targets[i])

    def subset(self, indices: Sequence[int]) -> "FaceDataset":
        """A new data set holding only `indices` (same reader)."""
        indices = np.asarray(indices, dtype=np.int64)
        items = self.items[indices] if isinstance(self.items, np.ndarray) else [self.items[i] for i in indices]
        return FaceDataset(items, self.targets[indices], self.hard_labels[indices], self.read, self.name)


def _identity(image: np.ndarray) -> np.ndarray:
    return image


def _read_image(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f"cannot read image {path}")
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _read_crop(item) -> np.ndarray:
    path, (x, y, w, h) = item
    image = _read_image(path)
    H, W = image.shape[:2]
    x0, y0 = max(0, int(x)), max(0, int(y))
    x1, y1 = min(W, int(x + w)), min(H, int(y + h))
    if x1 <= x0 or y1 <= y0:
        raise DatasetError(f"face box {(x, y, w, h)} lies outside {path} ({W}x{H})")
    return image[y0:y1, x0:x1]


def _one_hot(hard: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[hard]


def _holdout(n: int, split: str) -> np.ndarray:
    """Deterministic train/valid split of n items: every HOLDOUT_EVERY-th item is validation."""
    is_valid = np.arange(n) % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
    return np.flatnonzero(is_valid if split == "valid" else ~is_valid)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetError(f"{what} not found: {path}")
    return path


def _from_hard(items: list, source_labels: list[int], source_names: list[str],
               labels: list[str], name: str, read: Callable) -> FaceDataset:
    """Build a one-hot data set from source label indices, dropping classes the table lacks."""
    mapping = index_map(source_names, labels)
    keep = [i for i, s in enumerate(source_labels) if 0 <= s < len(mapping) and mapping[s] >= 0]
    hard = np.array([mapping[source_labels[i]] for i in keep], dtype=np.int64)
    kept_items = [items[i] for i in keep]
    if items and isinstance(items[0], np.ndarray):
        kept_items = np.stack(kept_items) if kept_items else np.zeros((0, 48, 48), np.uint8)
    return FaceDataset(kept_items, _one_hot(hard, len(labels)), hard, read, name)


# --- FER+ ---------------------------------------------------------------------------------
FERPLUS_COLUMNS = ["Neutral", "Happiness", "Surprise", "Sadness", "Anger", "Disgust", "Fear",
                   "Contempt", "Unknown", "NF"]
FERPLUS_FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}


def ferplus_label_rows(folder: Path) -> list[list[str]]:
    """The rows of a FER+ split folder's label.csv (file name, box, ten vote counts), checked."""
    label_csv = _require(folder / "label.csv", "FER+ label file")
    with open(label_csv, newline="") as f:
        rows = list(csv.reader(f))
    for row in rows:
        if len(row) != 12:
            raise DatasetError(f"{label_csv}: expected 12 columns, got {len(row)} in {row[:2]}")
    return rows


def load_ferplus(root: str | os.PathLike, split: str, labels: list[str]) -> FaceDataset:
    """FER+ official layout, or a pack of it (`python -m training.pack data`, a `.npz` file). Soft targets =
    votes over the table's classes; hard label = the majority of all ten vote columns (first wins a tie), rows
    whose winner is not in the table (contempt for 7 classes, unknown, not-a-face) dropped."""
    if str(root).endswith(".npz"):
        from .pack import read_packed_ferplus

        _require(Path(root), "FER+ pack")
        faces, votes = read_packed_ferplus(root, split)
        read = lambda i: faces[i]  # noqa: E731
    else:
        folder = Path(root) / FERPLUS_FOLDERS[split]
        rows = ferplus_label_rows(folder)
        votes = np.array([row[2:] for row in rows], dtype=np.float32)
        read = lambda i: cv2.imread(str(folder / rows[i][0]), cv2.IMREAD_GRAYSCALE)  # noqa: E731
    mapping = np.array(index_map(FERPLUS_COLUMNS, labels))
    images, targets, hard = [], [], []
    for i in progress(range(len(votes)), desc=f"FER+ {split}", enabled=len(votes) >= 1000, leave=False):
        winner = mapping[int(np.argmax(votes[i]))]
        if winner < 0:
            continue
        target = np.zeros(len(labels), np.float32)
        np.add.at(target, mapping[mapping >= 0], votes[i][mapping >= 0])
        image = read(i)
        if image is None:
            raise DatasetError(f"cannot read image {folder / rows[i][0]}")
        images.append(image)
        targets.append(target / target.sum())
        hard.append(winner)
    return FaceDataset(np.stack(images), np.stack(targets), np.array(hard), _identity, f"ferplus:{split}")


# --- FER2013 (Kaggle CSV) -------------------------------------------------------------------
FER2013_NAMES = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
FER2013_USAGE = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}


def load_fer2013(path: str | os.PathLike, split: str, labels: list[str]) -> FaceDataset:
    """FER2013 CSV (`emotion,pixels,Usage`); `path` is the CSV or a folder holding fer2013.csv."""
    path = Path(path)
    csv_path = _require(path / "fer2013.csv" if path.is_dir() else path, "FER2013 CSV")
    images, source = [], []
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{csv_path}: missing columns {sorted(missing)}")
        for row in reader:
            if row["Usage"] != FER2013_USAGE[split]:
                continue
            pixels = np.array(row["pixels"].split(), dtype=np.uint8)
            if pixels.size != 48 * 48:
                raise DatasetError(f"{csv_path}: a row has {pixels.size} pixels, expected 2304")
            images.append(pixels.reshape(48, 48))
            source.append(int(row["emotion"]))
    return _from_hard(images, source, FER2013_NAMES, labels, f"fer2013:{split}", _identity)


# --- RAF-DB (basic) -------------------------------------------------------------------------
RAFDB_NAMES = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]


def load_rafdb(root: str | os.PathLike, split: str, labels: list[str]) -> FaceDataset:
    """RAF-DB basic: EmoLabel/list_patition_label.txt (labels 1..7), Image/aligned/*_aligned.jpg.
    RAF-DB has no validation split: every 10th training image is held out for it."""
    root = Path(root)
    list_file = _require(root / "EmoLabel" / "list_patition_label.txt", "RAF-DB label list")
    prefix = "test" if split == "test" else "train"
    items, source = [], []
    for line in list_file.read_text().split("\n"):
        if not line.strip():
            continue
        name, label = line.split()
        if name.startswith(prefix):
            stem = Path(name).stem
            items.append(root / "Image" / "aligned" / f"{stem}_aligned.jpg")
            source.append(int(label) - 1)
    if split != "test":
        keep = _holdout(len(items), split)
        items, source = [items[i] for i in keep], [source[i] for i in keep]
    return _from_hard(items, source, RAFDB_NAMES, labels, f"rafdb:{split}", _read_image)


# --- AffectNet ------------------------------------------------------------------------------
AFFECTNET_NAMES = ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"]


def load_affectnet(root: str | os.PathLike, split: str, labels: list[str]) -> FaceDataset:
    """AffectNet: training.csv / validation.csv with face boxes; expressions 8..10 dropped.
    The official validation set is the test split; every 10th training row is validation."""
    root = Path(root)
    csv_path = _require(root / ("validation.csv" if split == "test" else "training.csv"), "AffectNet CSV")
    image_root = root / "Manually_Annotated_Images"
    image_root = image_root if image_root.is_dir() else root
    items, source = [], []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            box = tuple(int(float(row[k])) for k in ("face_x", "face_y", "face_width", "face_height"))
            items.append((image_root / row["subDirectory_filePath"], box))
            source.append(int(row["expression"]))
    if split != "test":
        keep = _holdout(len(items), split)
        items, source = [items[i] for i in keep], [source[i] for i in keep]
    return _from_hard(items, source, AFFECTNET_NAMES, labels, f"affectnet:{split}", _read_crop)


# --- plain class folders --------------------------------------------------------------------
def load_folder(root: str | os.PathLike, split: str, labels: list[str]) -> FaceDataset:
    """`root/<class>/*.jpg`, or `root/{train,val,test}/<class>/*.jpg` when those folders exist.
    Class names are matched case-insensitively (happy/happiness, angry/anger, ...). Without split
    folders, every 10th image is validation and the test split is the validation one."""
    root = Path(root)
    _require(root, "image folder")
    split_dirs = {"train": "train", "valid": "val", "test": "test"}
    has_splits = (root / "train").is_dir()
    base = root / split_dirs[split] if has_splits else root
    if has_splits and split == "valid" and not base.is_dir():
        base = root / "valid"
    _require(base, f"{split} folder")
    items, source = [], []
    for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        canon = canonical_label(class_dir.name)
        if canon not in labels:
            continue
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                items.append(path)
                source.append(labels.index(canon))
    if not has_splits:
        order = np.argsort([str(p) for p in items], kind="stable")
        keep = order[_holdout(len(items), "valid" if split == "test" else split)]
        items, source = [items[i] for i in keep], [source[i] for i in keep]
    return _from_hard(items, source, labels, labels, f"folder:{split}", _read_image)


LOADERS = {"ferplus": load_ferplus, "fer2013": load_fer2013, "rafdb": load_rafdb,
           "affectnet": load_affectnet, "folder": load_folder}


def load_dataset(spec: str, split: str, labels: list[str]) -> FaceDataset:
    """Load `split` of a data set given as `KIND:PATH`, e.g. `ferplus:../shared/datasets/ferplus`."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in LOADERS or not path:
        raise DatasetError(f"data set {spec!r} must be KIND:PATH with KIND one of {sorted(LOADERS)}")
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {SPLITS}, got {split!r}")
    return LOADERS[kind](path, split, labels)
