"""The data manifest of a run: each input file with its sha256 and example count."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .lines import open_data


def sha256_file(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks; a FIFO or a device is refused (it would never end)."""
    digest = hashlib.sha256()
    with open_data(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(split: str, path: Path, examples: int, warnings: int) -> dict:
    return {
        "split": split,
        "path": str(path.resolve()),
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "examples": examples,
        "warnings": warnings,
    }
