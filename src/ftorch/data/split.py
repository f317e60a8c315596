"""Deterministic train/validation/test splits: an example's split depends only on the seed and a hash of
its normalized text, so the same input gives the same split on any machine, and duplicates (exact or up to
case and whitespace) always land together: no leakage by construction. (Splits a user brings are checked
for leakage by report.leakage before training.) The source is streamed twice (check, then write): memory stays
bounded whatever its size."""

from __future__ import annotations

import hashlib
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, Problem
from ..run.rundir import write_json_atomic
from ..safe_io import atomic_writer
from .checks import format_issues, scan
from .lines import DEFAULT_MAX_LINE_BYTES
from .manifest import sha256_file
from .profile import normalized_key

SPLITS = ("train", "validation", "test")
MANIFEST = "split_manifest.json"


def assign(key: str, seed: int, ratios: tuple[float, float, float]) -> str:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for split, ratio in zip(SPLITS, ratios):
        edge += ratio
        if point < edge:
            return split
    return [split for split, ratio in zip(SPLITS, ratios) if ratio > 0][-1]  # float rounding at the top edge


@dataclass
class SplitResult:
    outputs: dict[str, Path]
    counts: dict[str, int]
    manifest: dict


def split_file(source: Path, out_dir: Path, ratios: tuple[float, float, float], seed: int, fmt: str,
               max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> SplitResult:
    if abs(sum(ratios) - 1.0) > 1e-6 or any(r < 0 for r in ratios):
        raise DataError(Problem("--ratios", f"ratios must be >= 0 and sum to 1, got {ratios}"))
    errors = [i for i in format_issues(source, fmt, max_line_bytes) if i.severity == "error"]
    if errors:
        raise DataError([Problem(f"{i.file}:{i.line}", f"[{i.code}] {i.message}") for i in errors],
                        hint="fix the data first (`ftorch data check` lists every problem)")
    outputs = {split: out_dir / f"{split}.jsonl" for split, ratio in zip(SPLITS, ratios) if ratio > 0}
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing:
        raise DataError(Problem(str(out_dir), f"would overwrite {', '.join(existing)}", "choose another --out"))
    counts = dict.fromkeys(outputs, 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:  # each output whole or not at all, never written through a symlink
        handles = {split: stack.enter_context(atomic_writer(path, binary=True)) for split, path in outputs.items()}
        for line in scan(source, fmt, max_line_bytes=max_line_bytes):
            if line.raw and line.ok:  # ok: checked above, unless the file changed since
                split = assign(normalized_key(line.example()), seed, ratios)
                handles[split].write(line.raw + b"\n")  # the user's own bytes, never re-serialised
                counts[split] += 1
    manifest = {"kind": "ftorch split", "source": str(source.resolve()), "source_sha256": sha256_file(source),
                "seed": seed,
                "ratios": dict(zip(SPLITS, ratios)), "method": "sha256(seed:normalized text) -> [0,1) bucket",
                "files": {split: {"path": str(path.resolve()), "examples": counts[split],
                                  "sha256": sha256_file(path)} for split, path in outputs.items()}}
    write_json_atomic(out_dir / MANIFEST, manifest)
    return SplitResult(outputs, counts, manifest)
