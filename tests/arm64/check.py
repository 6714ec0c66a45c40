"""The runtime on emulated CPUs, checked against this x86 machine: one line per check, exit 1 on any failure.

    python -m tests.arm64.check --python ARM64_PYTHON --cpu cortex-a72 --cpu cortex-a76 \
        --x86-python X86_PYTHON --x86-cpu Haswell-noTSX

Run by `tests/arm64/run.sh`, which builds ARM64_PYTHON (an aarch64 CPython under qemu user-mode emulation) and
X86_PYTHON (this venv's interpreter under qemu-x86_64: with the Haswell model, onnxruntime picks its AVX2 kernels
even on a VNNI / AVX-512 host), and runs this with the x86 runtime-only venv. For every kernel family (this
machine's own, and each emulated CPU model, qemu's QEMU_CPU):
- the shipped INT8 model on INT8_FACES faces of FER2013Test (when FER+ is at hand): its top label is fp32's on at
  least INT8_AGREEMENT of them, and its accuracy is at most INT8_ACCURACY_DROP points below fp32's (fp32 labels
  computed here: fp32 kernels agree across CPUs within FP32_LIMIT);
For the emulated x86 CPU also the probe's checks below (Haswell runs no subprocess under emulation: those of the
runtime tests and the CLI would run natively). For each emulated aarch64 CPU model:
- the interpreter runs on aarch64 and `import runtime` does not load torch;
- the Haar cascade finds the same boxes as on x86 in the committed portraits;
- the shipped fp32 and INT8 models' probabilities on those faces agree with x86 within FP32_LIMIT / INT8_LIMIT;
- `python -m runtime.camera --headless` on a few frames of the sample clip writes one JSON line and one video
  frame per frame, and finds the faces x86 finds (IoU >= BOX_IOU), give or take one face in ten: aarch64's video
  decoder differs from x86's by a few levels per pixel, which can tip a face at the edge of detection. The run
  detects on every frame, so that no tracking state carries such a difference on;
- the runtime's torch-free tests of the classifier, detectors, solvers and tracking (`RUNTIME_TESTS`, about a
  minute per CPU model; the slow ones, and the YuNet-on-the-clip test that takes minutes emulated, run on x86).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from runtime.boxes import box_iou

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT.parent / "shared" / "media" / "short_hamilton_clip.mp4"
CLIP_FRAMES = 12
# onnxruntime's kernels differ per instruction set: the largest differences measured on these crops were 6.4e-6
# (fp32) with both aarch64 models and 1.2e-7 on Haswell; INT8 (7-bit weights, the stem in float) 0.0 on Haswell
# (the same integers as VNNI) and 1.9e-4 on both aarch64 models (ARM's kernels round the requantization
# differently). The limits leave some headroom; what INT8 users rely on, its labels, is checked on 1000 faces.
FP32_LIMIT = 1e-5
INT8_LIMIT = 5e-4
BOX_IOU = 0.8
INT8_FACES, INT8_AGREEMENT, INT8_ACCURACY_DROP = 1000, 0.95, 0.5
RUNTIME_TESTS = ["tests/test_runtime.py", "tests/test_tracking.py",
                 "--deselect", "tests/test_tracking.py::test_yunet_is_tracked_on_the_clip",
                 "--deselect", "tests/test_runtime.py::test_smoothing_starts_afresh_at_the_clips_scene_cuts"]


def run(python: str, args: list[str], cpu: str | None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """`python args...` from the repository root, the source tree first on the path (QEMU_CPU=cpu when given)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if cpu:
        env["QEMU_CPU"] = cpu
    return subprocess.run([python, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def probe(python: str, cpu: str | None) -> dict:
    """probe.py's record from `python` (raises RuntimeError or subprocess.TimeoutExpired)."""
    done = run(python, ["tests/arm64/probe.py"], cpu, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"probe.py failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


def int8_face_set(work: Path) -> tuple[Path, np.ndarray, np.ndarray] | None:
    """(a .npy of INT8_FACES FER2013Test face crops, their labels, fp32's labels here), or None without FER+."""
    from runtime import ExpressionClassifier
    from tests.conftest import ferplus_root, ferplus_test_faces

    root = ferplus_root()
    if root is None:
        return None
    fp32 = ExpressionClassifier("fp32")
    faces, truth = ferplus_test_faces(root, fp32.labels, INT8_FACES)
    path = work / "int8_faces.npy"
    np.save(path, np.stack(faces))
    fp32_labels = np.concatenate([fp32.predict(faces[i:i + 100]).argmax(1) for i in range(0, len(faces), 100)])
    return path, truth, fp32_labels


def check_int8_faces(python: str, cpu: str | None, name: str, face_set, report: "Report") -> None:
    """The INT8 line of one kernel family (`python` under QEMU_CPU=cpu, or this machine's own)."""
    if face_set is None:
        print(f"skip {name}: INT8 on FER2013Test faces: FER+ not found (../shared/datasets/ferplus or $FERPLUS_ROOT)")
        return
    path, truth, fp32 = face_set
    try:
        done = run(python, ["tests/arm64/probe.py", "--faces", str(path)], cpu, timeout=1800)
        labels = np.array(json.loads(done.stdout)["labels"]) if done.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, KeyError):
        labels = None
    if labels is None or labels.shape != fp32.shape:
        report.line(False, name, "INT8 on FER2013Test faces: the probe failed")
        return
    agree = float((labels == fp32).mean())
    acc_int8, acc_fp32 = 100 * float((labels == truth).mean()), 100 * float((fp32 == truth).mean())
    ok = agree >= INT8_AGREEMENT and acc_int8 >= acc_fp32 - INT8_ACCURACY_DROP
    report.line(ok, name, f"INT8 on {len(fp32)} FER2013Test faces: {acc_int8:.1f}% against fp32's {acc_fp32:.1f}% "
                          f"({acc_int8 - acc_fp32:+.1f} points, limit -{INT8_ACCURACY_DROP}), the same top label on "
                          f"{100 * agree:.1f}% (limit {100 * INT8_AGREEMENT:.0f}%)")


def native_kernels() -> str:
    """This x86 machine's INT8 kernel family, as onnxruntime chooses it (VNNI, else AVX2)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "x86"
    return "x86 VNNI" if "vnni" in flags else "x86 AVX2" if "avx2" in flags else "x86"


def clip_or_portrait_video(work: Path) -> tuple[Path, str]:
    """The sample clip when ../shared has it, else a short video made of the committed portraits."""
    if CLIP.is_file():
        return CLIP, f"{CLIP_FRAMES} frames of {CLIP.name}"
    path = work / "portraits.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    for i in range(CLIP_FRAMES):
        frame = cv2.imread(str(ROOT / "tests" / "data" / "obama-480p.jpg"))
        writer.write(np.roll(cv2.resize(frame, (640, 480)), 4 * i, axis=1))
    writer.release()
    return path, f"a {CLIP_FRAMES}-frame video of a portrait (no {CLIP})"


def camera_run(python: str, cpu: str | None, source: Path, out: Path) -> tuple[list[dict], int, str]:
    """Headless `runtime.camera` on the first CLIP_FRAMES frames: (JSON records, frames in the video, stderr)."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        done = run(python, ["-m", "runtime.camera", "--source", str(source), "--headless", "--detector", "haar",
                            "--detect-every", "1", "--max-frames", str(CLIP_FRAMES), "--json", str(out / "faces.jsonl"),
                            "--output", str(out / "annotated.mp4"), "--threads", "1", "--quiet"], cpu, timeout=600)
    except subprocess.TimeoutExpired:
        return [], 0, "did not finish in 10 minutes"
    if done.returncode != 0:
        return [], 0, (done.stderr.strip().splitlines() or ["no message"])[-1]
    records = [json.loads(line) for line in (out / "faces.jsonl").read_text().splitlines()]
    video = cv2.VideoCapture(str(out / "annotated.mp4"))
    frames = 0
    while video.read()[0]:
        frames += 1
    return records, frames, ""


