"""MobileNetV3 classifiers for small face crops."""
from __future__ import annotations

import os
import warnings
from typing import IO

import torch
from torch import nn
from torchvision import models

PARITY_TOLERANCE = 1e-4  # largest |torch - onnxruntime| logit difference accepted for an exported graph
ARCHS = {"mobilenet_v3_small": models.mobilenet_v3_small, "mobilenet_v3_large": models.mobilenet_v3_large}


def build_model(arch: str, num_classes: int, in_channels: int = 1, stem_stride: int = 1,
                dropout: float = 0.2, width_mult: float = 1.0) -> nn.Module:
    """torchvision MobileNetV3 with `num_classes` outputs and a stem for `in_channels`.

    `stem_stride=1` keeps the first convolution at full resolution, which suits 48-64 px faces
    (the ImageNet stride of 2 leaves a 2x2 map at the end for a 48 px face). `width_mult` scales
    every layer's channels (torchvision's option; 0.75 of the large model fits the edge budget).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
    model = ARCHS[arch](num_classes=num_classes, dropout=dropout, width_mult=width_mult)
    stem: nn.Conv2d = model.features[0][0]
    model.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, kernel_size=stem.kernel_size,
                                     stride=stem_stride, padding=stem.padding, bias=False)
    nn.init.kaiming_normal_(model.features[0][0].weight, mode="fan_out")
    return model


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Initialise from a local checkpoint (e.g. torchvision's ImageNet weights), skipping tensors
    whose name or shape does not match (head, stem). Returns the names that were skipped."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
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


def class_probabilities(model: nn.Module, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Softmax outputs for a batch, averaged with the mirrored faces if `flip` (no gradients)."""
    with torch.no_grad():
        probs = model(images).softmax(1)
        return (probs + model(images.flip(3)).softmax(1)) / 2 if flip else probs


def export_onnx(model: nn.Module, sample: torch.Tensor, target: str | os.PathLike | IO[bytes], opset: int = 17) -> None:
    """Write the network as an ONNX graph: `input` [N, C, H, W] (dynamic N) -> `logits`.

    The TorchScript exporter writes exactly the requested opset (17 suits older onnxruntime builds on
    boards); the dynamo exporter would raise it to 18.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (sample,), target, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                          dynamo=False)
