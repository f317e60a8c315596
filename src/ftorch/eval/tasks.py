"""The held-out task: test examples (never seen in training), the system prompt, deterministic few-shot
examples from the training split, and the conversations each system is asked."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config.schema import RunConfig
from ..data.checks import content_text, read_chat_jsonl
from ..data.report import leakage
from ..errors import DataError, Problem

Messages = list[dict]
SYSTEMS = ("base", "prompted", "tuned")


@dataclass(frozen=True)
class HeldOut:
    line: int
    prompt: Messages  # the conversation up to the reply to predict, without a system message
    reference: str


@dataclass
class Task:
    examples: list[HeldOut]
    system_prompt: str | None
    shots: list[Messages]  # few-shot conversations (user/assistant turns) from train
    full: list[Messages]  # each held-out example whole, for held-out loss
    prompter: Callable[[Messages], Messages] | None = None  # the chosen prompting arm (eval/selection.py)

    @property
    def prompted_system_prompt(self) -> str | None:
        """The system prompt of the prompted baseline and of every prompting arm (PreferenceTask adds its rules)."""
        return self.system_prompt

    def conversation(self, system: str, example: HeldOut) -> Messages:
        if system == "prompted" and self.prompter is not None:
            return self.prompter(example.prompt)
        system_prompt = self.prompted_system_prompt if system == "prompted" else self.system_prompt
        head = [{"role": "system", "content": system_prompt}] if system_prompt else []
        shots = [m for shot in self.shots for m in shot] if system == "prompted" else []
        return head + shots + example.prompt


def load_task(cfg: RunConfig) -> Task:
    if cfg.data.format == "preference":  # held-out pairs: prompt -> preferred answer
        from .preference import load_task as load_preference_task

        return load_preference_task(cfg)
    split_path = cfg.data.test if cfg.eval.split == "test" else cfg.data.validation
    if split_path is None:
        raise DataError(Problem(f"data.{cfg.eval.split}", "no held-out file to evaluate on",
                                f"set data.{cfg.eval.split} (`ftorch data split` makes one), or eval=none"))
    train = read_chat_jsonl(Path(cfg.data.train))
    held = read_chat_jsonl(Path(split_path))
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


def most_common_system_prompt(examples: list[dict]) -> str | None:
    prompts = Counter(content_text(m) for e in examples for m in e["messages"][:1] if m["role"] == "system")
    return prompts.most_common(1)[0][0] if prompts else None


def few_shot(examples: list[dict], k: int, seed: int) -> list[Messages]:
    """k training examples, the same for the same data and seed on any machine."""
    if k == 0 or not examples:
        return []
    chosen = random.Random(seed).sample(range(len(examples)), min(k, len(examples)))
    return [[m for m in examples[i]["messages"] if m["role"] not in ("system", "developer")] for i in sorted(chosen)]
