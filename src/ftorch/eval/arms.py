"""Prompting arms: the named prompting strategies the tuned model must beat (eval.prompt_arms), the conversation
each builds for an input, and the data they are chosen on. The validation examples come from data.validation,
or from a fixed slice of train that is then kept out of the examples prompts may show; the test split is never
read here."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.schema import RunConfig
from ..data.checks import content_text, read_as_chat
from .constrained import Constraint
from .tasks import HeldOut, few_shot

if TYPE_CHECKING:  # bm25s is imported only when a retrieved arm runs
    from .retrieve import Retriever

Messages = list[dict]
VALIDATION_SHARE = 0.2  # at most this share of train becomes the validation slice; the rest is the shot pool


@dataclass(frozen=True)
class Arm:
    strategy: str  # zero_shot | k_shot | retrieved
    k: int = 0
    constraint: Constraint | None = None
    model: str | None = None  # the reference model's id; None: the run's base model

    @property
    def name(self) -> str:
        name = self.strategy if self.strategy == "zero_shot" else f"{self.strategy}_{self.k}"
        if self.constraint is not None:
            name = f"constrained_{name}"
        return f"reference_{name}" if self.model else name

    def describe(self) -> str:
        text = {"zero_shot": "system prompt only",
                "k_shot": f"system prompt + {self.k} fixed training example{'s' * (self.k != 1)}",
                "retrieved": f"system prompt + the {self.k} most similar training example{'s' * (self.k != 1)} "
                             "(BM25)"}[self.strategy]
        if self.constraint is not None:
            text += f", {self.constraint.describe()}"
        return f"{self.model}: {text}" if self.model else text

    def constrained(self, constraint: Constraint) -> Arm:
        return replace(self, constraint=constraint)

    def on(self, model: str) -> Arm:
        return replace(self, model=model)


@dataclass
class Data:
    """Where the arms get their examples: `pool` (train conversations prompts may show) and `validation`
    (what the arms are scored on), with where the validation came from."""

    pool: list[Messages]
    validation: list[HeldOut]
    source: str


def split(cfg: RunConfig) -> Data:
    """The shot pool and the validation examples. From data.validation when the run has one (and is not itself
    evaluated on it); else a seeded slice of train, which then leaves the pool."""
    ev = cfg.eval
    fmt, limit = cfg.data.format, cfg.data.max_line_bytes  # preference data: each pair as its prompt and answer
    train = [_without_system(e["messages"]) for e in read_as_chat(Path(cfg.data.train), fmt, limit).examples]
    if cfg.data.validation and ev.split != "validation":
        held = read_as_chat(Path(cfg.data.validation), fmt, limit)
        validation = [h for h in (_held_out(_without_system(e["messages"]), line)
                                  for e, line in zip(held.examples, held.lines)) if h][: ev.validation_limit]
        return Data(train, validation, f"data.validation (first {len(validation)})")
    size = min(ev.validation_limit, int(len(train) * VALIDATION_SHARE))
    chosen = set(random.Random(f"validation-{ev.seed}").sample(range(len(train)), size)) if size else set()
    validation = [h for h in (_held_out(train[i], i + 1) for i in sorted(chosen)) if h]
    pool = [m for i, m in enumerate(train) if i not in chosen]
    return Data(pool, validation, f"a fixed slice of train ({len(validation)} of {len(train)} examples, "
                                  "kept out of the prompts' examples)")


def _without_system(messages: Messages) -> Messages:
    return [m for m in messages if m["role"] not in ("system", "developer")]


def _held_out(messages: Messages, line: int) -> HeldOut | None:
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or last == 0:
        return None
    return HeldOut(line, messages[:last], content_text(messages[last]))


def references(pool: list[Messages]) -> list[str]:
    """The last assistant reply of every pool example (what the label-set constraint is built from)."""
    return [content_text(next(m for m in reversed(c) if m["role"] == "assistant"))
            for c in pool if any(m["role"] == "assistant" for m in c)]


class Prompts:
    """Builds an arm's conversation for an input: the system prompt, the arm's examples, the input."""

    def __init__(self, system_prompt: str | None, pool: list[Messages], seed: int):
        self.system_prompt, self.pool, self.seed = system_prompt, pool, seed
        self._retriever: Retriever | None = None

    def shots(self, arm: Arm, prompt: Messages) -> list[Messages]:
        if arm.strategy == "k_shot":
            return few_shot([{"messages": c} for c in self.pool], arm.k, self.seed)
        if arm.strategy == "retrieved":
            # the closest precedent goes last, next to the input
            return [self.pool[i] for i in reversed(self.retriever().top(_query(prompt), arm.k))]
        return []

    def conversation(self, arm: Arm, prompt: Messages) -> Messages:
        head = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return head + [m for shot in self.shots(arm, prompt) for m in shot] + prompt

    def retriever(self) -> Retriever:
        if self._retriever is None:
            from .retrieve import Retriever

            self._retriever = Retriever([_query(c[:-1]) for c in self.pool])
        return self._retriever


def _query(messages: Messages) -> str:
    from .retrieve import query_text

    return query_text(messages)
