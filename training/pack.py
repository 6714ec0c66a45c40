"""Pack what a training run needs into small files, to carry it to another machine (a lent GPU).

    python -m training.pack data --ferplus ../shared/datasets/ferplus --out .gpu/ferplus.npz
    python -m training.pack weights --arch efficientnet_lite2 --out .gpu/lite2_imagenet.pth
    python -m training.pack half runs/teacher/best.pth teacher.fp16.pth

`data`: FER+ splits as WebP mosaics of 32x32 faces plus every label row's ten vote counts, in one npz with
no pickled objects; `ferplus:.gpu/ferplus.npz` then loads exactly like the folder (same rows, same targets),
up to the lossy compression (quality 85: a mean error of about 2 grey levels). `weights`: an installed ImageNet
state dict renamed onto timm's keys, without the 1000-class head, in half precision (about a third of the size);
`--pretrained` loads it like the original. `half`: a training checkpoint with its weights in half precision
(half the size; loading casts them back), to carry a teacher back.
"""
from __future__ import annotations

if __name__ == "__main__":  # `python -m training.pack` in a runtime-only install: one line, not a traceback
    from training.launch import exit_without_torch
    exit_without_torch("python -m training.pack")

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

MOSAIC = 32  # faces per mosaic side
FACE = 48


def pack_ferplus(root: str | Path, out: str | Path, splits: list[str], quality: int = 85) -> tuple[int, float]:
    """Write the FER+ `splits` to `out` (npz); returns the bytes written and the faces' mean absolute error after
    compression (grey levels)."""
    from .datasets import FERPLUS_FOLDERS, DatasetError, ferplus_label_rows

    arrays: dict[str, np.ndarray] = {}
    error_sum, pixels = 0.0, 0
    for split in splits:
        folder = Path(root) / FERPLUS_FOLDERS[split]
        rows = ferplus_label_rows(folder)
        faces = np.zeros((len(rows), FACE, FACE), np.uint8)
        for i, row in enumerate(rows):
            image = cv2.imread(str(folder / row[0]), cv2.IMREAD_GRAYSCALE)
            if image is None or image.shape != (FACE, FACE):
                raise DatasetError(f"cannot read a 48x48 grey image {folder / row[0]}")
            faces[i] = image
        chunks = [encode_mosaic(faces[i:i + MOSAIC * MOSAIC], quality) for i in range(0, len(faces), MOSAIC ** 2)]
        decoded = np.concatenate([decode_mosaic(chunk) for chunk in chunks])[:len(faces)]
        error_sum, pixels = error_sum + np.abs(decoded.astype(np.int32) - faces).sum(), pixels + faces.size
        arrays[f"{split}_mosaics"] = np.concatenate(chunks)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(c) for c in chunks])
        arrays[f"{split}_votes"] = np.array([r[2:] for r in rows], dtype=np.uint8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out)
    return out.stat().st_size, error_sum / max(1, pixels)


def encode_mosaic(faces: np.ndarray, quality: int) -> np.ndarray:
    """Up to MOSAIC^2 48x48 faces as one WebP image (bytes)."""
    grid = np.zeros((MOSAIC * MOSAIC, FACE, FACE), np.uint8)
    grid[:len(faces)] = faces
    image = grid.reshape(MOSAIC, MOSAIC, FACE, FACE).transpose(0, 2, 1, 3).reshape(MOSAIC * FACE, MOSAIC * FACE)
    ok, buffer = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode WebP")
    return buffer.reshape(-1)


def read_packed_ferplus(path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(faces [N, 48, 48] uint8, votes [N, 10]) of one split of a pack written by `pack_ferplus`."""
    from .datasets import DatasetError

    with np.load(path, allow_pickle=False) as pack:
        if f"{split}_votes" not in pack:
            raise DatasetError(f"{path} holds no {split} split (packed: "
                               f"{', '.join(k[:-6] for k in pack if k.endswith('_votes'))})")
        mosaics, offsets, votes = pack[f"{split}_mosaics"], pack[f"{split}_offsets"], pack[f"{split}_votes"]
    faces = [decode_mosaic(mosaics[start:end]) for start, end in zip(offsets[:-1], offsets[1:])]
    return np.concatenate(faces)[:len(votes)], votes.astype(np.float32)


def decode_mosaic(buffer: np.ndarray) -> np.ndarray:
    """The MOSAIC^2 48x48 faces [N, 48, 48] of one encoded mosaic."""
    image = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE)
    return image.reshape(MOSAIC, FACE, MOSAIC, FACE).transpose(0, 2, 1, 3).reshape(-1, FACE, FACE)


def pack_imagenet_weights(arch: str, out: str | Path) -> int:
    """The installed ImageNet weights of `arch` on timm's keys, head dropped, fp16; returns the bytes written."""
    import torch

    from .model import _renamed_in_order, build_model, imagenet_weights

    own = build_model(arch, 1000, 3, 2).state_dict()
    state = _renamed_in_order(torch.load(imagenet_weights(arch), map_location="cpu", weights_only=True), own)
    return _save_half({k: v for k, v in state.items() if not k.startswith("classifier.")}, out)


def half_checkpoint(path: str | Path, out: str | Path) -> int:
    """A copy of a training checkpoint (weights and metadata only) with its floating-point weights in fp16."""
    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    return _save_half(ckpt["model"], out, meta=ckpt["meta"])


def _save_half(state: dict, out: str | Path, **extra) -> int:
    """Write `state` with its floating-point tensors in fp16 (under "model" when `extra` is given), atomically;
    returns the bytes written."""
    import torch

    state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save({"model": state, **extra} if extra else state, tmp)
    tmp.replace(out)
    return out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("data", help="FER+ splits into one npz")
    d.add_argument("--ferplus", default="../shared/datasets/ferplus", help="FER+ in its official layout")
    d.add_argument("--splits", nargs="+", default=["train", "valid"], choices=["train", "valid", "test"])
    d.add_argument("--quality", type=int, default=85, help="WebP quality, 1-100 (101: lossless, ~2x larger)")
    d.add_argument("--out", required=True)
    w = sub.add_parser("weights", help="ImageNet weights, fp16, headless")
    w.add_argument("--arch", required=True)
    w.add_argument("--out", required=True)
    h = sub.add_parser("half", help="a training checkpoint in half precision")
    h.add_argument("checkpoint")
    h.add_argument("out")
    args = p.parse_args(argv)
    from .checkpoint import CheckpointError
    from .datasets import DatasetError

    try:
        if args.what == "data":
            size, error = pack_ferplus(args.ferplus, args.out, args.splits, args.quality)
            print(f"faces after compression: a mean error of {error:.2f} grey levels")
        elif args.what == "weights":
            size = pack_imagenet_weights(args.arch, args.out)
        else:
            size = half_checkpoint(args.checkpoint, args.out)
    except (DatasetError, CheckpointError, ValueError) as exc:
        print(f"training.pack: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
