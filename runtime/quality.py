"""How far one face's reading can be trusted: a quality score in [0, 1] and a reliable flag.

Four signals, each turned into a factor in [0, 1] by a linear ramp between two measured points, multiplied:
- the calibrated top probability (the model's temperature applied: `runtime.metadata.ModelMetadata.temperature`);
- the face's size in the photo's pixels (the shorter side of the detector's box): a face smaller than the model's
  training faces (48 px) carries less of its expression;
- the sharpness of the crop the model sees: the variance of the Laplacian of the crop in gray at 72 x 72 pixels;
- the head pose (`runtime.pose`): the larger of |yaw| and |pitch|, a face turned away.
A signal that is not known (no landmarks: no pose) counts as 1. `reliable` is quality >= RELIABLE_QUALITY, chosen on
FER2013Valid as the lowest threshold (in steps of 0.05) at which at least 90% of the reliable faces' top labels are
right, among the clean faces and among all of them, with faces shown as photos, clean, blurred and downscaled
(`python -m benchmarks.quality`). The label is given whatever the flag.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .pose import HeadPose

SHARPNESS_SIDE = 72  # crops are measured at this size, whatever the face's


@dataclass(frozen=True)
class Ramp:
    """0 at or below `zero`, 1 at or above `one` (or the reverse when one < zero), linear between."""
    zero: float
    one: float

    def __call__(self, value: float) -> float:
        return float(np.clip((value - self.zero) / (self.one - self.zero), 0.0, 1.0))


# chosen on FER2013Valid (`python -m benchmarks.quality`): of the ramps tried (size from 8-20 to 24-48 px, sharpness
# from 0.8-1.4 to 1.8-2.6), these keep the most clean faces reliable at 90% right; the pose ramp is set by hand
# (FER+ has few faces turned away)
SIZE = Ramp(8.0, 48.0)  # the box's shorter side, pixels
SHARPNESS = Ramp(0.8, 2.6)  # log10 of the Laplacian's variance at 72 px
POSE = Ramp(75.0, 35.0)  # max(|yaw|, |pitch|), degrees: 1 up to 35, 0 from 75
RELIABLE_QUALITY = 0.55


def sharpness(crop: np.ndarray) -> float:
    """log10 of the variance of the Laplacian of `crop` in gray at SHARPNESS_SIDE pixels (higher is sharper)."""
    gray = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGRA2GRAY if crop.shape[2] == 4
                                                    else cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA)
    variance = float(cv2.Laplacian(small, cv2.CV_64F).var())
    return round(float(np.log10(variance + 1.0)), 3)


def face_quality(probability: float, side: float, sharp: float, pose: HeadPose | None) -> float:
    """The quality of one face's reading in [0, 1] (see the module's docstring)."""
    quality = probability * SIZE(side) * SHARPNESS(sharp)
    if pose is not None:
        quality *= POSE(pose.turned_away())
    return round(float(quality), 3)
