"""Checkpoints a save cut short (a kill, a full disk) left non-empty but truncated: never the point a resume
starts from. Before, a truncated optimizer.pt in the newest checkpoint made every resume fail in torch.load."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from ftorch.backends.hf.checkpoints import checkpoint_problem, resume_point
from ftorch.run.rundir import RunDir

FILES = ("adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
         "training_args.bin")


def real_checkpoint(folder: Path, step: int) -> Path:
    """A checkpoint as the Trainer writes it: torch.save archives, a safetensors adapter, trainer_state.json."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    save_file({"lora_A": torch.ones(8, 4)}, folder / "adapter_model.safetensors")
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
        torch.save({"state": torch.arange(1000), "name": name}, folder / name)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.fixture
def run(tmp_path) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.update(status="interrupted", recipe="r", provider="peft", pid=os.getpid(), host=socket.gethostname())
    return run


def test_a_complete_checkpoint_passes(run):
    assert checkpoint_problem(real_checkpoint(run.checkpoints / "checkpoint-2", 2)) is None


@pytest.mark.parametrize("name", ["optimizer.pt", "rng_state.pth", "training_args.bin", "adapter_model.safetensors"])
def test_a_truncated_file_makes_the_checkpoint_incomplete(run, name):
    folder = real_checkpoint(run.checkpoints / "checkpoint-2", 2)
    cut(folder / name)
    assert checkpoint_problem(folder) == f"{name} cut short"


def test_a_safetensors_header_cut_short_too(run):
    folder = real_checkpoint(run.checkpoints / "checkpoint-2", 2)
    cut(folder / "adapter_model.safetensors", keep=0.1)  # inside the JSON header
    assert checkpoint_problem(folder) == "adapter_model.safetensors cut short"


def test_resume_skips_and_removes_the_truncated_newest_checkpoint(run, capsys):
    real_checkpoint(run.checkpoints / "checkpoint-2", 2)
    newest = real_checkpoint(run.checkpoints / "checkpoint-4", 4)
    cut(newest / "optimizer.pt")
    assert (newest / "optimizer.pt").stat().st_size > 0  # not empty: the old check let it through
    run.metrics.write_text("".join(json.dumps({"step": s, "kind": "train"}) + "\n" for s in (1, 2, 3, 4)))
    assert resume_point(run) == str(run.checkpoints / "checkpoint-2")
    assert not newest.exists()
    assert "checkpoint-4 is incomplete (optimizer.pt cut short)" in capsys.readouterr().err
    assert "resuming from" in run.log.read_text() and "checkpoint-2" in run.log.read_text()
    import torch

    torch.load(run.checkpoints / "checkpoint-2" / "optimizer.pt")  # what the Trainer will load: it loads


def test_files_in_no_format_it_knows_are_not_judged(run):
    """torch's legacy (non-zip) pickles cannot be judged by their ends: they are left to load."""
    folder = run.checkpoints / "checkpoint-2"
    folder.mkdir(parents=True)
    for name in FILES:
        (folder / name).write_bytes(b"\x80\x02legacy pickle")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    assert checkpoint_problem(folder) is None
