"""The held-out task's types: test examples (never seen in training), the system prompt, deterministic few-shot
examples from the training split, and the conversations each system is asked. Apart from the loading
(eval/tasks.py) so the chat and preference loaders and the metric names share them without importing each other."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ..data.checks import content_text

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


def most_common_system_prompt(examples: list[dict]) -> str | None:
    prompts = Counter(content_text(m) for e in examples for m in e["messages"][:1] if m["role"] == "system")
    return prompts.most_common(1)[0][0] if prompts else None


def few_shot(examples: list[dict], k: int, seed: int) -> list[Messages]:
    """k training examples, the same for the same data and seed on any machine."""
    if k == 0 or not examples:
        return []
    chosen = random.Random(seed).sample(range(len(examples)), min(k, len(examples)))
    return [[m for m in examples[i]["messages"] if m["role"] not in ("system", "developer")] for i in sorted(chosen)]
