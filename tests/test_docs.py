"""The documentation is checked: the README's quick start runs as written on the checkout's files, every relative
link and image of the README and docs/ points at a file (and heading) that exists, and every option of every console
script is in docs/cli.md."""
from __future__ import annotations

import configparser
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "ckpt" / "MODEL_CARD.md", *sorted((ROOT / "docs").glob("*.md"))]
MODULES = {"fer-camera": "runtime.camera", "fer-batch": "runtime.batch"}
OUTPUT_OPTIONS = ("--output", "--json", "--summary", "--plot")
NEEDS_TORCH = ("fer-train", "fer-eval", "fer-export", "fer-bench-train")


def quickstart() -> list[str]:
    """The commands between the README's quickstart markers (comments removed)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- quickstart.*?-->(.*?)<!-- /quickstart -->", text, re.S)
    assert block, "README.md has no <!-- quickstart --> block"
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line.startswith("fer-")]


def needs_hardware(command: list[str]) -> str | None:
    """Why a command cannot run here (a camera, the Pi Camera Module, an MQTT broker), or None."""
    if "--mqtt" in command:
        return "needs an MQTT broker"
    if command[0] == "fer-camera":
        source = command[command.index("--source") + 1] if "--source" in command else "0"
        if source.isdigit() or source.startswith(("picamera", "/dev/video", "rtsp:", "http")):
            return "needs a camera"
    return None


def test_the_quickstart_holds_the_five_common_tasks_and_an_archive():
    commands = quickstart()
    assert len(commands) == 6
    joined = "\n".join(commands)
    for part in ("--source tests/data ", ".mp4 --headless", "--serve 8080", "--source picamera", "--mqtt ", "fer-batch "):
        assert part in joined


@pytest.mark.parametrize("line", quickstart())
def test_a_quickstart_command_runs_as_written_and_writes_its_outputs(line: str, tmp_path: Path):
    command = shlex.split(line)
    reason = needs_hardware(command)
    if reason:
        pytest.skip(f"{reason}: {line}")
    if command[0] == "fer-batch" and importlib.util.find_spec("pyarrow") is None:
        pytest.skip("fer-batch writes Parquet: needs pyarrow (pip install '.[batch]', as the README says)")
    shutil.copytree(ROOT / "tests" / "data", tmp_path / "tests" / "data")  # a fresh checkout's files
    run = subprocess.run([sys.executable, "-m", MODULES[command[0]], *command[1:]], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    outputs = [command[i + 1] for i, word in enumerate(command) if word in OUTPUT_OPTIONS]
    assert outputs
    for output in outputs:
        path = tmp_path / output
        assert path.exists(), f"{line}: {output} was not written"
        assert (path.stat().st_size if path.is_file() else sum(1 for _ in path.rglob("*"))) > 0
    if command[0] == "fer-batch":
        assert (tmp_path / "results" / "manifest.jsonl").is_file() and any((tmp_path / "results" / "parts").iterdir())


def test_the_readme_python_example_runs_and_prints_what_it_says():
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## Python API.*?```python\n(.*?)```", text, re.S).group(1)
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    first = run.stdout.splitlines()[0]
    assert '"Class": ["Happiness"]' in first and '"Boxes": [[381, 51, 122, 122]]' in first
    assert run.stdout.splitlines()[1] == "0.0 [(0, 'Happiness', 1.0)]" and len(run.stdout.splitlines()) == 41


def test_progress_in_a_log_is_plain_lines_never_carriage_returns(tmp_path: Path):
    """fer-camera --headless with stderr a file (a log): its progress as a plain line at most every 10 s."""
    log = tmp_path / "log.txt"
    with open(log, "w") as stderr:
        run = subprocess.run([sys.executable, "-m", "runtime.camera", "--source", str(ROOT / "tests" / "data" /
                              "portrait_pan.mp4"), "--headless", "--json", str(tmp_path / "out.jsonl")], cwd=ROOT,
                             stderr=stderr, stdout=subprocess.PIPE, text=True, timeout=120)
    assert run.returncode == 0
    text = log.read_text()
    assert "\r" not in text and "40 frames, 40 faces" in text
    assert all(len(line) < 300 for line in text.splitlines())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, re.M)}


def test_every_relative_link_and_image_points_at_a_file_and_heading_that_exist():
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_is_short_and_the_model_card_too():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
    assert len((ROOT / "ckpt" / "MODEL_CARD.md").read_text().splitlines()) <= 150


def console_scripts() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)


def help_text(script: str, entry: str, *args: str) -> str:
    module, function = entry.split(":")
    code = f"import sys; sys.argv[0] = {script!r}; from {module} import {function}; sys.exit({function}())"
    run = subprocess.run([sys.executable, "-c", code, *args, "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, f"{script} --help: {run.stderr}"
    return run.stdout


@pytest.mark.parametrize("script", sorted(console_scripts()))
def test_every_option_of_every_console_script_is_in_docs_cli(script: str):
    entry = console_scripts()[script]
    texts = [help_text(script, entry)]
    if script == "fer-models":
        texts += [help_text(script, entry, sub) for sub in ("list", "download")]
    options = {m.group(1) for text in texts for m in re.finditer(r"^\s{2}(?:-\w, )?(--[a-z0-9][a-z0-9-]*)", text, re.M)}
    options.discard("--help")
    assert options, f"{script} --help lists no options"
    cli = (ROOT / "docs" / "cli.md").read_text()
    missing = sorted(o for o in options if not re.search(rf"`{re.escape(o)}[` \\]", cli))
    assert not missing, f"{script}: {missing} not in docs/cli.md"
    assert f"`{script}`" in cli or f"## {script}" in cli
