"""Image preprocessing for training and evaluation.

Evaluation calls the runtime's own `runtime.image.preprocess`, so a checkpoint is scored on exactly the
numbers its exported model will see. Training augments the same resized pixels (torchvision transforms v2)
before that normalisation.
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

from runtime.image import face_pixels, preprocess, reframed


class RandomFraming:
    """Frames each face at a random size, from `tight` (a crop of the central part) to `loose` (the face
    padded with replicated edges), with a small random shift: detectors crop faces tighter or looser
    than the data set did, and the model should not care."""

    def __init__(self, tight: float = 0.8, loose: float = 1.25, shift: float = 0.06):
        self.tight, self.loose, self.shift = tight, loose, shift

    def __call__(self, image: np.ndarray) -> np.ndarray:
        u = torch.rand(3).tolist()  # torch's generator: seeded per DataLoader worker
        side = self.tight * (self.loose / self.tight) ** u[0]  # log-uniform: as likely tighter as looser
        return reframed(image, side, (2 * u[1] - 1) * self.shift, (2 * u[2] - 1) * self.shift)


class ModelInput:
    """Callable: uint8 face image -> normalised float tensor [C, H, W], augmented when `train`."""

    def __init__(self, input_size: int, channels: int, mean: list[float], std: list[float],
                 train: bool = False):
        self.input_size, self.channels, self.mean, self.std = input_size, channels, mean, std
        self.augment = v2.Compose([
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.RandomAffine(degrees=15)], p=0.5),
            v2.RandomResizedCrop(input_size, scale=(0.85, 1.0), ratio=(0.9, 1.1), antialias=True),
            v2.ColorJitter(brightness=0.4, contrast=0.4),
        ]) if train else None
        self.framing = RandomFraming() if train else None
        self.erase = v2.RandomErasing(p=0.25, scale=(0.02, 0.2)) if train else None

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        if self.augment is not None:
            pixels = torch.from_numpy(face_pixels(self.framing(image), self.input_size, self.channels)).permute(2, 0, 1)
            image = self.augment(pixels).permute(1, 2, 0).numpy()
        tensor = torch.from_numpy(preprocess([image], self.input_size, self.channels, self.mean, self.std)[0])
        return self.erase(tensor) if self.erase is not None else tensor
