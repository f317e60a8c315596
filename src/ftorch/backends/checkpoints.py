"""Trainer checkpoints (RUN/checkpoints/checkpoint-N), found one way for every local backend: peft and unsloth
(transformers' Trainer in ftorch's process or a child) and axolotl (the same Trainer, in its environment).

One rule: checkpoint-N counts when it is a complete save, so a kill -9 in the middle of one never becomes the
point a run resumes from. Complete means its trainer_state.json parses and names step N, and the files the
Trainer writes beside it are there and none is empty: the adapter (adapter_config.json, adapter_model.*),
training_args.bin, the RNG state (rng_state.pth, or rng_state_R.pth per rank), and the optimizer and scheduler
state: optimizer.pt + scheduler.pt, or DeepSpeed's global_stepN/ folder (which holds both), or FSDP's
optimizer_* folder + scheduler.pt.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..run.rundir import RunDir

PREFIX = "checkpoint-"
CHECKPOINT_FILES = ("adapter_config.json", "training_args.bin")


def step_of(checkpoint: str | Path) -> int:
    return int(Path(checkpoint).name.rsplit("-", 1)[-1])


def checkpoint_problem(folder: Path) -> str | None:
    """Why checkpoint-N is not a complete save (see the module's rule), or None when it is."""
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except FileNotFoundError:
        return "no trainer_state.json"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "trainer_state.json is truncated"
    if not isinstance(state, dict) or f"{PREFIX}{state.get('global_step')}" != folder.name:
        return f"trainer_state.json is for step {state.get('global_step') if isinstance(state, dict) else None}"
    entries = list(folder.iterdir())
    names = {p.name: p for p in entries if p.is_file()}
    folders = [p.name for p in entries if p.is_dir()]
    deepspeed = any(n.startswith("global_step") for n in folders)
    missing = [n for n in CHECKPOINT_FILES if n not in names]
    if not any(n.startswith("adapter_model.") for n in names):
        missing.append("adapter_model.safetensors")
    if not any(n.startswith("rng_state") for n in names):
        missing.append("rng_state.pth")
    if "optimizer.pt" not in names and not deepspeed and not any(n.startswith("optimizer") for n in folders):
        missing.append("optimizer.pt")
    if "scheduler.pt" not in names and not deepspeed:
        missing.append("scheduler.pt")
    if missing:
        return "missing " + ", ".join(missing)
    empty = sorted(n for n, p in names.items() if p.stat().st_size == 0)
    return f"empty {', '.join(empty)}" if empty else None


def checkpoints(folder: Path) -> list[Path]:
    """Every checkpoint-N folder, complete or not, newest first."""
    found = [p for p in folder.glob(f"{PREFIX}*") if p.is_dir() and p.name[len(PREFIX):].isdigit()] \
        if folder.is_dir() else []
    return sorted(found, key=step_of, reverse=True)


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in `folder`, or None."""
    return next((p for p in checkpoints(folder) if checkpoint_problem(p) is None), None)


def resume_point(run: RunDir) -> str | None:
    """The newest complete checkpoint to continue from (None: start again at step 0), noted in train.log.
    Incomplete ones newer than it (a save cut short) are removed with a note, here and on the console, and
    metrics.jsonl loses the rows past the chosen step, which training is about to log again."""
    from ._hf import keep_metrics_until

    checkpoint = None
    for folder in checkpoints(run.checkpoints):
        problem = checkpoint_problem(folder)
        if problem is None:
            checkpoint = str(folder)
            break
        note = f"checkpoint {folder.name} is incomplete ({problem}): removed; resuming from an earlier one"
        run.append_log(note)
        print(f"ftorch: {note}", file=sys.stderr, flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    run.append_log(f"resuming from {checkpoint}" if checkpoint else "no checkpoint found: starting from step 0")
    keep_metrics_until(run, step_of(checkpoint) if checkpoint else 0)
    return checkpoint
