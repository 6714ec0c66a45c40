"""How far one face's reading can be trusted: a quality score in [0, 1] and a reliable flag.

Four signals, each turned into a factor in [0, 1] by a linear ramp between two measured points, multiplied:
- the calibrated top probability (the model's temperature applied: `runtime.metadata.ModelMetadata.temperature`);
- the face's size in the photo's pixels (the shorter side of the detector's box): a very small face carries less of
  its expression (FER+ faces shrunk to a box of about 37 px are still read as well as at full size);
- the sharpness of the crop the model sees: the variance of the Laplacian of the crop in gray at 72 x 72 pixels;
- the head pose (`runtime.pose`): the larger of |yaw| and |pitch|, a face turned away.
A signal that is not known (no landmarks: no pose) counts as 1. `reliable` is quality >= RELIABLE_QUALITY, chosen on
FER2013Valid with faces shown as photos, clean, blurred and downscaled (`python -m benchmarks.quality`): the lowest
threshold (in steps of 0.01) at which the reliable faces' top labels are right at least 90% of the time with 95%
confidence (the lower Wilson bound) among the clean faces and among all of them, and at least 90% of the time among
each degraded kind with 20 reliable faces or more (`benchmarks.quality.choose_threshold`). The label is given
whatever the flag.
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


# chosen on FER2013Valid (`python -m benchmarks.quality --from-rows --search`): of the ramps tried
# (`benchmarks.quality.SEARCH`), these keep the most faces reliable, clean and degraded, under the rule above (a
# sharpness ramp that reached 1 only at 2.6 marked down half the clean faces, whose sharpness does not predict a wrong
# label); the pose ramp is set by hand (FER+ has few faces turned away)
SIZE = Ramp(8.0, 24.0)  # the box's shorter side, pixels
SHARPNESS = Ramp(1.2, 1.8)  # log10 of the Laplacian's variance at 72 px
POSE = Ramp(75.0, 35.0)  # max(|yaw|, |pitch|), degrees: 1 up to 35, 0 from 75
RELIABLE_QUALITY = 0.65


def sharpness(crop: np.ndarray) -> float:
    """log10 of the variance of the Laplacian of `crop` in gray at SHARPNESS_SIDE pixels (higher is sharper)."""
    gray = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGRA2GRAY if crop.shape[2] == 4
                                                    else cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA)
    variance = float(cv2.Laplacian(small, cv2.CV_64F).var())
    return round(float(np.log10(variance + 1.0)), 3)


def face_quality(probability: float, side: float, sharp: float, pose: HeadPose | None, size_ramp: Ramp = SIZE,
                 sharpness_ramp: Ramp = SHARPNESS) -> float:
    """The quality of one face's reading in [0, 1] (see the module's docstring; the ramps are the shipped ones unless
    a search for others gives them)."""
    quality = probability * size_ramp(side) * sharpness_ramp(sharp)
    if pose is not None:
        quality *= POSE(pose.turned_away())
    return round(float(quality), 3)