def face_agreement(ref: list[dict], arm: list[dict]) -> tuple[int, int, int]:
    """(x86 faces that aarch64 finds with IoU >= BOX_IOU, x86 faces, aarch64 faces), over frames in order."""
    found = sum(any(box_iou(face["box"], other["box"]) >= BOX_IOU for other in b["faces"])
                for a, b in zip(ref, arm) for face in a["faces"])
    return found, sum(len(r["faces"]) for r in ref), sum(len(r["faces"]) for r in arm)


class Report:
    """One line per check; remembers whether any failed."""

    def __init__(self):
        self.failed = 0

    def line(self, ok: bool, cpu: str, what: str) -> None:
        self.failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {cpu}: {what}", flush=True)


def check_probe(python: str, cpu: str, name: str, machine: str, ref: dict, report: Report) -> bool:
    """The probe's lines for one emulated CPU; False when the runtime does not run there."""
    try:
        emulated = probe(python, cpu)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        report.line(False, name, f"the runtime does not run: {exc}")
        return False
    report.line(emulated["machine"] == machine and not emulated["torch_loaded"], name,
                f"Python {emulated['python']} on {emulated['machine']}, `import runtime` "
                f"{'loads torch' if emulated['torch_loaded'] else 'without torch'}")
    faces = sum(len(b) for b in ref["boxes"].values())
    report.line(emulated["boxes"] == ref["boxes"], name,
                f"Haar boxes in {len(ref['boxes'])} portraits ({faces} faces) "
                f"{'identical to' if emulated['boxes'] == ref['boxes'] else 'differ from'} this machine's")
    for model, limit in (("fp32", FP32_LIMIT), ("int8", INT8_LIMIT)):
        a, b = np.array(ref["probs"][model]), np.array(emulated["probs"][model])
        diff = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
        report.line(diff <= limit, name, f"{model} probabilities of {len(a)} face crops: max |emulated - native| "
                                         f"{diff:.1e} (limit {limit:.0e})")
    return True


