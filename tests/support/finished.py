"""Finished runs for the run-record tests, without training: a run folder as `ftorch train` leaves it (run.json,
config.yaml) whose evaluation is answered by a scripted model (support.fakes.Scripted), and a way to make a folder
read-only even for root (who ignores permissions): writes under it then fail with EROFS, as on a read-only mount."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from ftorch.config.schema import RunConfig
from ftorch.run.rundir import RunDir

from .fakes import ANSWER


def finished_run(folder: Path) -> tuple[RunDir, RunConfig]:
    """A succeeded run in `folder` (its data beside it), with a small, fast evaluation configured."""
    data = folder.parent / f"{folder.name}-data"
    data.mkdir(parents=True)
    for split, n in (("train", 10), ("test", 12)):
        rows = [{"messages": [{"role": "system", "content": "Answer in JSON."},
                              {"role": "user", "content": f"Is {i} {split}?"},
                              {"role": "assistant", "content": ANSWER}]} for i in range(n)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = RunConfig.model_validate({
        "provider": {"name": "peft"}, "model": {"name": "scripted"},
        "data": {"train": str(data / "train.jsonl"), "test": str(data / "test.jsonl")},
        "eval": {"metrics": ["exact_match", "json_valid"], "headline": "exact_match", "few_shot": 2,
                 "drift": False, "general": False, "safety": False, "prompt_arms": []}})
    run = RunDir(folder)
    folder.mkdir(parents=True)
    run.start(recipe="t", provider="peft", project_root=folder, overrides=[])
    run.finish("succeeded", metrics={"final_loss": 0.5})
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    (folder / "adapter").mkdir()
    (folder / "adapter" / "adapter_config.json").write_text("{}")
    run.lock_file.touch()  # as training leaves it
    return run, cfg


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under `folder` (and the folder) with its mode, mtime and content hash: equal before and after
    means nothing in it was written, made or removed."""
    def entry(path: Path) -> tuple:
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        return info.st_mode, info.st_mtime_ns, digest

    return {str(p.relative_to(folder)): entry(p) for p in [folder, *sorted(folder.rglob("*"))]}


@contextmanager
def read_only(folder: Path):
    """`folder` read-only throughout (chmod a-w). Root ignores that, so for root every os.open that would write
    under it fails with EROFS as on a read-only mount (the lock, run.json, logs all open through os.open)."""
    paths = [folder, *folder.rglob("*")]
    modes = {p: p.stat().st_mode for p in paths}
    for path in paths:
        path.chmod(stat.S_IMODE(modes[path]) & ~0o222)
    patch = pytest.MonkeyPatch()
    if os.geteuid() == 0:
        real_open = os.open
        root = str(folder.resolve())

        def guarded(path, flags, mode=0o777, *, dir_fd=None):
            writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
            if writes and dir_fd is None and os.path.realpath(path).startswith(root + os.sep):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real_open(path, flags, mode, dir_fd=dir_fd)

        patch.setattr(os, "open", guarded)
    try:
        yield
    finally:
        patch.undo()
        for path in paths:
            path.chmod(stat.S_IMODE(modes[path]))
