"""Export a training checkpoint to the ONNX model the runtime runs.

    python -m export.to_onnx --checkpoint ckpt/ferplus_mobilenetv3_large075_72px.pth \
        --output ckpt/ferplus_mobilenetv3_large075_72px.onnx --int8 --calib ferplus:../shared/datasets/ferplus \
        --int8-from ckpt/ferplus_mobilenetv3_large075_72px.qat.pth --metrics runs/eval_test/metrics.json

The graph takes `input` float32 [N, C, H, W] (dynamic N) and returns `logits` [N, classes]; labels
and preprocessing travel in the model's metadata (`runtime.metadata.ModelMetadata`). The export fails
unless onnxruntime reproduces torch's logits within 1e-4. `--flip-tta` builds the mirror image into the
graph: it returns the log of the mean of the face's and its mirror's class probabilities (so a softmax
gives that mean), at twice the classifier's cost. `--metrics` takes the `metrics.json` that
`python -m training.eval --model CKPT --split test [--flip]` wrote for this checkpoint and stores its
accuracy in the model's metadata. `--int8` writes the INT8 copy (`training.qat.INT8_SCHEME`: static QDQ, per-channel
7-bit weights, which no x86 kernel saturates), quantized from `--int8-from`, a quantization-aware fine-tuning of the
checkpoint (`fer-train --qat --pretrained CHECKPOINT`), when given.
"""
from __future__ import annotations

if __name__ == "__main__":  # `python -m export.to_onnx` in a runtime-only install: --help answers, running is one line, not a traceback
    from training.launch import exit_without_torch
    from training.options import export_parser
    exit_without_torch("python -m export.to_onnx", export_parser)

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from runtime.image import preprocess
from runtime.metadata import DEFAULT_FACE_MARGIN, ModelMetadata
from training.checkpoint import CheckpointError, git_commit, load_checkpoint, model_from_checkpoint, model_metadata
from training.datasets import DatasetError, load_dataset
from training.model import ParityError, count_mflops, count_parameters, export_onnx, flip_averaged
from training.options import export_parser
from training.qat import INT8_SCHEME, float_nodes


class FlipAveraged(torch.nn.Module):
    """Log of the mean class probabilities of each face and its horizontal mirror."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return flip_averaged(lambda x: self.model(x).softmax(1), images).log()


class ExportError(ValueError):
    """An export that cannot be done as asked; the message says why."""


@dataclass
class ExportReport:
    path: Path
    size_bytes: int
    params: int
    mflops: float
    max_abs_diff: float


def metadata_for(ckpt: dict, source: str, flip_tta: bool, metrics: str | None) -> ModelMetadata:
    """The exported model's metadata: the checkpoint's, the graph's flip averaging, and the FER2013Test accuracy
    of a `training.eval` report on this checkpoint (checked: test split, same checkpoint, same flip setting)."""
    meta = replace(model_metadata(ckpt), flip_tta=flip_tta, extra={})
    if meta.source_commit == "unknown":
        meta = replace(meta, source_commit=git_commit())
    if not metrics:
        return replace(meta, accuracy=None)
    try:
        report = json.loads(Path(metrics).read_text())
        evaluated, split, flip, accuracy = report["model"], report["split"], report["flip"], report["accuracy"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"--metrics {metrics}: not a metrics.json of training.eval ({exc})") from None
    if len(evaluated) != 1 or os.path.realpath(evaluated[0]) != os.path.realpath(source):
        raise ExportError(f"--metrics {metrics} measured {evaluated}, not {source}")
    if report.get("reframe", 1.0) != 1.0 or report.get("logit_adjust", 0.0):
        raise ExportError(f"--metrics {metrics} measured reframed faces or adjusted logits; use a plain run")
    if split != "test" or bool(flip) != flip_tta:
        raise ExportError(f"--metrics {metrics} is a {split} split{' with' if flip else ' without'} --flip; "
                          f"the exported graph needs the test split{' with' if flip_tta else ' without'} --flip")
    return replace(meta, accuracy=round(100 * accuracy, 2))


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)


def save_atomically(proto: onnx.ModelProto, output: Path) -> None:
    """Write `output` whole or not at all (a crash or Ctrl-C never leaves a truncated model)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    try:
        onnx.save(proto, str(tmp))
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)


