"""The installed package: what a runtime-only install pulls in, and every console script and `python -m` entry."""
from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

from .conftest import ROOT

SCRIPTS = {"fer-camera": "runtime.camera", "fer-models": "runtime.models", "fer-export": "export.to_onnx",
           "fer-train": "training.train", "fer-eval": "training.eval", "fer-bench": "benchmarks.fps",
           "fer-bench-train": "benchmarks.train_speed"}
# the torch-needing commands start through training.launch, which says what to install when torch is missing
LAUNCHERS = {"fer-export": "training.launch:export", "fer-train": "training.launch:train",
             "fer-eval": "training.launch:evaluate", "fer-bench-train": "training.launch:bench_train"}
TORCH_FREE = ("runtime.camera", "runtime.models", "benchmarks.fps")


def _requirements() -> list[str]:
    try:
        return metadata.requires("fer-edge") or []
    except metadata.PackageNotFoundError:
        pytest.skip("fer-edge is not installed (pip install -e .)")


def test_runtime_install_pulls_no_torch():
    """What `pip install .` installs (requirements without an extra): no torch, an OpenCV with CascadeClassifier."""
    plain = [r for r in _requirements() if "extra ==" not in r]
    assert plain and not any(r.split(";")[0].strip().startswith(("torch", "torchvision", "timm")) for r in plain)
    assert any(r.startswith("opencv-python-headless") and "<5" in r for r in plain)
    train = [r for r in _requirements() if "extra == \"train\"" in r]
    assert any(r.startswith("torch") for r in train) and any(r.startswith("timm") for r in train)


def test_console_scripts_resolve_to_main_functions():
    _requirements()
    scripts = {ep.name: ep for ep in metadata.entry_points(group="console_scripts") if ep.name in SCRIPTS}
    assert set(scripts) == set(SCRIPTS)
    for name, module in SCRIPTS.items():
        assert scripts[name].value == LAUNCHERS.get(name, f"{module}:main")
        assert callable(scripts[name].load())


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_torch_commands_without_torch_say_what_to_install(name):
    """As in a runtime-only install: torch hidden from the interpreter, the command says so in one line."""
    launcher = LAUNCHERS[name].split(":")[1]
    code = f"import sys; sys.modules['torch'] = None; from training import launch; launch.{launcher}()"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"{name}: error: this command needs PyTorch, part of the training extra: "
                                   "pip install 'fer-edge[train]' (or, in a checkout: pip install -e '.[train]')")


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("module", sorted(SCRIPTS.values()))
def test_python_m_help(module):
    if module not in TORCH_FREE and not _has_torch():
        pytest.skip("needs torch (the train extra: pip install -e '.[train]')")
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "usage:" in done.stdout
