"""Image preprocessing for training and evaluation (torchvision transforms v2).

The evaluation path matches the runtime's (and shares its colour conversion): gray (or RGB), resize to the input
size with area interpolation, scale to [0, 1], normalise by mean/std.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torchvision.transforms import v2

from runtime.detectors import to_gray, to_rgb


def to_model_image(image: np.ndarray, channels: int, input_size: int) -> torch.Tensor:
    """uint8 gray/BGR/BGRA array -> uint8 tensor [channels, input_size, input_size]."""
    image = to_gray(image)[:, :, None] if channels == 1 else to_rgb(image)
    if image.shape[:2] != (input_size, input_size):
        image = cv2.resize(image, (input_size, input_size), interpolation=cv2.INTER_AREA)
        if image.ndim == 2:
            image = image[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class ModelInput:
    """Callable: uint8 face image -> normalised float tensor, augmented when `train`."""

    def __init__(self, input_size: int, channels: int, mean: list[float], std: list[float],
                 train: bool = False):
        self.input_size, self.channels = input_size, channels
        steps = []
        if train:
            steps += [
                v2.RandomHorizontalFlip(),
                v2.RandomApply([v2.RandomAffine(degrees=15, translate=(0.08, 0.08), scale=(0.9, 1.1))], p=0.7),
                v2.RandomResizedCrop(input_size, scale=(0.75, 1.0), ratio=(0.9, 1.1), antialias=True),
                v2.ColorJitter(brightness=0.4, contrast=0.4),
            ]
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
        if train:
            steps.append(v2.RandomErasing(p=0.25, scale=(0.02, 0.2)))
        self.pipeline = v2.Compose(steps)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.pipeline(to_model_image(image, self.channels, self.input_size))
