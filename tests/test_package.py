"""The installed package: what a runtime-only install pulls in, and every console script and `python -m` entry."""
from __future__ import annotations

import json
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


# a valid command line for each: the options are read (torch-free) before torch is asked for
RUN_ARGS = {"fer-export": ["--checkpoint", "a.pth", "--output", "a.onnx"], "fer-train": ["--data", "ferplus:x"],
            "fer-eval": ["--model", "a.pth", "--data", "ferplus:x"], "fer-bench-train": []}


def _without_torch(code: str, argv: list[str]) -> subprocess.CompletedProcess:
    """Run `code` with torch hidden from the interpreter (as in a runtime-only install) and `argv` as sys.argv."""
    code = f"import sys; sys.modules['torch'] = None; sys.argv = {argv!r}; {code}"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_torch_commands_without_torch_say_what_to_install(name):
    """As in a runtime-only install: torch hidden from the interpreter, running the command says so in one line."""
    launcher = LAUNCHERS[name].split(":")[1]
    done = _without_torch(f"from training import launch; launch.{launcher}()", [name, *RUN_ARGS[name]])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"{name}: error: this command needs PyTorch, part of the training extra: "
                                   "pip install 'fer-edge[train]' (or, in a checkout: pip install -e '.[train]')")


HELP_DEFAULTS = {"fer-train": "--epochs EPOCHS       length of the cosine schedule (default: 60)",
                 "fer-eval": "(default: test)", "fer-export": "--opset OPSET         ONNX opset of the graph (default: 17)",
                 "fer-bench-train": "--steps STEPS         timed calls per row (default: 12)"}


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_torch_commands_print_their_help_without_torch(name):
    """`fer-train --help` and the others answer in a runtime-only install, with the module's usage text and every
    default shown; a usage error is argparse's one line (exit 2), not the torch message."""
    launcher = LAUNCHERS[name].split(":")[1]
    done = _without_torch(f"from training import launch; launch.{launcher}()", [name, "--help"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {name} ") and HELP_DEFAULTS[name] in " ".join(done.stdout.split("\n"))
    assert "python -m" in done.stdout  # the module docstring's example command
    wrong = _without_torch(f"from training import launch; launch.{launcher}()",
                           [name, *RUN_ARGS[name], "--no-such-option"])
    assert wrong.returncode == 2 and "unrecognized arguments: --no-such-option" in wrong.stderr
    assert "PyTorch" not in wrong.stderr


def test_fer_eval_on_an_onnx_model_runs_without_torch(ferplus, tmp_path):
    """`fer-eval --model MODEL.onnx` needs no torch, as the README says: the shipped model on 300 FER+ test faces."""
    from runtime import DEFAULT_MODEL

    out = tmp_path / "eval"
    done = _without_torch("from training import launch; launch.evaluate()",
                          ["fer-eval", "--model", str(DEFAULT_MODEL), "--data", f"ferplus:{ferplus}", "--limit", "300",
                           "--out", str(out)])
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "metrics.json").read_text())
    assert report["images"] == 300 and report["accuracy"] > 0.75
    assert f"Accuracy: {100 * report['accuracy']:.2f}% on 300 images" in done.stdout
    assert "\r" not in done.stderr  # stderr is a pipe: progress as plain lines, never carriage returns


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("module", sorted(SCRIPTS.values()))
def test_python_m_help(module):
    """Every command's --help answers, in a runtime-only install too (the torch commands read their options first)."""
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "usage:" in done.stdout


# python -m of these with a valid command line (their --help answers without torch: the options come first)
MODULE_ARGS = {"export.to_onnx": RUN_ARGS["fer-export"], "training.eval": RUN_ARGS["fer-eval"],
               "training.train": RUN_ARGS["fer-train"], "benchmarks.train_speed": []}
TORCH_MODULES = ("benchmarks.train_speed", "export.to_onnx", "training.eval", "training.pack", "training.train")
NEEDS_EXTRA = ("this command needs PyTorch, part of the training extra: pip install 'fer-edge[train]' "
               "(or, in a checkout: pip install -e '.[train]')")


@pytest.mark.parametrize("module", TORCH_MODULES)
def test_python_m_of_a_torch_module_without_torch_is_one_line(module):
    """`python -m training.train` and the like in a runtime-only install: one line naming the extra, exit 2. Where
    torch is installed it is hidden from the interpreter (runpy runs the module as `python -m` does); in the
    torch-free venv it is the real `python -m`."""
    argv = [module, *MODULE_ARGS.get(module, ["--help"])]
    if _has_torch():
        code = (f"import runpy, sys; sys.modules['torch'] = None; sys.argv = {argv!r}; "
                f"runpy.run_module('{module}', run_name='__main__', alter_sys=True)")
        command = [sys.executable, "-c", code]
    else:
        command = [sys.executable, "-m", *argv]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    prog = "fer-eval" if module == "training.eval" else f"python -m {module}"
    assert done.stderr.strip() == f"{prog}: error: {NEEDS_EXTRA}"


def test_the_package_ships_yunet_and_its_license():
    """What `pip install .` puts on disk includes YuNet and its license (package data, not only the checkout)."""
    files = metadata.files("fer-edge") if _requirements() else None
    names = {str(f) for f in files or []}
    if not any(name.endswith("runtime/camera.py") for name in names):
        pytest.skip("an editable install (pip install -e .): the package's files are the checkout's")
    assert {"runtime/data/face_detection_yunet_2026may.onnx", "runtime/data/LICENSE-YuNet.txt"} <= names
