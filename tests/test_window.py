"""A desktop window that opens: `Visualizer.show()` and `fer-camera` without --headless, through matplotlib where
OpenCV has no GUI (opencv-python-headless), on a real X server (Xvfb) and seen in a screenshot of it; and, where no
window can open, one line saying why and what to do."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from .conftest import DATA, ROOT

SHOW = """
import sys, cv2
from PIL import ImageGrab
from runtime import CV2FaceDetector, ExpressionClassifier, FramePipeline, Visualizer
classifier = ExpressionClassifier()
pipeline = FramePipeline(CV2FaceDetector(), classifier)
frame = cv2.imread(sys.argv[1])
vizor = Visualizer(label_table=classifier.express_table)
for _ in range(10):
    vizor.update(pipeline(frame), frame)
    key = vizor.show(20)
ImageGrab.grab(xdisplay=sys.argv[3]).save(sys.argv[2])
cv2.imwrite(sys.argv[2] + ".render.png", vizor.render())
vizor.close()
print("key", key)
"""


@pytest.fixture(scope="module")
def display():
    """A virtual X display (Xvfb) for the module's tests."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb; .ci/run does it)")
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install 'fer-edge[gui]')")
    pytest.importorskip("tkinter", reason="Tk is not installed (apt-get install python3-tk; .ci/run does it)")
    name = f":{90 + os.getpid() % 9}"
    server = subprocess.Popen(["Xvfb", name, "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    if server.poll() is not None:
        pytest.skip(f"Xvfb could not start display {name}")
    yield name
    server.terminate()
    server.wait(10)


def test_visualizer_show_opens_a_window_that_a_screenshot_sees(display, tmp_path):
    import cv2

    shot = tmp_path / "screen.png"
    env = {**os.environ, "DISPLAY": display, "MPLBACKEND": ""}
    env.pop("MPLBACKEND")
    done = subprocess.run([sys.executable, "-c", SHOW, str(DATA / "obama-480p.jpg"), str(shot), display], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    assert "no window" not in done.stderr
    screen = cv2.imread(str(shot))
    render = cv2.imread(str(shot) + ".render.png")
    assert screen.shape[:2] == (900, 1400)
    # the window shows the seed's view: the frame with its labelled box and the dark chart panel
    green = np.all(np.abs(screen.astype(int) - (0, 200, 0)) < 30, axis=2)  # Happiness's box and bar
    panel = np.all(np.abs(screen.astype(int) - (30, 30, 30)) < 6, axis=2)
    assert green.sum() > 500 and panel.sum() > 50_000
    # and it is this render: the face's pixels of the rendered view are on the screen
    small = cv2.resize(render, (render.shape[1] // 4, render.shape[0] // 4))
    found = cv2.matchTemplate(cv2.resize(screen, (screen.shape[1] // 4, screen.shape[0] // 4)), small,
                              cv2.TM_CCOEFF_NORMED).max()
    assert found > 0.6


def test_fer_camera_opens_its_window_on_a_desktop(display, tmp_path):
    import signal

    from PIL import ImageGrab

    frames = tmp_path / "portraits.avi"
    import cv2

    writer = cv2.VideoWriter(str(frames), cv2.VideoWriter_fourcc(*"MJPG"), 10, (853, 480))
    for _ in range(600):
        writer.write(cv2.imread(str(DATA / "obama-480p.jpg")))
    writer.release()
    env = {**os.environ, "DISPLAY": display}
    run = subprocess.Popen([sys.executable, "-m", "runtime.camera", "--source", frames, "--detector", "haar"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen, deadline = False, time.monotonic() + 60
    while not seen and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.5)
        screen = np.asarray(ImageGrab.grab(xdisplay=display))[:, :, ::-1]
        seen = np.all(np.abs(screen.astype(int) - (30, 30, 30)) < 6, axis=2).sum() > 50_000  # the chart panel
    run.send_signal(signal.SIGINT)  # Ctrl-C: the run ends cleanly
    _, stderr = run.communicate(timeout=60)
    assert seen, stderr
    assert run.returncode in (0, 130) and "no window" not in stderr


def test_without_a_display_one_line_says_why_and_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = subprocess.run([sys.executable, "-m", "runtime.camera", "--source", DATA / "obama-480p.jpg"], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if "no window" in line]
    assert len(notes) == 1 and "--headless" in notes[0] and "--serve" in notes[0] and "fer-edge[gui]" in notes[0]
    code = ("import numpy as np\nfrom runtime import Visualizer\nv = Visualizer(['a', 'b'])\n"
            "v.update([], np.zeros((10, 10, 3), np.uint8))\nprint(v.show(), v.show())\n")
    shown = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env=env)
    assert shown.stdout.split() == ["-1", "-1"]
    assert shown.stderr.count("Visualizer: no window: no desktop display") == 1
