"""Export a training checkpoint to the ONNX model the runtime runs.

    python -m export.to_onnx --checkpoint ckpt/ferplus_mobilenetv3_small.pth \
        --output ckpt/ferplus_mobilenetv3_small.onnx --int8 --calib ferplus:../shared/datasets/ferplus

The graph takes `input` float32 [N, C, H, W] (dynamic N) and returns `logits` [N, classes]; labels
and preprocessing travel in the model's metadata. The export fails unless onnxruntime reproduces
torch's logits within 1e-4. `--flip-tta` builds the mirror image into the graph: it returns the log
of the mean of the face's and its mirror's class probabilities (so a softmax gives that mean), at
twice the classifier's cost.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from training.checkpoint import CheckpointError, git_commit, load_checkpoint, model_from_checkpoint
from training.datasets import DatasetError, load_dataset
from training.model import PARITY_TOLERANCE, count_mflops, count_parameters, export_onnx
from training.transforms import ModelInput


class FlipAveraged(torch.nn.Module):
    """Log of the mean class probabilities of each face and its horizontal mirror."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        probs = self.model(torch.cat([images, images.flip(3)])).softmax(1)
        # [2N, C] -> [2, N, C]: a reshape with -1 keeps the batch dynamic in the exported graph.
        return probs.reshape(2, -1, probs.shape[1]).mean(0).log()


class ExportError(RuntimeError):
    """The exported model is not faithful to the checkpoint."""


@dataclass
class ExportReport:
    path: Path
    size_bytes: int
    params: int
    mflops: float
    max_abs_diff: float


def onnx_metadata(meta: dict) -> dict[str, str]:
    """The metadata_props the runtime reads (lists as JSON)."""
    return {
        "labels": json.dumps(meta["labels"]),
        "input_size": str(meta["input_size"]),
        "channels": str(meta["channels"]),
        "mean": json.dumps(meta["mean"]),
        "std": json.dumps(meta["std"]),
        "face_margin": str(meta.get("face_margin", 0.1)),
        "arch": meta["arch"],
        "dataset": meta.get("dataset", "unknown"),
        "accuracy": str(meta.get("test_accuracy_flip" if meta.get("flip_tta") else "test_accuracy", "unknown")),
        "flip_tta": str(int(bool(meta.get("flip_tta", False)))),
        "source_commit": meta.get("source_commit") or git_commit(),
    }


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)


def export_fp32(ckpt: dict, output: Path, opset: int, sample: torch.Tensor, source: str,
                flip_tta: bool = False) -> ExportReport:
    """Export, attach metadata, check with onnx.checker and compare with torch on `sample`."""
    meta = {**ckpt["meta"], "flip_tta": flip_tta}
    model = model_from_checkpoint(ckpt, source)
    if flip_tta:
        model = FlipAveraged(model).eval()
    output.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, sample[:1], str(output), opset)
    proto = onnx.load(str(output))
    set_metadata(proto, onnx_metadata(meta))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(output))
    with torch.no_grad():
        expected = model(sample).numpy()
    got = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"]).run(None, {"input": sample.numpy()})[0]
    diff = float(np.abs(expected - got).max())
    if diff > PARITY_TOLERANCE:
        raise ExportError(f"onnxruntime differs from torch by {diff:.2e} (> {PARITY_TOLERANCE:.0e}) on {len(sample)} inputs")
    return ExportReport(output, output.stat().st_size, count_parameters(model),
                        count_mflops(model, meta["channels"], meta["input_size"]), diff)


class _Calibration:
    """onnxruntime CalibrationDataReader over a batch of preprocessed faces."""

    def __init__(self, batch: np.ndarray, chunk: int = 1):
        self.chunks = iter([batch[i:i + chunk] for i in range(0, len(batch), chunk)])

    def get_next(self):
        chunk = next(self.chunks, None)
        return None if chunk is None else {"input": chunk}


