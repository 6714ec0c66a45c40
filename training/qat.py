"""Quantization-aware fine-tuning: the network learns to live with the rounding of the INT8 export.

`prepare(model)` changes a trained float model in place so that, in training and in evaluation, it computes what
`export.to_onnx --int8` will make of it (onnxruntime static QDQ quantization, `INT8_SCHEME`):
- every BatchNorm is folded into the convolution before it and frozen as a per-channel bias (the exported graph
  holds the folded weights, and those are what gets quantized);
- every Conv2d and Linear weight but the stem's is rounded per output channel, symmetric, to INT8_SCHEME's weight
  range (`reduce_range`: -64..64, 7 bits, so that x86 CPUs without VNNI, whose u8 x s8 instruction adds pairs of
  products into int16, never saturate); the stem stays float (`float_nodes`: 1.3% of the shipped model's
  multiply-adds, nine weights per output from one gray channel, which 7 bits round too coarsely);
- the tensors that onnxruntime quantizes (the input, convolution, BatchNorm and ReLU outputs, HardSigmoid and
  HardSwish, squeeze-excite products, residual sums, pooling, linear layers) are rounded to uint8 over a range
  tracked as a moving average of each batch's largest magnitude (`ActivationRange`).
Rounding passes gradients straight through. The model keeps its architecture and state_dict keys: a checkpoint
saved during QAT loads and exports like any other (its BatchNorm layers are then identities plus a bias).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
import onnx
from onnx import TensorProto
from onnxruntime.quantization import QuantFormat, QuantType
from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType
from torch import nn

# The one description of the INT8 export (onnxruntime.quantization.quantize_static's options), shared by the
# exporter and the fine-tuning that prepares a model for it. reduce_range: 7-bit weights, see the module docstring.
INT8_SCHEME = dict(quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                   weight_type=QuantType.QInt8, reduce_range=True)
WEIGHT_QMIN, WEIGHT_QMAX = (int(q) for q in get_qmin_qmax_for_qType(TensorProto.INT8, INT8_SCHEME["reduce_range"],
                                                                   symmetric=True))
ACTIVATION_QMIN, ACTIVATION_QMAX = 0, 255
RANGE_MOMENTUM = 0.01  # share of each training batch's largest magnitude in an activation's tracked range


def float_nodes(graph: onnx.GraphProto) -> list[str]:
    """The nodes the INT8 export leaves in float: the first convolution (the stem, fed by the graph's input). On
    FER2013Valid this kept 0.4 points of the shipped model's accuracy; also leaving the fully connected layers in
    float kept nothing more (ckpt/MODEL_CARD.md, "INT8 on every CPU")."""
    inputs = {i.name for i in graph.input}
    return [n.name for n in graph.node if n.op_type == "Conv" and n.input[0] in inputs][:1]


def fake_quantize_weight(weight: torch.Tensor) -> torch.Tensor:
    """`weight` rounded as onnxruntime quantizes it: symmetric per output channel (axis 0), scale = max|w| over
    the half range, so that -max..max maps onto WEIGHT_QMIN..WEIGHT_QMAX."""
    absmax = weight.detach().abs().flatten(1).amax(1).double()
    scale = (2 * absmax / (WEIGHT_QMAX - WEIGHT_QMIN)).float()
    scale = torch.where(scale > torch.finfo(torch.float32).tiny, scale, torch.ones_like(scale))
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, WEIGHT_QMIN, WEIGHT_QMAX)


@dataclass
class ActivationRange:
    """The tracked range of one activation tensor and its uint8 rounding. As onnxruntime's Percentile calibration
    sets it: [-a, a] for a tensor that takes negative values, else [0, a], a its largest magnitude (here a moving
    average of each training batch's)."""
    magnitude: float | None = None
    signed: bool = False

    def observe(self, x: torch.Tensor) -> None:
        x = x.detach()
        magnitude = float(x.abs().max())
        self.signed |= bool(x.min() < 0)
        if self.magnitude is None:
            self.magnitude = magnitude
        else:
            self.magnitude += RANGE_MOMENTUM * (magnitude - self.magnitude)

    def __call__(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        if training or self.magnitude is None:
            self.observe(x)
        low = -self.magnitude if self.signed else 0.0
        scale = (self.magnitude - low) / (ACTIVATION_QMAX - ACTIVATION_QMIN)
        if scale <= 0:
            return x
        zero = int(np.clip(np.round(ACTIVATION_QMIN - low / scale), ACTIVATION_QMIN, ACTIVATION_QMAX))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, ACTIVATION_QMIN, ACTIVATION_QMAX)


class _FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that always normalises with its stored statistics (after folding: identity plus bias)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


@dataclass
class QatModel:
    """What `prepare` attached to a model: the activation ranges and the hooks (`remove()` takes them off)."""
    ranges: dict[str, ActivationRange] = field(default_factory=dict)
    handles: list = field(default_factory=list)
    rewired: list[nn.Module] = field(default_factory=list)  # modules whose forward was replaced

    def remove(self) -> None:
        """Back to plain float computation (the folding stays: it changes no result)."""
        for handle in self.handles:
            handle.remove()
        for module in self.rewired:
            del module.forward
        self.handles.clear()
        self.rewired.clear()


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold `bn` into `conv`'s weight, leave `bn` as a frozen per-channel bias (mean 0, std 1, weight 1).
    Folding a folded pair changes nothing."""
    std = (bn.running_var + bn.eps).sqrt()
    gain = bn.weight / std
    conv.weight.mul_(gain.reshape(-1, *([1] * (conv.weight.dim() - 1))))
    bias = bn.bias - bn.running_mean * gain
    if conv.bias is not None:
        bias = bias + conv.bias * gain
        conv.bias.zero_()
    bn.bias.copy_(bias)
    bn.weight.fill_(1.0)
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)
    bn.weight.requires_grad_(False)
    bn.__class__ = _FrozenBatchNorm2d


def _quantized_weight_forward(module: nn.Module):
    if isinstance(module, nn.Conv2d):
        return lambda x: module._conv_forward(x, fake_quantize_weight(module.weight), module.bias)
    return lambda x: F.linear(x, fake_quantize_weight(module.weight), module.bias)


def _hardswish_forward(module: nn.Module, sigmoid: ActivationRange, product: ActivationRange):
    """HardSwish as onnxruntime's quantizer splits it: x * HardSigmoid(x), both results rounded."""
    return lambda x: product(x * sigmoid(F.hardsigmoid(x), module.training), module.training)


def _output_hook(rounding: ActivationRange):
    return lambda module, inputs, output: rounding(output, module.training)


def prepare(model: nn.Module) -> QatModel:
    """Fold, freeze and instrument `model` in place (see the module docstring); returns the attached state."""
    state = QatModel()

    def rounding(name: str) -> ActivationRange:
        return state.ranges.setdefault(name, ActivationRange())

    # Pairs inside a Sequential: a Conv2d followed by its BatchNorm2d is folded and rounded after the BatchNorm;
    # a BatchNorm2d or Conv2d followed by ReLU is rounded after the ReLU only (onnxruntime fuses the ReLU away).
    skip_output = set()
    modules = dict(model.named_modules())
    for module in modules.values():
        children = list(module.children())
        if type(module).__name__ == "SqueezeExcitation":  # fc1 -> activation, not in a Sequential
            children = [module.fc1, module.activation]
        for a, b in zip(children, children[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                fold_batchnorm(a, b)
                skip_output.add(a)
            if isinstance(a, (nn.Conv2d, nn.BatchNorm2d)) and isinstance(b, (nn.ReLU, nn.ReLU6)):
                skip_output.add(a)
    state.handles.append(model.register_forward_pre_hook(
        lambda module, inputs: (rounding("input")(inputs[0], module.training), *inputs[1:])))
    stem = next(m for m in modules.values() if isinstance(m, nn.Conv2d))
    for name, module in modules.items():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module is not stem:  # float_nodes: the stem
            module.forward = _quantized_weight_forward(module)
            state.rewired.append(module)
        if isinstance(module, nn.Hardswish):
            module.forward = _hardswish_forward(module, rounding(f"{name}.sigmoid"), rounding(name))
            state.rewired.append(module)
            continue
        rounded = isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardsigmoid,
                                      nn.AdaptiveAvgPool2d)) and module not in skip_output
        rounded |= type(module).__name__ == "SqueezeExcitation"
        rounded |= type(module).__name__ == "InvertedResidual" and getattr(module, "use_res_connect", False)
        if rounded:
            state.handles.append(module.register_forward_hook(_output_hook(rounding(name))))
    return state
