"""Trainer checkpoints (RUN/checkpoints/checkpoint-N), found one way for every local backend: peft and unsloth
(transformers' Trainer in ftorch's process or a child) and axolotl (the same Trainer, in its environment).

One rule: checkpoint-N counts when it is a complete save, so a kill -9 in the middle of one never becomes the
point a run resumes from. Complete means its trainer_state.json parses and names step N, and the files the
Trainer writes beside it are there and none is empty: the adapter (adapter_config.json, adapter_model.*),
training_args.bin, the RNG state (rng_state.pth, or rng_state_R.pth per rank), and the optimizer and scheduler
state: optimizer.pt + scheduler.pt, or DeepSpeed's global_stepN/ folder (which holds both), or FSDP's
optimizer_* folder + scheduler.pt. None is cut short either: a torch.save archive (.pt, .pth, .bin) has the
central directory a zip ends with, and a .safetensors file is as long as its header says.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

if TYPE_CHECKING:
    from ...run.rundir import RunDir

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
    if empty:
        return f"empty {', '.join(empty)}"
    torn = sorted(n for n, p in names.items() if p.suffix in WEIGHT_SUFFIXES and _cut_short(p))
    return f"{', '.join(torn)} cut short" if torn else None


WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archives start so
MAX_SAFETENSORS_HEADER = 100 * 2**20


def _cut_short(path: Path) -> bool:
    """Whether a weights file was cut short (a save killed, a full disk): a torch.save zip archive whose
    central directory (written last) is missing, or a safetensors file shorter than its header says. A file in
    neither format (torch's legacy pickles) is not judged. Only the ends are read, never the tensors."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            if head[:4] == ZIP_MAGIC:
                with zipfile.ZipFile(handle):
                    return False
            if path.suffix != ".safetensors":
                return False
            size = int.from_bytes(head, "little")
            if len(head) < 8 or size > MAX_SAFETENSORS_HEADER or handle.read(1) != b"{":
                return False  # not a safetensors file's start: nothing to judge by
            header = json.loads(b"{" + handle.read(size - 1))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
            return path.stat().st_size < 8 + size + end
    except (OSError, zipfile.BadZipFile, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return True


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
    from ...run.metrics_log import keep_metrics_until

    newest = drop_incomplete(run)
    checkpoint = str(newest) if newest else None
    run.append_log(f"resuming from {checkpoint}" if checkpoint else "no checkpoint found: starting from step 0")
    keep_metrics_until(run, step_of(checkpoint) if checkpoint else 0)
    return checkpoint


def drop_incomplete(run: RunDir) -> Path | None:
    """Remove the incomplete checkpoints newer than the newest complete one (saves cut short: a kill, a full
    disk), each with a note on the console and in train.log; return that complete one (None: there is none).
    The folder goes before the note is logged: on a full disk its space is what the note needs."""
    for folder in checkpoints(run.checkpoints):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        note = f"checkpoint {folder.name} is incomplete ({problem}): removed; the run continues from an earlier one"
        print(f"ftorch: {note}", file=sys.stderr, flush=True)
        try:
            run.append_log(note)
        except OSError:
            pass
    return None


def training_finished(checkpoint: str | None) -> TypeGuard[str]:
    """Whether this checkpoint was saved at the last step (what is left is only saving the adapter)."""
    if checkpoint is None:
        return False
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    return 0 < state.get("max_steps", 0) <= state.get("global_step", 0)


def restore_finished(trainer, checkpoint: str, run: RunDir) -> None:
    """Killed while the adapter was saved: the last checkpoint holds the trained weights and state; load them
    instead of training one step more (every backend that runs a transformers Trainer)."""
    from transformers import TrainerState

    note = f"training had finished at {os.path.basename(checkpoint)}; saving its adapter without training further"
    run.append_log(note)
    if trainer.is_world_process_zero():
        print(note, flush=True)
    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))
