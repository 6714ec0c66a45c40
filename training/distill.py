"""Knowledge distillation: frozen teacher checkpoints whose class probabilities join the training targets."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from .model import class_probabilities


class Teacher:
    """Averaged, horizontally flip-averaged class probabilities of one or more trained checkpoints.

    The teachers see the student's (augmented, mixed) batch, resized to their own input size; they must
    share the student's labels, channels and normalisation, so the same tensor means the same image.
    """

    def __init__(self, paths: list[str], labels: list[str], channels: int, mean: list[float], std: list[float]):
        self.models, self.input_sizes = [], []
        for path in paths:
            ckpt = load_checkpoint(path)
            meta = ckpt["meta"]
            for key, expected in (("labels", labels), ("channels", channels), ("mean", mean), ("std", std)):
                if meta[key] != expected:
                    raise CheckpointError(f"teacher {path}: {key} {meta[key]} differ from the student's {expected}; "
                                          "train the student with the teacher's settings")
            self.models.append(model_from_checkpoint(ckpt, path).to(memory_format=torch.channels_last))
            self.input_sizes.append(int(meta["input_size"]))

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] normalised images -> [N, classes] probabilities."""
        probs = 0.0
        for model, size in zip(self.models, self.input_sizes):
            x = images if images.shape[-1] == size else F.interpolate(images, size=(size, size), mode="bilinear",
                                                                      antialias=True, align_corners=False)
            probs = probs + class_probabilities(model, x, flip=True)
        return probs / len(self.models)


def distilled_targets(targets: torch.Tensor, teacher_probs: torch.Tensor, weight: float) -> torch.Tensor:
    """Blend the data's target distributions with the teacher's: (1 - weight) * data + weight * teacher."""
    return (1 - weight) * targets + weight * teacher_probs
