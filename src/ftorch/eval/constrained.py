"""Constrained decoding for the `constrained` prompting arm: replies held to eval.json_schema, or to the label
set when the training references form a small closed set. Locally, lm-format-enforcer's TokenEnforcer (its
documented entry point for new inference loops) masks the logits of every row of the batched greedy decoder
(eval/local.py); on OpenAI, `response_format` with the JSON schema."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, MissingExtra, Problem

MAX_LABELS = 20  # more distinct references than this is free text, not a label set
MIN_PER_LABEL = 3  # each label seen this often in train on average, else the set is not closed


@dataclass(frozen=True)
class Constraint:
    kind: str  # "json_schema" | "labels"
    schema: dict | None = None
    labels: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "json_schema":
            return "replies held to eval.json_schema"
        n = len(self.labels)
        return f"replies held to the {n} label{'s' * (n != 1)} seen in train"

    def regex(self) -> str:
        return "(" + "|".join(re.escape(label) for label in self.labels) + ")"


def constraint_for(json_schema: str | None, references: list[str]) -> tuple[Constraint | None, str]:
    """The constraint the task allows and why; (None, the reason) when it allows none."""
    if json_schema:
        path = Path(json_schema).expanduser()
        try:
            return Constraint("json_schema", schema=json.loads(path.read_text())), f"eval.json_schema ({path.name})"
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(Problem("eval.json_schema", f"cannot read {path}: {exc}")) from None
    counts = Counter(r.strip() for r in references if r.strip())
    if counts and len(counts) <= MAX_LABELS and len(references) >= MIN_PER_LABEL * len(counts):
        labels = tuple(sorted(counts))
        return Constraint("labels", labels=labels), f"the training references form a closed set of {len(labels)} labels"
    return None, (f"no eval.json_schema, and the training references are not a small closed set "
                  f"({len(counts)} distinct)")


class TokenMask:
    """Per generated row, the token ids the constraint allows next (lm-format-enforcer). One per generate call:
    its enforcer caches states keyed by each row's tokens so far."""

    def __init__(self, tokenizer_data, constraint: Constraint, stop_ids: list[int]):
        from lmformatenforcer import JsonSchemaParser, RegexParser, TokenEnforcer

        parser = (JsonSchemaParser(constraint.schema) if constraint.kind == "json_schema"
                  else RegexParser(constraint.regex()))
        self.enforcer = TokenEnforcer(tokenizer_data, parser)
        parser.config.max_consecutive_whitespaces = 1  # compact JSON: no runs of padding while tokens run out
        self.eos, self.stop_ids = tokenizer_data.eos_token_id, stop_ids

    def allowed(self, tokens: list[int]) -> list[int]:
        """Allowed next tokens after `tokens` (the prompt and what was generated); a reply the constraint
        considers complete (or cannot continue) may stop with any of the model's stop tokens."""
        allowed = list(self.enforcer.get_allowed_tokens(tokens).allowed_tokens)
        if not allowed or self.eos in allowed:
            allowed += self.stop_ids
        return allowed


def tokenizer_data(tokenizer):
    """lm-format-enforcer's view of a Hugging Face tokenizer: each regular token's text, and whether it starts a
    word. (Its own transformers integration does not import under transformers 5; this mirrors what it does.)"""
    try:
        from lmformatenforcer import TokenEnforcerTokenizerData
    except ImportError:
        raise MissingExtra(Problem("eval.prompt_arms", "the constrained arm needs lm-format-enforcer",
                                   "pip install lm-format-enforcer, or leave 'constrained' out of "
                                   "eval.prompt_arms")) from None
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    special = set(tokenizer.all_special_ids)
    regular = []
    for token in range(len(tokenizer)):
        if token in special:
            continue
        after_zero = tokenizer.decode([zero, token])[1:]  # keeps a leading space that decode alone drops
        regular.append((token, after_zero, len(after_zero) > len(tokenizer.decode([token]))))
    return TokenEnforcerTokenizerData(regular, tokenizer.decode, tokenizer.eos_token_id, False, len(tokenizer))


def response_format(constraint: Constraint) -> dict:
    """OpenAI's structured output for a JSON schema constraint."""
    return {"type": "json_schema", "json_schema": {"name": "reply", "schema": constraint.schema, "strict": False}}
