"""A STAND-IN for Picamera2, for tests only: no Raspberry Pi camera hardware is here.

It has Picamera2's public API as `runtime.sources.PicameraReader` uses it (`Picamera2(index)`,
`create_video_configuration`, `configure`, `start`, `capture_array`, `stop`, `close`) and hands out frames the way
Picamera2 stores "RGB888": B, G, R bytes per pixel. The frames come from the video named by $PICAMERA_STANDIN_VIDEO
(the sample clip: real faces), resized to the configured size; without it, a solid colour given as R,G,B in
$PICAMERA_STANDIN_RGB. Every call is appended as a JSON line to $PICAMERA_STANDIN_LOG, so a test can check the wiring
(the size, format and frame rate asked for, and that the camera was stopped and closed)."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np

STANDIN = True
CAMERAS = 1


def _log(call: str, **details) -> None:
    if os.environ.get("PICAMERA_STANDIN_LOG"):
        with open(os.environ["PICAMERA_STANDIN_LOG"], "a") as log:
            log.write(json.dumps({"call": call, **details}) + "\n")


class Picamera2:
    def __init__(self, camera_num: int = 0):
        if camera_num >= CAMERAS:
            raise IndexError("list index out of range")  # what Picamera2 raises for a camera that is not there
        _log("Picamera2", camera_num=camera_num)
        self.config: dict | None = None
        self.started = False
        video = os.environ.get("PICAMERA_STANDIN_VIDEO")
        self.video = cv2.VideoCapture(video) if video else None

    def create_video_configuration(self, main: dict | None = None, controls: dict | None = None, **kwargs) -> dict:
        main = {"size": (1280, 720), "format": "XBGR8888", **(main or {})}  # Picamera2's defaults for video
        _log("create_video_configuration", main={**main, "size": list(main["size"])}, controls=controls or {})
        return {"use_case": "video", "main": main, "controls": dict(controls or {})}

    def configure(self, config: dict) -> None:
        _log("configure")
        self.config = config

    def start(self) -> None:
        if self.config is None:
            raise RuntimeError("Camera must be configured before starting")
        _log("start")
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        if not self.started:
            raise RuntimeError("Camera is not running")
        width, height = self.config["main"]["size"]
        if self.video is not None:
            ok, bgr = self.video.read()
            if not ok:
                self.video.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self.video.read()
            bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
        else:
            r, g, b = (int(v) for v in os.environ.get("PICAMERA_STANDIN_RGB", "255,0,0").split(","))
            bgr = np.empty((height, width, 3), np.uint8)
            bgr[:] = (b, g, r)
        return bgr  # RGB888 in Picamera2 is stored B, G, R

    def stop(self) -> None:
        _log("stop")
        self.started = False

    def close(self) -> None:
        _log("close")
        if self.video is not None:
            self.video.release()
