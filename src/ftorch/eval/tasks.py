"""Loading the held-out task for a run: the test examples (never seen in training) of a chat dataset, or of a
preference dataset (eval/preference.py); the types are in eval/heldout.py."""

from __future__ import annotations

from pathlib import Path

from ..config.schema import RunConfig
from ..data.checks import content_text, read_chat_jsonl
from ..data.report import leakage
from ..errors import DataError, Problem
from .heldout import SYSTEMS, HeldOut, Messages, Task, few_shot, most_common_system_prompt

__all__ = ["SYSTEMS", "HeldOut", "Messages", "Task", "few_shot", "load_task", "most_common_system_prompt"]


def load_task(cfg: RunConfig) -> Task:
    if cfg.data.format == "preference":  # held-out pairs: prompt -> preferred answer
        from .preference import load_task as load_preference_task

        return load_preference_task(cfg)
    split_path = cfg.data.test if cfg.eval.split == "test" else cfg.data.validation
    if split_path is None:
        raise DataError(Problem(f"data.{cfg.eval.split}", "no held-out file to evaluate on",
                                f"set data.{cfg.eval.split} (`ftorch data split` makes one), or eval=none"))
    train = read_chat_jsonl(Path(cfg.data.train), cfg.data.max_line_bytes)
    held = read_chat_jsonl(Path(split_path), cfg.data.max_line_bytes)
    problems = leakage({"train": train, cfg.eval.split: held})
    if problems:
        raise DataError(problems, hint="held-out examples must not be in the training data")
    examples, full = [], []
    for example, line in zip(held.examples, held.lines):
        messages = [m for m in example["messages"] if m["role"] not in ("system", "developer")]
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None or last == 0:
            continue
        examples.append(HeldOut(line, messages[:last], content_text(messages[last])))
        full.append(example["messages"])
    if cfg.eval.limit:
        examples, full = examples[: cfg.eval.limit], full[: cfg.eval.limit]
    system = cfg.eval.system_prompt or most_common_system_prompt(train.examples)
    return Task(examples, system, few_shot(train.examples, cfg.eval.few_shot, cfg.eval.seed), full)
