"""fer-batch over archives: real photos and videos of real faces (the repository's portraits, videos made of them, and
../shared/media's clip where present), run as a user runs it (the console command in a subprocess), with worker
processes, a local Ray and a two-node Ray cluster on loopback."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.batch.sources import Source, find_sources, plan_tasks
from runtime.batch.task import Settings, TaskRunner, face_row
from runtime.outputs import UsageError

from .conftest import DATA, ROOT, SHIPPED_ONNX

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None
HAS_RAY = importlib.util.find_spec("ray") is not None
needs_pyarrow = pytest.mark.skipif(not HAS_PYARROW, reason="needs pyarrow (pip install 'fer-edge[batch]')")
needs_ray = pytest.mark.skipif(not (HAS_RAY and HAS_PYARROW),
                               reason="needs Ray Data (pip install 'fer-edge[cluster]'; make install-dev has it)")


def write_video(path: Path, frames: int = 40, fps: float = 10.0) -> Path:
    """A video of the Obama portrait panning slowly across the frame: a real face in every frame."""
    portrait = cv2.imread(str(DATA / "obama-480p.jpg"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (480, 360))
    for i in range(frames):
        x = 150 + 3 * (i % 60)  # within the portrait's 853 px
        writer.write(cv2.resize(portrait[40:400, x:x + 480], (480, 360)))
    writer.release()
    assert path.stat().st_size > 1000
    return path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """Two videos (one in a subfolder), three photos, a text file and a hidden file that are not inputs."""
    root = tmp_path / "archive"
    (root / "sub").mkdir(parents=True)
    write_video(root / "talk.mp4")
    write_video(root / "sub" / "panel.mp4", frames=30)
    shutil.copy(DATA / "obama-480p.jpg", root / "obama.jpg")
    shutil.copy(DATA / "biden.jpg", root / "sub" / "biden.jpg")
    shutil.copy(DATA / "obama-1080p.jpg", root / "sub" / "obama-1080p.jpg")
    (root / "notes.txt").write_text("not an input")
    (root / ".hidden.jpg").write_bytes(b"not read")
    return root


def fer_batch(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime.batch", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def read_rows(output: Path) -> list[dict]:
    """Every row of an output folder, whatever its format, sorted."""
    parts = sorted((output / "parts").iterdir())
    if parts and parts[0].suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = [row for part in parts for row in pq.read_table(part).to_pylist()]
    else:
        rows = [json.loads(line) for part in parts for line in part.read_text().splitlines()]
    return sorted(rows, key=lambda r: (r["source"], r["frame"], r["x"], r["y"]))


def manifest(output: Path) -> dict[str, dict]:
    entries = {}
    for line in (output / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        entries[entry["source"]] = entry
    return entries


def assert_consistent(output: Path) -> None:
    """Every part a done source names exists and holds its rows; no part is named by nobody; no temporary left."""
    entries = manifest(output)
    named = {e["part"] for e in entries.values() if e["status"] == "done"}
    assert {p.name for p in (output / "parts").iterdir()} == named
    rows = read_rows(output)
    for source, entry in entries.items():
        assert sum(r["source"] == source for r in rows) == (entry["faces"] if entry["status"] == "done" else 0)


# what is given

def test_sources_are_found_recursively_and_by_glob_each_once(archive: Path):
    found = find_sources([str(archive)])
    names = sorted(Path(s.path).relative_to(archive).as_posix() for s in found)
    assert names == ["obama.jpg", "sub/biden.jpg", "sub/obama-1080p.jpg", "sub/panel.mp4", "talk.mp4"]
    assert {s.kind for s in found if s.path.endswith(".mp4")} == {"video"}
    by_glob = find_sources([f"{archive}/**/*.mp4", str(archive / "talk.mp4")])
    assert sorted(Path(s.path).name for s in by_glob) == ["panel.mp4", "talk.mp4"]
    with pytest.raises(UsageError, match="source not found: .*nothing-here"):
        find_sources([str(archive / "nothing-here")])
    with pytest.raises(UsageError, match="matches no photo or video"):
        find_sources([f"{archive}/*.flac"])
    with pytest.raises(UsageError, match="notes.txt is neither a photo .* nor a video"):
        find_sources([str(archive / "notes.txt")])


def test_tasks_are_one_per_video_largest_first_and_photos_in_chunks_every_worker_gets():
    videos = [Source(f"/v{i}.mp4", "video", size, 0) for i, size in enumerate((10, 30, 20))]
    photos = [Source(f"/p{i}.jpg", "photo", 1, 0) for i in range(10)]
    tasks = plan_tasks(videos + photos, workers=1, photos_per_task=3)
    assert [t.sources[0].path for t in tasks[:3]] == ["/v1.mp4", "/v2.mp4", "/v0.mp4"]
    assert [len(t.sources) for t in tasks[3:]] == [3, 3, 3, 1]
    assert [len(t.sources) for t in plan_tasks(photos * 2, workers=2)] == [3, 3, 3, 3, 3, 3, 2]  # 4 or more each


# what it writes

@needs_pyarrow
def test_an_archive_gives_rows_a_summary_and_a_manifest_with_real_labels(archive: Path, tmp_path: Path):
    out = tmp_path / "out"
    run = fer_batch(archive, "--output", out, "--workers", "2")
    assert run.returncode == 0, run.stderr
    assert "5 sources done, 0 skipped (done before), 0 failed; 73 frames" in run.stderr
    rows = read_rows(out)
    columns = list(rows[0])
    from runtime.classifier import ExpressionClassifier

    labels = ExpressionClassifier().labels
    assert columns == ["source", "frame", "timestamp", "track_id", "x", "y", "w", "h", "label", "probability",
                       *labels, "detector_score", "quality", "reliable", "sharpness", "yaw", "pitch", "roll"]
    photo = next(r for r in rows if r["source"].endswith("/obama.jpg"))
    assert photo["label"] == "Happiness" and photo["frame"] == 0 and photo["timestamp"] is None
    assert photo["track_id"] is None and photo["reliable"] is True and 100 < photo["w"] < 160
    talk = [r for r in rows if r["source"].endswith("talk.mp4")]
    assert [r["frame"] for r in talk] == list(range(40))  # one face per frame, every frame
    assert [r["timestamp"] for r in talk[:3]] == [0.0, 0.1, 0.2]
    assert {r["track_id"] for r in talk} == {0} and {r["label"] for r in talk} == {"Happiness"}
    import pyarrow.parquet as pq

    summary = pq.read_table(out / "summary.parquet").to_pylist()
    talk_summary = next(s for s in summary if s["source"].endswith("talk.mp4"))
    assert talk_summary["faces"] == 40 and talk_summary["frames"] == 40 and talk_summary["duration_s"] == 4.0
    assert talk_summary["label"] == "Happiness" and talk_summary["share_Happiness"] == 1.0
    assert talk_summary["start_s"] == 0.0 and talk_summary["end_s"] == 3.9
    entries = manifest(out)
    assert {e["status"] for e in entries.values()} == {"done"} and len(entries) == 5
    assert json.loads((out / "fer-batch.json").read_text())["labels"] == labels
    assert not (out / ".tmp").exists()
    assert sorted(p.name for p in archive.rglob("*")) == sorted(  # nothing written next to an input
        ["sub", "talk.mp4", "panel.mp4", "obama.jpg", "biden.jpg", "obama-1080p.jpg", "notes.txt", ".hidden.jpg"])


def test_video_rows_are_the_video_solvers_and_photo_rows_fer_cameras(archive: Path, tmp_path: Path):
    """The task function gives what `VideoSolver` (tracking, smoothing) and the photo path give on their own."""
    from runtime import ExpressionClassifier, FramePipeline, LinearExponentialSmoothing, VideoSolver
    from runtime.detectors import create_detector
    from runtime.photos import read_photo

    runner = TaskRunner(Settings(str(SHIPPED_ONNX)))
    video = Source.of(archive / "talk.mp4")
    output = runner.run(plan_tasks([video])[0])
    classifier = ExpressionClassifier(threads=1)
    solver = VideoSolver(create_detector("auto", None, 640), classifier, smoother=LinearExponentialSmoothing(0.3))
    expected = []
    for index, (results, _) in enumerate(solver.start(archive / "talk.mp4")):
        expected += [face_row(video.path, index, round(index / 10.0, 3), r, classifier.labels) for r in results]
    assert output.rows == expected and output.results[0].status == "done"
    photo = Source.of(archive / "sub" / "biden.jpg")
    pipeline = FramePipeline(create_detector(), classifier, photos=True)
    expected = [face_row(photo.path, 0, None, r, classifier.labels)
                for r in pipeline(read_photo(archive / "sub" / "biden.jpg"))]
    assert runner.run(plan_tasks([photo])[0]).rows == expected and len(expected) == 1


def test_jsonl_rows_need_no_pyarrow_and_parquet_without_it_says_what_to_install(archive: Path, tmp_path: Path):
    hide = "import sys; sys.modules['pyarrow'] = None; from runtime.batch.cli import main; sys.exit(main(sys.argv[1:]))"
    code = [sys.executable, "-c", hide, str(archive / "obama.jpg"), "--output"]
    run = subprocess.run([*code, str(tmp_path / "a")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip() == ("fer-batch: error: --format parquet needs pyarrow: pip install 'fer-edge[batch]' "
                                  "(pyarrow), or give --format jsonl")
    assert not (tmp_path / "a").exists()
    run = subprocess.run([*code, str(tmp_path / "b"), "--format", "jsonl"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = read_rows(tmp_path / "b")
    assert len(rows) == 1 and rows[0]["label"] == "Happiness"
    summary = [json.loads(line) for line in (tmp_path / "b" / "summary.jsonl").read_text().splitlines()]
    assert summary[0]["faces"] == 1 and summary[0]["share_Happiness"] == 1.0


# resumable and safe

def test_a_rerun_does_nothing_and_a_touched_file_is_redone_without_duplicate_rows(archive: Path, tmp_path: Path):
    (archive / "more").mkdir()
    for i in range(6):  # 9 photos: chunks of 3 with one worker
        shutil.copy(DATA / "obama-480p.jpg", archive / "more" / f"p{i}.jpg")
    out = tmp_path / "out"
    first = fer_batch(archive, "--output", out, "--format", "jsonl", "--workers", "1", "--photos-per-task", "3")
    assert first.returncode == 0, first.stderr
    assert "in 5 tasks on 1 worker process" in first.stderr  # 2 videos, 3 chunks of 3 photos
    rows, lines = read_rows(out), (out / "manifest.jsonl").read_text()
    again = fer_batch(archive, "--output", out, "--format", "jsonl")
    assert again.returncode == 0, again.stderr
    assert "11 sources, 11 done before; nothing to do" in again.stderr
    assert "0 sources done, 11 skipped (done before), 0 failed; 0 frames" in again.stderr
    assert (out / "manifest.jsonl").read_text() == lines and read_rows(out) == rows
    time.sleep(0.01)
    (archive / "sub" / "panel.mp4").touch()
    (archive / "sub" / "biden.jpg").touch()  # one photo of a chunk of three: its rows leave that part
    redo = fer_batch(archive, "--output", out, "--format", "jsonl")
    assert redo.returncode == 0, redo.stderr
    assert "2 sources done, 9 skipped (done before), 0 failed; 31 frames" in redo.stderr
    assert read_rows(out) == rows  # the same rows, none twice
    assert_consistent(out)


def test_a_corrupt_video_and_photo_among_good_ones_are_one_warning_each_and_exit_1(archive: Path, tmp_path: Path):
    (archive / "broken.mp4").write_bytes((archive / "talk.mp4").read_bytes()[:3000])
    (archive / "cut.jpg").write_bytes((DATA / "biden.jpg").read_bytes()[:2000])
    biden = (DATA / "biden.jpg").read_bytes()
    (archive / "half.jpg").write_bytes(biden[:len(biden) * 2 // 3])  # the face is in the part that can be read
    out = tmp_path / "out"
    run = fer_batch(archive, "--output", out, "--format", "jsonl")
    assert run.returncode == 1
    warnings = [line for line in run.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 3 and "Traceback" not in run.stderr
    assert f"{archive / 'half.jpg'}: the decoder says 'Premature end of JPEG file' (the part it could read is used)" \
        in run.stderr
    assert any(f"{archive / 'broken.mp4'}: cannot open video" in w for w in warnings)
    assert any(f"{archive / 'cut.jpg'}: not an image file OpenCV can decode" in w for w in warnings)
    assert "6 sources done, 0 skipped (done before), 2 failed" in run.stderr
    entries = manifest(out)
    assert entries[str(archive / "half.jpg")]["status"] == "done" and entries[str(archive / "half.jpg")]["faces"] == 1
    assert entries[str(archive / "broken.mp4")]["status"] == "failed"
    assert "cannot open video" in entries[str(archive / "broken.mp4")]["error"]
    assert_consistent(out)
    again = fer_batch(archive, "--output", out, "--format", "jsonl")  # failed, unchanged: not tried again
    assert again.returncode == 1 and "(2 of them failed: --retry-failed tries them again)" in again.stderr
    retried = fer_batch(archive, "--output", out, "--format", "jsonl", "--retry-failed")
    assert retried.returncode == 1 and "0 sources done, 6 skipped (done before), 2 failed" in retried.stderr


def test_ctrl_c_stops_after_the_tasks_in_flight_and_a_rerun_does_the_rest(tmp_path: Path):
    archive = tmp_path / "videos"
    archive.mkdir()
    for i in range(6):
        write_video(archive / f"v{i}.mp4", frames=120)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "runtime.batch", str(archive), "--output", str(out),
                                "--format", "jsonl", "--workers", "2"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any((out / "parts").glob("*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "stopping after the tasks in flight" in stderr and "(stopped by Ctrl-C)" in stderr
    assert "Traceback" not in stderr
    done = [e for e in manifest(out).values() if e["status"] == "done"]
    assert 1 <= len(done) < 6
    assert_consistent(out)
    rest = fer_batch(archive, "--output", out, "--format", "jsonl")
    assert rest.returncode == 0, rest.stderr
    assert f"{6 - len(done)} sources done, {len(done)} skipped (done before)" in rest.stderr
    rows = read_rows(out)
    assert len(rows) == 720 and len({(r["source"], r["frame"]) for r in rows}) == 720
    assert_consistent(out)


def test_an_output_folder_holding_something_else_or_other_settings_is_refused(archive: Path, tmp_path: Path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.docx").write_text("mine")
    run = fer_batch(archive / "obama.jpg", "--output", other, "--format", "jsonl")
    assert run.returncode == 2 and sorted(p.name for p in other.iterdir()) == ["thesis.docx"]
    assert run.stderr.strip() == f"fer-batch: error: --output {other} holds other files; give a new folder or one " \
                                 "fer-batch wrote"
    out = tmp_path / "out"
    assert fer_batch(archive / "obama.jpg", "--output", out, "--format", "jsonl").returncode == 0
    run = fer_batch(archive / "obama.jpg", "--output", out, "--format", "jsonl", "--smoothing", "0.5")
    assert run.returncode == 2
    assert "holds results made with other settings (smoothing 0.3 there, 0.5 now)" in run.stderr
    run = fer_batch(archive / "obama.jpg", "--output", archive / "obama.jpg")
    assert run.returncode == 2 and "is one of the inputs" in run.stderr
    for args, message in (((archive / "missing",), "source not found"), ((archive, "--workers", "0"), "--workers"),
                          ((archive, "--address", "auto"), "--address goes with --engine ray")):
        run = fer_batch(*args, "--output", tmp_path / "never")
        assert run.returncode == 2 and message in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()


def test_progress_is_a_plain_line_in_a_log_never_carriage_returns(archive: Path, tmp_path: Path):
    from runtime.progress import progress

    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        bar = progress(total=10, desc="sources", unit="source", file=f, every_s=0.0)
        bar.update(3)
        bar.set_postfix_str("frames 120, faces 80")
        assert list(progress(range(4), desc="evaluate", file=f, every_s=0.0, leave=False)) == [0, 1, 2, 3]
    lines = log.read_text().splitlines()
    assert "\r" not in log.read_text() and lines[1].startswith("sources:  30% 3/10 [00:00<")
    assert lines[1].endswith("frames 120, faces 80]") and lines[-1].startswith("evaluate: 100% 4/4 [00:00<00:00")
    run = fer_batch(archive, "--output", tmp_path / "out", "--format", "jsonl")  # stderr is a pipe here
    assert run.returncode == 0 and "\r" not in run.stderr


# Ray

def ray_env(tmp_path: Path) -> dict:
    """A private HOME: Ray 2.60 turns on token authentication at `ray start --head` when ~/.ray/auth_token exists
    (any earlier ray.init makes one), and a second node without the token is then refused."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}


