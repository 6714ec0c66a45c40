"""What `fer-batch` is given: files, folders (searched recursively) and globs, photos and videos mixed; and the tasks
made of them (one per video, photos in chunks)."""
from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..outputs import IMAGE_EXTENSIONS, UsageError

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts",
                    ".3gp"}
PHOTOS_PER_TASK = 64
TASKS_PER_WORKER = 4  # photos are cut into at least this many chunks per worker, so that no worker waits on the last


@dataclass(frozen=True)
class Source:
    """One input file: its absolute path (the key of its rows and of the manifest), kind ("photo" or "video"), size
    in bytes and modification time (a changed file is redone)."""
    path: str
    kind: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> "Source":
        stat = path.stat()
        kind = "video" if path.suffix.lower() in VIDEO_EXTENSIONS else "photo"
        return cls(os.path.abspath(path), kind, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class Task:
    """The unit of work a worker does: one video, or a chunk of photos."""
    kind: str
    sources: tuple[Source, ...]

    @property
    def name(self) -> str:
        return self.sources[0].path if self.kind == "video" else f"{len(self.sources)} photos"


def kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "photo" if suffix in IMAGE_EXTENSIONS else "video" if suffix in VIDEO_EXTENSIONS else None


def _walk(folder: Path, exclude: Path | None) -> list[Path]:
    """The photos and videos under `folder`, hidden files and folders and `exclude` (the output folder) left out."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (exclude is None or not _same_dir(Path(root, d), exclude)))
        found.extend(Path(root, f) for f in sorted(files) if not f.startswith(".") and kind_of(Path(f)))
    return found


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def find_sources(arguments: list[str], exclude: Path | None = None) -> list[Source]:
    """The sources the arguments name, each once, in the order given (a folder's files sorted). UsageError (before
    anything is processed) for an argument that names nothing, a file that is neither a photo nor a video by its
    extension, or arguments that hold no photo or video at all."""
    paths: list[Path] = []
    for text in arguments:
        path = Path(text)
        if path.is_dir():
            paths.extend(_walk(path, exclude))
        elif path.is_file():
            if kind_of(path) is None:
                raise UsageError(f"{text} is neither a photo ({', '.join(sorted(IMAGE_EXTENSIONS))}) nor a video "
                                 f"({', '.join(sorted(VIDEO_EXTENSIONS))}) by its extension")
            paths.append(path)
        elif glob.has_magic(text):
            matched = sorted(Path(p) for p in glob.glob(text, recursive=True))
            files = [p for p in matched if p.is_file() and kind_of(p)]
            for folder in (p for p in matched if p.is_dir()):
                files.extend(_walk(folder, exclude))
            if not files:
                raise UsageError(f"{text} matches no photo or video")
            paths.extend(files)
        else:
            raise UsageError(f"source not found: {text} (give files, folders or globs of photos and videos)")
    seen, sources = set(), []
    for path in paths:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            try:
                sources.append(Source.of(path))
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if not sources:
        raise UsageError(f"no photos or videos in {' '.join(arguments)}")
    return sources


def plan_tasks(sources: list[Source], workers: int = 1, photos_per_task: int = PHOTOS_PER_TASK) -> list[Task]:
    """One task per video (the largest first, so that no worker starts a long one last), then the photos in chunks
    of at most `photos_per_task`, small enough that every worker gets several (the last ones end together)."""
    videos = sorted((s for s in sources if s.kind == "video"), key=lambda s: -s.size)
    photos = [s for s in sources if s.kind == "photo"]
    tasks = [Task("video", (v,)) for v in videos]
    if photos:
        per_task = max(1, min(photos_per_task, math.ceil(len(photos) / (TASKS_PER_WORKER * max(1, workers)))))
        tasks += [Task("photos", tuple(photos[i:i + per_task])) for i in range(0, len(photos), per_task)]
    return tasks
