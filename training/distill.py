"""Knowledge distillation: frozen teacher checkpoints whose class probabilities join the training targets."""
from __future__ import annotations

import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from .model import ParityError, export_onnx, flip_averaged


def inference_session(model: nn.Module, channels: int, input_size: int, source: str) -> ort.InferenceSession:
    """The network exported to an in-memory ONNX graph (dynamic batch, checked against torch) in an
    onnxruntime session.

    onnxruntime runs these networks faster than torch's CPU inference (`benchmarks/train_speed.py`:
    128 faces and their mirrors through a 93.6 MFLOPs teacher in 0.29 s against 0.48 s on 2 cores).
    Raises CheckpointError when the export is not faithful.
    """
    sample = torch.randn(4, channels, input_size, input_size, generator=torch.Generator().manual_seed(0))
    try:
        graph, _ = export_onnx(model, sample)
    except ParityError as exc:
        raise CheckpointError(f"teacher {source}: {exc}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # Idle threads must not spin: torch's backward pass needs the cores between teacher calls.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])


def resized(images: torch.Tensor, size: int) -> torch.Tensor:
    """A batch at a teacher's input size (antialiased bilinear; unchanged when it already fits)."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class Teacher:
    """Averaged, horizontally flip-averaged class probabilities of one or more trained checkpoints.

    The teachers see the student's (augmented, mixed) batch, resized to their own input size; they must
    share the student's labels, channels and normalisation, so the same tensor means the same image.
    On the CPU they run in onnxruntime (see `inference_session`), on a GPU in torch (bfloat16); each face
    and its mirror in one call.
    """

    def __init__(self, paths: list[str], labels: list[str], channels: int, mean: list[float], std: list[float],
                 device: torch.device = torch.device("cpu")):
        self.runners, self.input_sizes, self.device = [], [], device
        for path in paths:
            ckpt = load_checkpoint(path)
            meta = ckpt["meta"]
            for key, expected in (("labels", labels), ("channels", channels), ("mean", mean), ("std", std)):
                if meta[key] != expected:
                    raise CheckpointError(f"teacher {path}: {key} {meta[key]} differ from the student's {expected}; "
                                          "train the student with the teacher's settings")
            size = int(meta["input_size"])
            self.runners.append(self._runner(model_from_checkpoint(ckpt, path), channels, size, path))
            self.input_sizes.append(size)

    def _runner(self, model: nn.Module, channels: int, size: int, path: str):
        """images -> probabilities, on the CPU through onnxruntime, else on the device."""
        if self.device.type == "cpu":
            session = inference_session(model, channels, size, path)
            return lambda x: torch.from_numpy(session.run(None, {"input": x.contiguous().numpy()})[0]).softmax(1)
        model = model.to(self.device, memory_format=torch.channels_last)
        return lambda x: model(x).float().softmax(1)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] normalised images -> [N, classes] probabilities, on the images' device."""
        on_gpu = self.device.type != "cpu"
        x = images.to(self.device)
        probs = 0.0
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=on_gpu):
            for run, size in zip(self.runners, self.input_sizes):
                probs = probs + flip_averaged(run, resized(x, size))
        return (probs / len(self.runners)).to(images.device)


def distilled_targets(targets: torch.Tensor, teacher_probs: torch.Tensor, weight: float) -> torch.Tensor:
    """Blend the data's target distributions with the teacher's: (1 - weight) * data + weight * teacher."""
    return (1 - weight) * targets + weight * teacher_probs
