"""`fer-batch`'s output folder, the record of what is done, kept consistent whatever stops a run:

    OUT/fer-batch.json     what made it: the settings, the labels, the model's SHA-256, the format
    OUT/manifest.jsonl     one line per source finished (done or failed, its size and modification time, its part,
                           frames, faces and summary); the last line of a source counts
    OUT/parts/*.parquet    the rows, one part per video or chunk of photos (or *.jsonl with --format jsonl)
    OUT/summary.parquet    one row per source and track, rewritten at the end of every run

Every file is written under OUT/.tmp and moved into place (a part is whole or absent), and a part is written before
the manifest names it, so a run killed at any point leaves a folder the next run continues: parts no manifest line
names are removed when it opens, and a source whose file changed is redone (its rows taken out of the part that
held them first). `pd.read_parquet("OUT/parts")` or DuckDB's `'OUT/parts/*.parquet'` read every row.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from ..outputs import UsageError
from .sources import Source
from .task import SourceResult, TaskOutput

FORMATS = ("parquet", "jsonl")
HEADER = "fer-batch.json"
MANIFEST = "manifest.jsonl"
PYARROW_HELP = "pip install 'fer-edge[batch]' (pyarrow), or give --format jsonl"


def require_pyarrow():
    """pyarrow, or UsageError saying what to install."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise UsageError(f"--format parquet needs pyarrow: {PYARROW_HELP}") from None
    return pyarrow


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def row_schema(labels: list[str]):
    """The Arrow schema of the face rows: source, frame, timestamp, track_id, x, y, w, h, label, probability, one
    float column per class, detector_score, quality, reliable, sharpness, yaw, pitch, roll."""
    pa = require_pyarrow()
    f32 = pa.float32()
    return pa.schema([("source", pa.string()), ("frame", pa.int64()), ("timestamp", pa.float64()),
                      ("track_id", pa.int64()), *((key, pa.int32()) for key in "xywh"), ("label", pa.string()),
                      ("probability", f32), *((label, f32) for label in labels), ("detector_score", f32),
                      ("quality", f32), ("reliable", pa.bool_()), ("sharpness", f32), ("yaw", f32), ("pitch", f32),
                      ("roll", f32)])


def summary_schema(labels: list[str]):
    """The Arrow schema of the summary: source, kind, frames, duration_s, track_id, faces, start_s, end_s, label (seen
    most), share_<label> per class."""
    pa = require_pyarrow()
    return pa.schema([("source", pa.string()), ("kind", pa.string()), ("frames", pa.int64()),
                      ("duration_s", pa.float64()), ("track_id", pa.int64()), ("faces", pa.int64()),
                      ("start_s", pa.float64()), ("end_s", pa.float64()), ("label", pa.string()),
                      *((f"share_{label}", pa.float32()) for label in labels)])


def part_name(sources: tuple[Source, ...], extension: str) -> str:
    """A part's file name: the video's name and a hash of its path, or a hash of the chunk's photos' paths."""
    digest = hashlib.sha1("\n".join(s.path for s in sources).encode()).hexdigest()[:12]
    if len(sources) == 1 and sources[0].kind == "video":
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(sources[0].path).stem)[:40]
        return f"{stem}-{digest}.{extension}"
    return f"photos-{digest}.{extension}"