def export_int8(fp32_path: Path, output: Path, calibration: np.ndarray) -> Path:
    """Static INT8 quantization (QDQ, per-channel weights) calibrated on real faces.

    Percentile calibration (99.999th) lost the least accuracy on FER+ among MinMax, Entropy and
    Percentile (see ckpt/MODEL_CARD.md); its histograms need equal-sized batches, hence one face each.
    MinMax is the fallback when a histogram cannot be built (an activation with no range)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        options = dict(quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                       weight_type=QuantType.QInt8)
        try:
            quantize_static(str(prepared), str(output), _Calibration(calibration),
                            calibrate_method=CalibrationMethod.Percentile, **options)
        except ValueError as exc:  # histograms fail on activations with a (near) zero range
            print(f"percentile calibration failed ({exc}); using MinMax", file=sys.stderr)
            quantize_static(str(prepared), str(output), _Calibration(calibration),
                            calibrate_method=CalibrationMethod.MinMax, **options)
    proto = onnx.load(str(output))
    set_metadata(proto, {p.key: p.value for p in onnx.load(str(fp32_path)).metadata_props})
    onnx.save(proto, str(output))
    return output


def faces_batch(spec: str, split: str, count: int, meta: dict, seed: int = 0) -> np.ndarray:
    """`count` faces of a data set, preprocessed exactly as the runtime does."""
    dataset = load_dataset(spec, split, meta["labels"])
    dataset.transform = ModelInput(meta["input_size"], meta["channels"], meta["mean"], meta["std"])
    picks = np.random.default_rng(seed).permutation(len(dataset))[:count]
    return torch.stack([dataset[int(i)][0] for i in picks]).numpy()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--output", required=True, help="the fp32 .onnx file")
    p.add_argument("--int8", action="store_true", help="also write OUTPUT with .int8.onnx (needs --calib)")
    p.add_argument("--calib", help="KIND:PATH of training faces for INT8 calibration (its train split)")
    p.add_argument("--calib-count", type=int, default=500)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--flip-tta", action="store_true",
                   help="average each face with its mirror image inside the graph (2x classifier cost)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.int8 and not args.calib:
        print("fer-export: error: --int8 needs --calib KIND:PATH (about 500 training faces)", file=sys.stderr)
        return 2
    output = Path(args.output)
    try:
        ckpt = load_checkpoint(args.checkpoint)
        meta = ckpt["meta"]
        if args.calib:
            calibration = faces_batch(args.calib, "train", args.calib_count, meta)
            sample = torch.from_numpy(calibration[:16])
        else:
            sample = torch.randn(8, meta["channels"], meta["input_size"], meta["input_size"],
                                 generator=torch.Generator().manual_seed(0))
        report = export_fp32(ckpt, output, args.opset, sample, args.checkpoint, args.flip_tta)
    except (CheckpointError, DatasetError, ExportError) as exc:
        print(f"fer-export: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fer-export: error: cannot write {output}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"{report.path}: {report.size_bytes / 1e6:.2f} MB, {report.params / 1e6:.2f} M parameters, "
          f"{report.mflops:.1f} MFLOPs per face, max |torch - onnxruntime| = {report.max_abs_diff:.1e}")
    if args.int8:
        int8_path = export_int8(output, output.with_name(output.name.replace(".onnx", "") + ".int8.onnx"), calibration)
        agree = _agreement(output, int8_path, calibration)
        print(f"{int8_path}: {int8_path.stat().st_size / 1e6:.2f} MB, calibrated on {len(calibration)} faces "
              f"of {args.calib}; top-1 agrees with fp32 on {100 * agree:.1f}% of them")
    return 0


def _agreement(fp32_path: Path, int8_path: Path, batch: np.ndarray) -> float:
    """Fraction of `batch` on which the two models pick the same class."""
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": batch})[0]
    return float((run(fp32_path).argmax(1) == run(int8_path).argmax(1)).mean())


if __name__ == "__main__":
    sys.exit(main())
