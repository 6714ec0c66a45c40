"""The aarch64 check's own logic (the check itself runs in CI: `make test-arm64`)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.arm64.check import face_agreement

ROOT = Path(__file__).resolve().parent.parent


def _record(*boxes):
    return {"faces": [{"box": list(b)} for b in boxes]}


def test_face_agreement_counts_matches_misses_and_extras():
    x86 = [_record((10, 10, 50, 50)), _record((12, 10, 50, 50), (200, 50, 40, 40)), _record()]
    arm = [_record((11, 10, 49, 49)), _record((12, 10, 50, 50)), _record((300, 300, 30, 30))]
    assert face_agreement(x86, arm) == (2, 3, 3)


def test_run_sh_skips_with_its_reason_when_it_cannot_set_up(tmp_path):
    env = dict(os.environ, RT_PY=str(tmp_path / "missing" / "python"), FER_EDGE_ARM64_CACHE=str(tmp_path / "cache"))
    done = subprocess.run(["bash", "tests/arm64/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 77
    lines = done.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("arm64 check skipped: ")
    assert "runtime venv" in lines[-1] or "x86_64" in lines[-1] or "apt-get" in lines[-1]
    assert not (tmp_path / "cache").exists()
