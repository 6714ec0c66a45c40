"""Head pose (yaw, pitch, roll in degrees) from a detector's five landmarks.

`cv2.solvePnP` fits a generic adult face, five points in millimetres (eye centres 63 mm apart, nose tip 30 mm in
front of the eyes' plane, mouth corners 50 mm apart), to YuNet's five landmarks seen by a pinhole camera whose focal
length is the image's larger side (about a 53-degree field of view, a webcam's or a phone's) and whose centre is the
image's. Angles are the head's rotation as the viewer sees it: yaw > 0 when the face turns to the image's right (the
person's left), pitch > 0 when it tilts up, roll > 0 when it is turned clockwise on the screen; (0, 0, 0) faces the
camera; the head's rotation is Rz(roll) Rx(pitch) Ry(yaw) in the camera's axes (roll last, in the image's plane,
so turning a photo changes the roll only). A face whose eye line is tilted more
than 45 degrees (a photo on its side or upside down) is fitted turned back about its nose by that tilt, which is then
added to its roll, so a photo turned by a known angle changes the roll by that angle and little else. Yaw and pitch
depend on how far a real face differs from the generic one, whose proportions in the image plane are the median of
YuNet's landmarks on 3,000 FER2013Train faces. Measured (tests/test_trust.py): the generic face turned by known
angles comes back within 1.5 degrees; one portrait turned by 15, 30, 90, 180 and 270 degrees gives its roll within
2 degrees, its yaw within 10 and its pitch within 15 (YuNet places the landmarks of a turned face a little
differently); a mirrored face gives the opposite yaw. Treat yaw and pitch as +-10-15 degrees.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .align import roll_degrees

# the generic face: x to the image's right, y down, z away from the camera (mm); YuNet's order: the eye on the image's
# left, the other eye, the nose tip, the mouth corner on the image's left, the other corner
FACE_POINTS = np.array([[-31.5, -36.4, 30.0], [31.5, -36.4, 30.0], [0.0, 0.0, 0.0],
                        [-26.0, 28.5, 22.0], [26.0, 28.5, 22.0]], np.float64)


@dataclass(frozen=True)
class HeadPose:
    """Degrees; see the module's docstring for the signs."""
    yaw: float
    pitch: float
    roll: float

    def turned_away(self) -> float:
        """The larger of |yaw| and |pitch|: how far the face looks away from the camera."""
        return max(abs(self.yaw), abs(self.pitch))


def camera_matrix(image_shape: tuple[int, ...]) -> np.ndarray:
    """The assumed pinhole camera of an image: focal length its larger side, centre its centre."""
    height, width = image_shape[:2]
    focal = float(max(height, width))
    return np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], np.float64)


def head_pose(landmarks: np.ndarray, image_shape: tuple[int, ...]) -> HeadPose:
    """The head pose of one face from its five landmarks (float [5, 2] image pixels) in an image of this shape."""
    points = np.asarray(landmarks, np.float64).reshape(5, 2)
    # a face turned far in the image (a photo on its side, upside down) is first turned back about its nose, so that
    # the fit starts near upright and its angles keep their meaning; the turn is added back to the roll
    tilt = roll_degrees(points)
    turn = tilt if abs(tilt) > 45 else 0.0
    c, s = np.cos(np.radians(-turn)), np.sin(np.radians(-turn))
    nose = points[2]
    upright = (points - nose) @ np.array([[c, s], [-s, c]]) + nose
    camera = camera_matrix(image_shape)
    ok, rvec, _ = cv2.solvePnP(FACE_POINTS, upright, camera, None, flags=cv2.SOLVEPNP_EPNP)
    if ok:
        ok, rvec, _ = cv2.solvePnP(FACE_POINTS, upright, camera, None, rvec, _initial_translation(upright, camera),
                                   useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return HeadPose(0.0, 0.0, round(tilt, 1))
    rotation, _ = cv2.Rodrigues(rvec)
    # rotation = Rz(roll) Rx(pitch') Ry(yaw') in OpenCV's axes (y down, z away): yaw' > 0 turns the nose to the image's
    # left, pitch' > 0 tilts it down (the viewer's signs are the opposite), roll > 0 is clockwise on the screen
    pitch = np.degrees(np.arcsin(np.clip(rotation[2, 1], -1, 1)))
    yaw = np.degrees(np.arctan2(-rotation[2, 0], rotation[2, 2]))
    roll = np.degrees(np.arctan2(-rotation[0, 1], rotation[1, 1]))
    roll = (turn + roll + 180) % 360 - 180
    return HeadPose(round(float(-yaw), 1) + 0.0, round(float(-pitch), 1) + 0.0, round(float(roll), 1) + 0.0)


def _initial_translation(points: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Where the generic face stands for its eyes to be as far apart as in the image (a guess for the solver)."""
    eyes = max(float(np.linalg.norm(points[1] - points[0])), 1.0)
    depth = camera[0, 0] * 63.0 / eyes
    x, y = (points[2] - camera[:2, 2]) * depth / camera[0, 0]
    return np.array([[x], [y], [depth]], np.float64)
