"""ftorch's cache: where it lives ($FTORCH_CACHE, default ~/.cache/ftorch), and content manifests
for its entries (the tiny model, GGUF conversions, tokenized data), so that a
damaged entry (a truncated file after a crash or a full disk, a file deleted by hand) is found before it is loaded,
and rebuilt instead of failing with a traceback.

An entry's `ftorch-manifest.json` lists every file with its size and a sha256: of the whole file when it is small,
else of its first and last MiB (a 538 MB model is not hashed in full at every load; a truncated or zero-filled tail
is still caught, and so is any change of size). Checking costs a stat per file plus a few MiB of reading."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .safe_io import write_text

MANIFEST = "ftorch-manifest.json"
FULL_HASH_BELOW = 16 << 20
EDGE = 1 << 20



def cache_root() -> Path:
    """Where ftorch keeps what it builds once: tiny models, GGUF conversions, tokenized data, tiktoken files,
    the OpenAI upload record."""
    return Path(os.environ.get("FTORCH_CACHE", Path.home() / ".cache" / "ftorch"))

def _digest(path: Path, size: int) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        if size < FULL_HASH_BELOW:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        else:
            sha.update(handle.read(EDGE))
            handle.seek(size - EDGE)
            sha.update(handle.read(EDGE))
    return sha.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record every file under `folder` (call it on the finished entry, before it is renamed into place)."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        size = path.stat().st_size
        files[path.relative_to(folder).as_posix()] = {"size": size, "sha256": _digest(path, size)}
    write_text(folder / MANIFEST, json.dumps({"version": 1, "files": files}, indent=1))  # never through a symlink


def has_manifest(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def damage(folder: Path) -> str | None:
    """What is wrong with a cache entry (None: every file is as recorded). An entry without a manifest is damaged:
    it was never finished."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST} is missing or unreadable"
    for name, expected in files.items():
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            return f"{name} is missing"
        if size != expected["size"]:
            return f"{name} has {size:,} bytes, {expected['size']:,} expected"
        if _digest(path, size) != expected["sha256"]:
            return f"{name}'s content changed"
    return None


def publish(target: Path, build: Callable[[Path], None], prefix: str,
            damaged: Callable[[Path], str | None] | None = None) -> None:
    """Build a cache entry into a staging folder beside `target`, write its manifest and rename it into place: a
    reader never sees half an entry. A damaged entry at `target` is replaced; one another process finished
    meanwhile is kept (its content is the same), and so is the rename race it wins."""
    damaged = damaged or damage
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix))
    try:
        build(staging)
        write_manifest(staging)
        if target.exists() and damaged(target) is not None:  # still damaged: nobody rebuilt it meanwhile
            shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:  # another process finished first; its entry is identical
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