def check_cpu(python: str, cpu: str, ref: dict, ref_camera, source: Path, source_name: str, work: Path,
              face_set, report: Report) -> None:
    name = f"arm64 {cpu}"
    if not check_probe(python, cpu, name, "aarch64", ref, report):
        return
    check_int8_faces(python, cpu, name, face_set, report)
    records, frames, error = camera_run(python, cpu, source, work / cpu)
    if error:
        report.line(False, name, f"fer-camera --headless on {source_name}: {error}")
    else:
        found, total, arm_total = face_agreement(ref_camera, records)
        slack = max(1, total // 10)
        ok = len(records) == frames == CLIP_FRAMES and total - found <= slack and arm_total - found <= slack
        report.line(ok, name, f"fer-camera --headless on {source_name}: {len(records)} JSON lines, "
                             f"{frames}-frame video, {found} of x86's {total} faces found (IoU >= {BOX_IOU}), "
                             f"{arm_total - found} others")
    started = time.monotonic()
    try:
        done = run(python, ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", *RUNTIME_TESTS], cpu)
    except subprocess.TimeoutExpired:
        report.line(False, name, "runtime tests: did not finish in 30 minutes")
        return
    summary = (done.stdout.strip().splitlines() or ["no output"])[-1]
    report.line(done.returncode == 0, name, f"runtime tests: {summary} ({time.monotonic() - started:.0f} s)")
    if done.returncode != 0:
        print(done.stdout[-3000:], file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", required=True, help="the aarch64 interpreter (a wrapper that runs it under qemu)")
    p.add_argument("--cpu", action="append", required=True, help="qemu CPU model, e.g. cortex-a72 (repeatable)")
    p.add_argument("--x86-python", help="this venv's interpreter under qemu-x86_64 (a wrapper)")
    p.add_argument("--x86-cpu", action="append", default=[], help="its qemu CPU model, e.g. Haswell-noTSX")
    args = p.parse_args(argv)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="fer-emulated-") as tmp:
        work = Path(tmp)
        ref = probe(sys.executable, None)
        face_set = int8_face_set(work)
        check_int8_faces(sys.executable, None, f"{native_kernels()} (this machine)", face_set, report)
        for cpu in args.x86_cpu if args.x86_python else []:
            if check_probe(args.x86_python, cpu, f"x86 {cpu}", "x86_64", ref, report):
                check_int8_faces(args.x86_python, cpu, f"x86 {cpu}", face_set, report)
        source, source_name = clip_or_portrait_video(work)
        ref_camera, _, error = camera_run(sys.executable, None, source, work / "x86")
        if error:
            report.line(False, "x86", f"fer-camera --headless on {source_name}: {error}")
            return 1
        for cpu in args.cpu:
            check_cpu(args.python, cpu, ref, ref_camera, source, source_name, work, face_set, report)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
