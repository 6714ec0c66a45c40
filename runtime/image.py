"""Pixels: colour conversion and the one preprocessing that turns face crops into model input.

Training's evaluation transform, INT8 calibration and the runtime all call `preprocess`, so a model sees
the same numbers in every place it runs."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


def to_gray(frame: np.ndarray) -> np.ndarray:
    """Grayscale view of a gray, BGR or BGRA frame."""
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY)


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """BGR copy (or view) of a gray, BGR or BGRA frame."""
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR) if frame.shape[2] == 4 else frame


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """RGB copy of a gray, BGR or BGRA frame (the channel order of 3-channel models)."""
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if frame.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def check_image(frame, name: object = "image") -> None:
    """Raise ValueError naming `name` unless `frame` is a non-empty uint8 gray/BGR/BGRA image."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"{name}: expected dtype uint8, got {frame.dtype}")
    if frame.size == 0 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise ValueError(f"{name}: expected a non-empty HxW, HxWx3 or HxWx4 image, got shape {frame.shape}")


def face_pixels(face: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 face crop (gray, BGR or BGRA, any size) -> uint8 [size, size, channels] (gray or RGB), resized
    with area interpolation."""
    pixels = to_gray(face) if channels == 1 else to_rgb(face)
    if pixels.shape[:2] != (size, size):
        pixels = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA)
    return pixels.reshape(size, size, channels)


def preprocess(faces: Sequence[np.ndarray], size: int, channels: int, mean: Sequence[float],
               std: Sequence[float], out: np.ndarray | None = None) -> np.ndarray:
    """Face crops -> the model's float32 [N, channels, size, size] batch: `face_pixels`, scaled to [0, 1],
    then (x - mean) / std per channel. `out`, when large enough, is filled and a view of it returned."""
    n = len(faces)
    if out is None or out.shape[0] < n or out.shape[1:] != (channels, size, size):
        out = np.empty((n, channels, size, size), np.float32)
    batch = out[:n]
    for i, face in enumerate(faces):
        batch[i] = face_pixels(face, size, channels).transpose(2, 0, 1)
    batch -= np.float32(255) * np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    batch *= 1 / (np.float32(255) * np.asarray(std, np.float32).reshape(1, -1, 1, 1))
    return batch


def reframed(image: np.ndarray, side: float, shift_x: float = 0.0, shift_y: float = 0.0) -> np.ndarray:
    """The face framed `side` times as wide as it is (< 1 tighter, > 1 looser, edges replicated), its centre
    moved by `shift_x`, `shift_y` of the image size; same size as `image`."""
    h, w = image.shape[:2]
    scale = 1.0 / side
    matrix = np.float32([[scale, 0, (1 - scale) * w / 2 - shift_x * w * scale],
                         [0, scale, (1 - scale) * h / 2 - shift_y * h * scale]])
    out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(image.shape)