class BatchStore:
    """An output folder opened for a run: `pending(sources)` says what is left to do, `save(output)` records one
    finished task, `finish()` writes the summary. UsageError when the folder holds something else, or results made
    with other settings."""

    def __init__(self, folder: str | os.PathLike, fmt: str, settings: dict, labels: list[str]):
        if fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt}")
        if fmt == "parquet":
            require_pyarrow()
        self.folder, self.format, self.labels = Path(folder), fmt, list(labels)
        self.parts, self.tmp = self.folder / "parts", self.folder / ".tmp"
        self.header = {"tool": "fer-batch", "version": 1, "format": fmt, "labels": self.labels, "settings": settings}
        self.entries: dict[str, dict] = {}
        self._open()

    # the folder

    def _open(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise UsageError(f"--output {self.folder} is a file; give a folder (new, or one fer-batch wrote)")
        header_path = self.folder / HEADER
        if self.folder.is_dir() and any(self.folder.iterdir()) and not header_path.is_file():
            raise UsageError(f"--output {self.folder} holds other files; give a new folder or one fer-batch wrote")
        if header_path.is_file():
            self._check_header(header_path)
        try:
            self.parts.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create output folder {self.folder}: {exc.strerror}") from None
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        if not header_path.is_file():
            self._write_atomic(header_path, json.dumps(self.header, indent=1) + "\n")
        self.entries = self._read_manifest()
        named = {e["part"] for e in self.entries.values() if e.get("part")}
        for part in self.parts.iterdir():  # written by a run stopped before its manifest line
            if part.name not in named:
                part.unlink()

    def _check_header(self, path: Path) -> None:
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            raise UsageError(f"--output {self.folder}: {path.name} cannot be read; give a new folder") from None
        if found.get("tool") != "fer-batch":
            raise UsageError(f"--output {self.folder} holds other files; give a new folder or one fer-batch wrote")
        if found.get("format") != self.format:
            raise UsageError(f"--output {self.folder} holds --format {found.get('format')} results; give that "
                             f"format or a new folder")
        theirs, ours = found.get("settings", {}), self.header["settings"]
        changed = [f"{key} {theirs.get(key)!r} there, {ours.get(key)!r} now" for key in sorted(set(theirs) | set(ours))
                   if theirs.get(key) != ours.get(key)]
        if changed or found.get("labels") != self.labels:
            what = "; ".join(changed) or "other labels"
            raise UsageError(f"--output {self.folder} holds results made with other settings ({what}); give the "
                             "same options or a new folder")

    def _read_manifest(self) -> dict[str, dict]:
        entries: dict[str, dict] = {}
        path = self.folder / MANIFEST
        if not path.is_file():
            return entries
        text = path.read_text()
        if text and not text.endswith("\n"):  # a line cut off by a run killed while writing it: the next starts anew
            with open(path, "a") as f:
                f.write("\n")
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line cut off by a run killed while writing it
                continue
            entries[entry["source"]] = entry
        return entries

    def _write_atomic(self, path: Path, text: str) -> None:
        tmp = self.tmp / path.name
        tmp.write_text(text)
        os.replace(tmp, path)

    # what is left to do

    def status(self, source: Source) -> str | None:
        """"done" or "failed" when the source was finished before with the same size and modification time."""
        entry = self.entries.get(source.path)
        unchanged = bool(entry) and entry["size"] == source.size and entry["mtime_ns"] == source.mtime_ns
        return entry["status"] if unchanged else None

    def pending(self, sources: list[Source], retry_failed: bool = False) -> list[Source]:
        """The sources to do now: new or changed ones (and, with `retry_failed`, those that failed before unchanged);
        the rows a changed one left in a part are taken out first."""
        todo = [s for s in sources if self.status(s) is None or (retry_failed and self.status(s) == "failed")]
        stale: dict[str, set[str]] = {}
        for source in todo:
            entry = self.entries.get(source.path)
            if entry and entry.get("part"):
                stale.setdefault(entry["part"], set()).add(source.path)
        for part, paths in stale.items():
            self._drop_rows(part, paths)
        return todo

    def _drop_rows(self, part: str, paths: set[str]) -> None:
        """Rewrite a part without the rows of `paths` (their sources are redone); removed when nothing is left."""
        path = self.parts / part
        if not path.is_file():
            return
        keep = [e for e in self.entries.values() if e.get("part") == part and e["source"] not in paths]
        if not keep:
            path.unlink()
            return
        if self.format == "parquet":
            import pyarrow.compute as pc
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            table = table.filter(pc.invert(pc.is_in(table["source"], value_set=require_pyarrow().array(sorted(paths)))))
            pq.write_table(table, self.tmp / part)
        else:
            with open(path) as f:
                lines = [line for line in f if json.loads(line)["source"] not in paths]
            (self.tmp / part).write_text("".join(lines))
        os.replace(self.tmp / part, path)

    # what is done

    def save(self, output: TaskOutput) -> None:
        """Write a finished task's part, then its manifest lines."""
        done = [r for r in output.results if r.status == "done"]
        part = part_name(output.task.sources, self.format) if done else None
        if part:
            self._write_part(part, output.rows)
        for result in output.results:
            previous = self.entries.get(result.source.path, {}).get("part")
            if result.status != "done" and previous and previous != part:
                self._drop_rows(previous, {result.source.path})
        lines = [self._entry(r, part if r.status == "done" else None, output.peak_rss_mb) for r in output.results]
        with open(self.folder / MANIFEST, "a") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)
            f.flush()
            os.fsync(f.fileno())
        for line in lines:
            self.entries[line["source"]] = line

    def _entry(self, result: SourceResult, part: str | None, worker_rss_mb: float) -> dict:
        """A manifest line: the source, its size and modification time, what became of it, its part, frames, faces,
        duration, error (or a note on a damaged file read in part), summary rows, when it finished and the peak RSS of
        the worker that did it."""
        source = result.source
        return {"source": source.path, "kind": source.kind, "size": source.size, "mtime_ns": source.mtime_ns,
                "status": result.status, "part": part, "frames": result.frames, "faces": result.faces,
                "duration_s": result.duration_s, "error": result.error, "note": result.note, "summary": result.summary,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "worker_rss_mb": round(worker_rss_mb, 1)}

    def _write_part(self, name: str, rows: list[dict]) -> None:
        tmp = self.tmp / name
        if self.format == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(require_pyarrow().Table.from_pylist(rows, schema=row_schema(self.labels)), tmp)
        else:
            with open(tmp, "w") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)
        os.replace(tmp, self.parts / name)

    def finish(self) -> Path:
        """Write the summary of every source done (this run's and earlier ones'); its path."""
        rows = [row for e in sorted(self.entries.values(), key=lambda e: e["source"]) if e["status"] == "done"
                for row in e["summary"]]
        path = self.folder / f"summary.{self.format}"
        if self.format == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(require_pyarrow().Table.from_pylist(rows, schema=summary_schema(self.labels)),
                           self.tmp / path.name)
            os.replace(self.tmp / path.name, path)
        else:
            self._write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))
        shutil.rmtree(self.tmp, ignore_errors=True)
        return path
