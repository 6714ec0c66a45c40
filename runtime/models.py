"""Third-party model files: the ones shipped inside the package, the model folder, and an explicit, verified download.

    python -m runtime.models list
    python -m runtime.models download yunet    # another release; the package already ships YuNet

The package ships YuNet (runtime/data, with its MIT license text), so it works offline on every install.
A file in the model folder takes precedence: `$FER_EDGE_HOME` if set, else `$XDG_CACHE_HOME/fer-edge`, else
`~/.cache/fer-edge`. A download is checked against its SHA-256 before it is kept and written atomically
(never a partial file, also after a failure or Ctrl-C). Nothing is ever downloaded implicitly. A file placed
in the folder by hand is used as it is (OpenCV checks it when loading it), so other releases of a model work too.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

CHUNK = 64 * 1024


@dataclass(frozen=True)
class ModelFile:
    """A downloadable model: its file name in the model folder, where it comes from and its hash."""
    name: str
    url: str
    sha256: str
    size: int
    license: str
    about: str


BUNDLED_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class BundledFile:
    """A model file shipped inside the package (runtime/data), its hash and its license text beside it."""
    name: str
    sha256: str
    license_file: str

    @property
    def path(self) -> Path:
        return BUNDLED_DIR / self.name


BUNDLED = {
    "yunet": BundledFile("face_detection_yunet_2026may.onnx",
                         "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0", "LICENSE-YuNet.txt"),
}

MODELS = {
    "yunet": ModelFile(
        name="face_detection_yunet_2023mar.onnx",
        url="https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
        sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4", size=232_589, license="MIT",
        about="YuNet face detector (OpenCV Zoo): finds turned, small and partly hidden faces that Haar misses"),
}


class DownloadError(RuntimeError):
    """A download that did not give the expected file; the message says where to put it by hand."""


def model_dir() -> Path:
    """The model folder (it may not exist yet)."""
    if os.environ.get("FER_EDGE_HOME"):
        return Path(os.environ["FER_EDGE_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "fer-edge"


def installed(key: str) -> Path | None:
    """The path of model `key` in the model folder, or None when it is not there."""
    path = model_dir() / MODELS[key].name
    return path if path.is_file() else None


def find(key: str) -> Path | None:
    """Model `key`'s file: the model folder's (it takes precedence), else the package's own copy, else None."""
    bundled = BUNDLED.get(key)
    return installed(key) or (bundled.path if bundled and bundled.path.is_file() else None)


def _progress_line(done: int, total: int | None) -> None:
    share = f" ({100 * done / total:.0f}%)" if total else ""
    print(f"\r  {done / 1e3:,.0f} kB{share}", end="", file=sys.stderr, flush=True)


def download(key: str, url: str | None = None, sha256: str | None = None, folder: Path | None = None,
             timeout: float = 30.0, progress: Callable[[int, int | None], None] | None = _progress_line) -> Path:
    """Download model `key` into the model folder (or `folder`), verified by SHA-256, atomically. Returns its path.

    `url` and `sha256` override the registry's (another mirror, another release). Raises DownloadError.
    """
    model = MODELS[key]
    url, sha256 = url or model.url, (sha256 or model.sha256).lower()
    folder = folder or model_dir()
    target = folder / model.name
    by_hand = f"download {url} yourself and save it as {target}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the model folder {folder}: {exc.strerror}") from None
    partial = folder / f".{model.name}.{os.getpid()}.part"
    digest, done = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            if total is not None and done != total:
                raise DownloadError(f"download of {url} stopped after {done} of {total} bytes; try again or {by_hand}")
        if digest.hexdigest() != sha256:
            raise DownloadError(f"{url} does not have the expected SHA-256 ({digest.hexdigest()[:16]}... instead of "
                                f"{sha256[:16]}...); nothing was kept; {by_hand}")
        os.replace(partial, target)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:  # offline, refused, cut off
        reason = getattr(exc, "reason", None) or (repr(exc) if isinstance(exc, http.client.HTTPException) else exc)
        raise DownloadError(f"cannot download {url} ({reason}); {by_hand}") from None
    finally:
        partial.unlink(missing_ok=True)
        if progress and done:
            print(file=sys.stderr)  # end the progress line
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fer-models", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the known models: the package's own copy and the model folder's")
    get = sub.add_parser("download", help="download another release into the model folder (it then takes "
                                          "precedence over the package's copy)")
    get.add_argument("model", choices=sorted(MODELS))
    get.add_argument("--url", help="download from this URL instead")
    get.add_argument("--sha256", help="expect this SHA-256 instead (with --url, for another release)")
    args = p.parse_args(argv)
    if args.command == "list":
        print(f"model folder: {model_dir()}")
        for key, model in MODELS.items():
            path, bundled = installed(key), BUNDLED.get(key)
            state = f"installed: {path}" if path else "not in the model folder"
            if bundled:
                state += f"; {'used' if not path else 'shipped'}: the package's {bundled.path}"
            print(f"{key}: {model.license}; {state}\n  {model.about}")
        return 0
    model = MODELS[args.model]
    print(f"downloading {args.model} ({model.name}, {model.license}) from {args.url or model.url}", file=sys.stderr)
    started = time.monotonic()
    try:
        path = download(args.model, args.url, args.sha256)
    except (DownloadError, KeyboardInterrupt) as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        print(f"fer-models: {'interrupted; nothing was kept' if interrupted else f'error: {exc}'}", file=sys.stderr)
        return 130 if interrupted else 2
    print(f"{path} ({path.stat().st_size:,} bytes, SHA-256 verified, {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