def export_fp32(ckpt: dict, output: Path, opset: int, sample: torch.Tensor, source: str,
                flip_tta: bool = False, metadata: ModelMetadata | None = None) -> ExportReport:
    """Export (checked against torch on `sample`), attach the metadata and write `output` atomically."""
    metadata = metadata or metadata_for(ckpt, source, flip_tta, None)
    model = model_from_checkpoint(ckpt, source)
    if flip_tta:
        model = FlipAveraged(model).eval()
    try:
        proto, diff = export_onnx(model, sample, opset)
    except ParityError as exc:
        raise ExportError(str(exc)) from None
    set_metadata(proto, metadata.to_props())
    save_atomically(proto, output)
    return ExportReport(output, output.stat().st_size, count_parameters(model),
                        count_mflops(model, metadata.channels, metadata.input_size), diff)


class _Calibration:
    """onnxruntime CalibrationDataReader over a batch of preprocessed faces."""

    def __init__(self, batch: np.ndarray, chunk: int = 1):
        self.chunks = iter([batch[i:i + chunk] for i in range(0, len(batch), chunk)])

    def get_next(self):
        chunk = next(self.chunks, None)
        return None if chunk is None else {"input": chunk}


def export_int8(fp32_path: Path, output: Path, calibration: np.ndarray, metadata_from: Path | None = None) -> Path:
    """Static INT8 quantization (`INT8_SCHEME`: QDQ, per-channel 7-bit weights; `float_nodes` left in float)
    calibrated on real faces; the metadata copied from `metadata_from` (default: `fp32_path`).

    Percentile calibration (99.999th) lost the least accuracy on FER+ among MinMax, Entropy and
    Percentile (see ckpt/MODEL_CARD.md); its histograms need equal-sized batches, hence one face each.
    MinMax is the fallback when a histogram cannot be built (an activation with no range)."""
    from onnxruntime.quantization import CalibrationMethod, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        options = dict(INT8_SCHEME, nodes_to_exclude=float_nodes(onnx.load(str(prepared)).graph))
        try:
            quantize_static(str(prepared), str(quantized), _Calibration(calibration),
                            calibrate_method=CalibrationMethod.Percentile, **options)
        except ValueError as exc:  # histograms fail on activations with a (near) zero range
            print(f"percentile calibration failed ({exc}); using MinMax", file=sys.stderr)
            quantize_static(str(prepared), str(quantized), _Calibration(calibration),
                            calibrate_method=CalibrationMethod.MinMax, **options)
        proto = onnx.load(str(quantized))
    set_metadata(proto, {p.key: p.value for p in onnx.load(str(metadata_from or fp32_path)).metadata_props})
    save_atomically(proto, output)
    return output


BALANCE_FACES = 3000  # training faces on which the INT8 copy's class frequencies are matched to fp32's


def class_balance_shift(reference: np.ndarray, quantized: np.ndarray, steps: int = 20) -> np.ndarray:
    """Per-class offsets to add to `quantized` logits so that, on the same faces, each class is picked as often as
    from the `reference` logits. Rounding moves a model's rare-class decisions (fear, disgust) toward the common
    classes; this bias correction moves them back (ckpt/MODEL_CARD.md, "INT8 on every CPU")."""
    classes = reference.shape[1]
    target = np.bincount(reference.argmax(1), minlength=classes) / len(reference)
    shift = np.zeros(classes)
    for _ in range(steps):
        picked = np.bincount((quantized + shift).argmax(1), minlength=classes) / len(quantized)
        shift += 0.5 * np.log((target + 1e-3) / (picked + 1e-3))
    return shift.astype(np.float32)


def with_output_bias_shifted(fp32_path: Path, shift: np.ndarray, output: Path) -> Path:
    """A copy of an fp32 graph whose output layer (a Gemm, the classifier) adds `shift` to its bias."""
    proto = onnx.load(str(fp32_path))
    last = next(n for n in proto.graph.node if proto.graph.output[0].name in n.output)
    bias = next((i for i in proto.graph.initializer if last.op_type == "Gemm" and len(last.input) > 2
                 and i.name == last.input[2]), None)
    if bias is None:
        raise ExportError(f"{fp32_path}: the output layer is a {last.op_type}, not a Gemm with a bias")
    bias.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(bias) + shift, bias.name))
    onnx.save(proto, str(output))
    return output


# What must agree between a checkpoint and the quantization-aware fine-tuning its INT8 copy is made from
# (with the defaults of the keys older checkpoints lack).
SAME_NETWORK = {"arch": None, "labels": None, "input_size": None, "channels": None, "mean": None, "std": None,
                "stem_stride": None, "width_mult": 1.0, "face_margin": DEFAULT_FACE_MARGIN}


