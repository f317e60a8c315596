"""One tiny trained run shared by the export, chat and serve tests (trained once per test session)."""

from __future__ import annotations

import functools
from pathlib import Path

from conftest import TINY, run_cli, run_dirs

FAST = [*TINY, "train.max_steps=4", "train.batch_size=4", "eval.enabled=false"]


@functools.cache
def trained_run(root: Path) -> Path:
    runs = root / "shared-tiny-runs"
    result = run_cli("train", f"paths.runs={runs}", *FAST)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = run_dirs(runs)
    return run_dir
