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


TORCH_MODULES = ("benchmarks.train_speed", "export.to_onnx", "training.eval", "training.pack", "training.train")
NEEDS_EXTRA = ("this command needs PyTorch, part of the training extra: pip install 'fer-edge[train]' "
               "(or, in a checkout: pip install -e '.[train]')")


@pytest.mark.parametrize("module", TORCH_MODULES)
def test_python_m_of_a_torch_module_without_torch_is_one_line(module):
    """`python -m training.train` and the like in a runtime-only install: one line naming the extra, exit 2. Where
    torch is installed it is hidden from the interpreter (runpy runs the module as `python -m` does); in the
    torch-free venv it is the real `python -m`."""
    if _has_torch():
        code = (f"import runpy, sys; sys.modules['torch'] = None; sys.argv = ['{module}', '--help']; "
                f"runpy.run_module('{module}', run_name='__main__', alter_sys=True)")
        command = [sys.executable, "-c", code]
    else:
        command = [sys.executable, "-m", module, "--help"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == f"python -m {module}: error: {NEEDS_EXTRA}"


def test_the_package_ships_yunet_and_its_license():
    """What `pip install .` puts on disk includes YuNet and its license (package data, not only the checkout)."""
    files = metadata.files("fer-edge") if _requirements() else None
    names = {str(f) for f in files or []}
    if not any(name.endswith("runtime/camera.py") for name in names):
        pytest.skip("an editable install (pip install -e .): the package's files are the checkout's")
    assert {"runtime/data/face_detection_yunet_2026may.onnx", "runtime/data/LICENSE-YuNet.txt"} <= names
