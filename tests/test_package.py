"""The package: runtime-only dependencies, console scripts and `python -m` entry points."""
from __future__ import annotations

import configparser
import subprocess
import sys

import pytest

from .conftest import ROOT


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def test_runtime_install_pulls_no_torch():
    requires = _setup_cfg()["options"]["install_requires"]
    assert "torch" not in requires and "opencv-python-headless>=4.8,<5" in requires
    assert "torch>=2.2" in _setup_cfg()["options.extras_require"]["train"]


def test_console_scripts_declared():
    scripts = _setup_cfg()["options.entry_points"]["console_scripts"]
    for name, target in [("fer-camera", "runtime.camera:main"), ("fer-export", "export.to_onnx:main"),
                         ("fer-train", "training.train:main"), ("fer-eval", "training.eval:main"),
                         ("fer-bench", "benchmarks.fps:main")]:
        assert f"{name} = {target}" in scripts


@pytest.mark.parametrize("module", ["runtime.camera", "export.to_onnx", "training.train", "training.eval",
                                    "benchmarks.fps"])
def test_python_m_help(module):
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "usage:" in done.stdout