@needs_ray
@pytest.mark.slow
def test_ray_local_gives_the_same_rows_as_the_local_engine(archive: Path, tmp_path: Path):
    local = fer_batch(archive, "--output", tmp_path / "local", "--workers", "2")
    assert local.returncode == 0, local.stderr
    ray = fer_batch(archive, "--output", tmp_path / "ray", "--engine", "ray", "--workers", "2", env=ray_env(tmp_path))
    assert ray.returncode == 0, ray.stderr
    assert "Ray: 2 CPUs in 1 node(s), 2 actor(s)" in ray.stderr
    assert read_rows(tmp_path / "ray") == read_rows(tmp_path / "local") and len(read_rows(tmp_path / "ray")) == 73


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_ray
@pytest.mark.slow
def test_a_two_node_ray_cluster_on_loopback_runs_the_same_job(archive: Path, tmp_path: Path):
    env = {**os.environ, **ray_env(tmp_path)}
    ray = [str(Path(sys.executable).with_name("ray"))]
    if not Path(ray[0]).is_file():
        ray = [sys.executable, "-m", "ray.scripts.scripts"]
    port = _free_port()
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    try:
        head = subprocess.run([*ray, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                               "--include-dashboard=false", *common], env=env, capture_output=True, text=True,
                              timeout=120)
        assert head.returncode == 0, head.stderr[-2000:]
        node = subprocess.run([*ray, "start", "--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1",
                               *common], env=env, capture_output=True, text=True, timeout=120)
        assert node.returncode == 0, node.stderr[-2000:]
        run = fer_batch(archive, "--output", tmp_path / "cluster", "--engine", "ray", "--address",
                        f"127.0.0.1:{port}", env=ray_env(tmp_path))
        assert run.returncode == 0, run.stderr
        assert "Ray: 2 CPUs in 2 node(s), 2 actor(s)" in run.stderr
    finally:
        subprocess.run([*ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
    local = fer_batch(archive, "--output", tmp_path / "local", "--format", "parquet")
    assert local.returncode == 0, local.stderr
    assert read_rows(tmp_path / "cluster") == read_rows(tmp_path / "local")


def test_ray_missing_is_one_line_naming_the_extra(archive: Path, tmp_path: Path):
    hide = "import sys; sys.modules['ray'] = None; from runtime.batch.cli import main; sys.exit(main(sys.argv[1:]))"
    run = subprocess.run([sys.executable, "-c", hide, str(archive), "--output", str(tmp_path / "out"), "--engine",
                          "ray"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and not (tmp_path / "out").exists()
    assert run.stderr.strip() == "fer-batch: error: --engine ray needs Ray Data: pip install 'fer-edge[cluster]' " \
                                 "(Ray Data)"


def test_fer_batch_is_a_console_script():
    script = Path(sys.executable).with_name("fer-batch")
    if not script.is_file():
        pytest.skip("fer-batch is not installed in this environment (pip install -e .)")
    run = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "--engine {local,ray}" in run.stdout and "--workers" in run.stdout


def test_a_worker_that_dies_is_tried_again_then_recorded_as_failed(tmp_path: Path):
    """A worker killed mid-task (as the kernel kills one for memory) costs its task one more try, not the run."""
    import threading

    from runtime.batch.engines import run_local
    from runtime.batch.sources import Task

    photo = tmp_path / "face.jpg"
    shutil.copy(DATA / "obama-480p.jpg", photo)
    tasks = [Task("photos", (Source.of(photo),))]
    outputs = []
    settings = Settings(str(SHIPPED_ONNX))
    import runtime.batch.engines as engines

    original = engines._run_in_worker
    try:
        engines._run_in_worker = _die  # what the workers run (pickled by reference: this module's function)
        run_local(tasks, settings, 1, outputs.append, threading.Event())
    finally:
        engines._run_in_worker = original
    assert len(outputs) == 1 and outputs[0].results[0].status == "failed"
    assert "the worker process died while processing it, 2 times" in outputs[0].results[0].error


def _die(task):
    os.kill(os.getpid(), signal.SIGKILL)


def test_rows_hold_plain_json_values(archive: Path):
    runner = TaskRunner(Settings(str(SHIPPED_ONNX)))
    out = runner.run(plan_tasks([Source.of(archive / "obama.jpg")])[0])
    row = out.rows[0]
    assert all(not isinstance(v, np.generic) for v in row.values())
    assert json.loads(json.dumps(row)) == row
