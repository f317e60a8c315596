"""Preference pairs (OpenAI's DPO format: `input.messages`, `preferred_output`, `non_preferred_output`): the
common `prompt`/`chosen`/`rejected` form converted into them, the prompt-level leakage check between splits,
and the rows TRL's preference trainers read (conversational `prompt`/`chosen`/`rejected`)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ..errors import Problem
from .checks import content_text

_SPACE = re.compile(r"\s+")


def from_prompt_chosen_rejected(record: object) -> dict:
    """{"prompt", "chosen", "rejected"} -> a preference pair. Each field may be a string or a list of chat
    messages (TRL's conversational form); a `system` string is put first. A prompt that is a string is one user
    turn; a chosen/rejected list must end with the assistant's answer (only that answer is kept)."""
    if not isinstance(record, dict) or not {"prompt", "chosen", "rejected"} <= record.keys():
        raise ValueError("a record needs 'prompt', 'chosen' and 'rejected' (strings or lists of messages)")
    prompt = record["prompt"]
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt):
        messages = [dict(m) for m in prompt]
    else:
        raise ValueError("'prompt' must be a string or a list of messages")
    system = record.get("system")
    if isinstance(system, str) and system.strip() and not any(m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    return {"input": {"messages": messages}, "preferred_output": [_answer(record["chosen"], "chosen")],
            "non_preferred_output": [_answer(record["rejected"], "rejected")]}


def _answer(value: object, key: str) -> dict:
    if isinstance(value, str):
        return {"role": "assistant", "content": value}
    if isinstance(value, list) and value and isinstance(value[-1], dict) and value[-1].get("role") == "assistant":
        return {"role": "assistant", "content": value[-1].get("content", "")}
    raise ValueError(f"'{key}' must be a string or a list of messages ending with the assistant's answer")


def prompt_key(example: dict) -> str:
    """The pair's prompt up to case and whitespace: a held-out pair asking what a training pair asks leaks."""
    messages = (example.get("input") or {}).get("messages", [])
    text = "\x1e".join(f"{m.get('role')}\x1f{_SPACE.sub(' ', content_text(m)).strip().lower()}"
                       for m in messages if isinstance(m, dict) and m.get("role") not in ("system", "developer"))
    return hashlib.sha256(text.encode()).hexdigest()


def prompt_leakage(splits: dict) -> list[Problem]:
    """Held-out preference pairs whose prompt (system prompt aside) is also a training prompt."""
    if "train" not in splits or not _is_preference(splits["train"].examples):
        return []
    seen: dict[str, int] = {}
    for example, line in zip(splits["train"].examples, splits["train"].lines):
        seen.setdefault(prompt_key(example), line)
    problems = []
    for split in ("validation", "test"):
        held = splits.get(split)
        if held is None:
            continue
        for example, line in zip(held.examples, held.lines):
            first = seen.get(prompt_key(example))
            if first is not None:
                problems.append(Problem(f"{held.path}:{line}", f"[leakage] the same prompt is in train "
                                        f"({splits['train'].path}:{first}); held-out pairs must ask unseen prompts"))
    return problems


def _is_preference(examples: list[dict]) -> bool:
    return bool(examples) and "input" in examples[0]


def trl_row(example: dict) -> dict[str, Any]:
    """One pair as TRL's preference trainers read it: conversational prompt, chosen and rejected."""
    prompt = [{"role": m["role"], "content": content_text(m)} for m in example["input"]["messages"]]
    return {"prompt": prompt,
            "chosen": [{"role": "assistant", "content": content_text(example["preferred_output"][0])}],
            "rejected": [{"role": "assistant", "content": content_text(example["non_preferred_output"][0])}]}