def load_qat_checkpoint(ckpt: dict, qat_path: str) -> dict:
    """The quantization-aware fine-tuning to quantize in place of `ckpt`: the same network with the same labels
    and preprocessing, trained with `--qat`."""
    qat_ckpt = load_checkpoint(qat_path)
    differ = [k for k, default in SAME_NETWORK.items()
              if qat_ckpt["meta"].get(k, default) != ckpt["meta"].get(k, default)]
    if differ:
        raise ExportError(f"--int8-from {qat_path} is not a fine-tuning of --checkpoint: {', '.join(differ)} differ")
    if not qat_ckpt["meta"].get("qat"):
        raise ExportError(f"--int8-from {qat_path} was not trained with --qat "
                          "(fer-train --qat --pretrained CHECKPOINT)")
    return qat_ckpt


def faces_batch(spec: str, split: str, count: int, meta: ModelMetadata, seed: int = 0) -> np.ndarray:
    """`count` faces of a data set, preprocessed by the runtime's own `preprocess`."""
    dataset = load_dataset(spec, split, meta.labels)
    picks = np.random.default_rng(seed).permutation(len(dataset))[:count]
    faces = [dataset.read(dataset.items[int(i)]) for i in picks]
    return preprocess(faces, meta.input_size, meta.channels, meta.mean, meta.std)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return export_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.int8 and not args.calib:
        print("fer-export: error: --int8 needs --calib KIND:PATH (about 500 training faces)", file=sys.stderr)
        return 2
    if args.int8_from and not args.int8:
        print("fer-export: error: --int8-from is the source of the INT8 copy: add --int8", file=sys.stderr)
        return 2
    output = Path(args.output)
    try:
        ckpt = load_checkpoint(args.checkpoint)
        meta = metadata_for(ckpt, args.checkpoint, args.flip_tta, args.metrics)
        qat_ckpt = load_qat_checkpoint(ckpt, args.int8_from) if args.int8_from else None
        if args.calib:
            calibration = faces_batch(args.calib, "train", args.calib_count, meta)
            sample = torch.from_numpy(calibration[:16])
        else:
            sample = torch.randn(8, meta.channels, meta.input_size, meta.input_size,
                                 generator=torch.Generator().manual_seed(0))
        report = export_fp32(ckpt, output, args.opset, sample, args.checkpoint, args.flip_tta, meta)
    except (CheckpointError, DatasetError, ExportError) as exc:
        print(f"fer-export: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"fer-export: error: cannot write {output}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"{report.path}: {report.size_bytes / 1e6:.2f} MB, {report.params / 1e6:.2f} M parameters, "
          f"{report.mflops:.1f} MFLOPs per face, max |torch - onnxruntime| = {report.max_abs_diff:.1e}")
    if args.int8:
        int8_path = output.with_name(output.name.replace(".onnx", "") + ".int8.onnx")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                source = output if qat_ckpt is None else export_fp32(
                    qat_ckpt, Path(tmp) / "qat.onnx", args.opset, sample, args.int8_from, args.flip_tta).path
            except ExportError as exc:
                print(f"fer-export: error: --int8-from {args.int8_from}: {exc}", file=sys.stderr)
                return 2
            export_int8(source, int8_path, calibration, metadata_from=output)
            balance = faces_batch(args.calib, "train", BALANCE_FACES, meta, seed=1)
            shift = class_balance_shift(_logits(output, balance), _logits(int8_path, balance))
            source = with_output_bias_shifted(source, shift, Path(tmp) / "balanced.onnx")
            export_int8(source, int8_path, calibration, metadata_from=output)
        agree = _agreement(output, int8_path, calibration)
        print(f"{int8_path}: {int8_path.stat().st_size / 1e6:.2f} MB, calibrated on {len(calibration)} faces "
              f"of {args.calib}; top-1 agrees with fp32 on {100 * agree:.1f}% of them")
    return 0


def _logits(path: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": batch[i:i + 500]})[0] for i in range(0, len(batch), 500)])


def _agreement(fp32_path: Path, int8_path: Path, batch: np.ndarray) -> float:
    """Fraction of `batch` on which the two models pick the same class."""
    return float((_logits(fp32_path, batch).argmax(1) == _logits(int8_path, batch).argmax(1)).mean())


if __name__ == "__main__":
    sys.exit(main())
