"""One rule for the checkpoint a run resumes from, whichever local backend wrote it (backends/hf/checkpoints.py):
peft and unsloth (through backends/hf/) and axolotl find the same one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftorch.backends.axolotl import backend as axolotl
from ftorch.backends.hf import checkpoints
from ftorch.backends.hf.checkpoints import checkpoint_problem, latest_checkpoint
from ftorch.backends.peft import backend as peft_backend

TRAINER_FILES = ("adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
                 "training_args.bin")


def save(folder: Path, step: int, files=TRAINER_FILES, state: str | None = None, dirs=()) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_bytes(b"x")
    for name in dirs:
        (path / name).mkdir()
        (path / name / "state.pt").write_bytes(b"x")
    (path / "trainer_state.json").write_text(state if state is not None else json.dumps({"global_step": step}))
    return path


def test_the_newest_complete_checkpoint_wins_over_newer_broken_ones(tmp_path):
    save(tmp_path, 2)
    good = save(tmp_path, 10)
    save(tmp_path, 12, files=[n for n in TRAINER_FILES if n != "optimizer.pt"])  # killed while saving
    save(tmp_path, 14, state='{"global_st')  # trainer_state.json cut short
    save(tmp_path, 16, state=json.dumps({"global_step": 15}))  # another step's state
    (tmp_path / "checkpoint-18").mkdir()  # nothing written yet
    (tmp_path / "checkpoint-x").mkdir()  # not a checkpoint name
    assert latest_checkpoint(tmp_path) == good  # step 10 beats step 2 (numbers, not names)
    assert axolotl.latest_checkpoint is latest_checkpoint  # the same function behind every backend
    assert [p.name for p in checkpoints.checkpoints(tmp_path)] == [
        "checkpoint-18", "checkpoint-16", "checkpoint-14", "checkpoint-12", "checkpoint-10", "checkpoint-2"]
    assert latest_checkpoint(tmp_path / "missing") is None


@pytest.mark.parametrize("files,dirs,problem", [
    (TRAINER_FILES, (), None),
    ([n for n in TRAINER_FILES if n != "adapter_model.safetensors"], (), "missing adapter_model.safetensors"),
    ([n for n in TRAINER_FILES if n not in ("optimizer.pt", "scheduler.pt")], ("global_step4",), None),  # DeepSpeed
    ([n for n in TRAINER_FILES if n != "optimizer.pt"], ("optimizer_0",), None),  # FSDP's sharded optimizer
    ([n for n in TRAINER_FILES if n != "scheduler.pt"], ("optimizer_0",), "missing scheduler.pt"),
    ([n for n in TRAINER_FILES if n != "rng_state.pth"] + ["rng_state_0.pth", "rng_state_1.pth"], (), None),  # DDP
    ([n for n in TRAINER_FILES if n != "training_args.bin"], (), "missing training_args.bin"),
])
def test_what_a_complete_save_holds(tmp_path, files, dirs, problem):
    assert checkpoint_problem(save(tmp_path, 4, files=files, dirs=dirs)) == problem


def test_an_empty_file_is_an_incomplete_save(tmp_path):
    folder = save(tmp_path, 4)
    (folder / "scheduler.pt").write_bytes(b"")
    assert checkpoint_problem(folder) == "empty scheduler.pt"
    assert latest_checkpoint(tmp_path) is None


def test_axolotl_resumes_where_peft_and_unsloth_would(tmp_path, monkeypatch):
    from ftorch.run.rundir import RunDir

    run = RunDir(tmp_path)
    run.update(status="running")
    good = save(run.checkpoints, 3)
    save(run.checkpoints, 6, files=TRAINER_FILES[:2])
    seen = []
    monkeypatch.setattr(axolotl.AxolotlBackend, "_train", lambda self, plan, run, resume_from: seen.append(resume_from))
    axolotl.AxolotlBackend().resume(None, run)
    assert seen == [str(good)] and not (run.checkpoints / "checkpoint-6").exists()
    assert peft_backend.checkpoints.resume_point is checkpoints.resume_point
