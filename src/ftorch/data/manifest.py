"""The data manifest of a run: each input file with its sha256 and example count."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
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
