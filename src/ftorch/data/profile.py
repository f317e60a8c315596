"""A dataset's profile, gathered in one streaming pass: sizes, turns, tokens, system prompts, duplicates,
and the guidance on how many examples a task needs."""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from dataclasses import dataclass, field

from .checks import Issue, content_text

_SPACE = re.compile(r"\s+")
GUIDANCE = ((10, "error", "OpenAI fine-tuning needs at least 10 examples"),
            (50, "warning", "about 50-100 well-chosen examples are advised to learn a format"),
            (500, "info", "500+ examples are advised to learn a style or a domain's vocabulary"))


def exact_key(example: dict) -> str:
    return hashlib.sha256(json.dumps(example, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def normalized_key(example: dict) -> str:
    """Same text up to case, whitespace and key order: the 'near-exact' duplicate users make by hand."""
    messages = example.get("messages") or (example.get("input") or {}).get("messages", [])
    extra = [*example.get("preferred_output", []), *example.get("non_preferred_output", [])]
    text = "\x1e".join(f"{m.get('role')}\x1f{_SPACE.sub(' ', content_text(m)).strip().lower()}"
                       for m in [*messages, *extra] if isinstance(m, dict))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Profile:
    file: str
    fmt: str
    examples: int = 0
    turns: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    with_system: int = 0
    exact_dupes: list[tuple[int, int]] = field(default_factory=list)  # (line, first line)
    normalized_dupes: list[tuple[int, int]] = field(default_factory=list)
    too_long: list[Issue] = field(default_factory=list)
    _exact: dict[str, int] = field(default_factory=dict, repr=False)
    _normal: dict[str, int] = field(default_factory=dict, repr=False)

    def add(self, example: dict, line: int, tokens: int | None = None, limit: int | None = None) -> None:
        self.examples += 1
        messages = example.get("messages") or example["input"]["messages"]
        self.turns.append(len(messages))
        self.with_system += any(m.get("role") in ("system", "developer") for m in messages)
        key = exact_key(example)
        if key in self._exact:
            self.exact_dupes.append((line, self._exact[key]))
        else:
            self._exact[key] = line
            normal = normalized_key(example)
            if normal in self._normal:
                self.normalized_dupes.append((line, self._normal[normal]))
            else:
                self._normal[normal] = line
        if tokens is not None:
            self.tokens.append(tokens)
            if limit is not None and tokens > limit:
                self.too_long.append(Issue(self.file, line, "too_long", f"{tokens} tokens, over the limit of {limit}"))

    def warnings(self) -> list[Issue]:
        found = [Issue(self.file, line, "duplicate", f"exact duplicate of line {first}", "warning")
                 for line, first in self.exact_dupes]
        found += [Issue(self.file, line, "near_duplicate", f"same text as line {first} up to case and whitespace",
                        "warning") for line, first in self.normalized_dupes]
        for minimum, severity, message in GUIDANCE:
            if self.examples < minimum and severity != "error":
                found.append(Issue(self.file, 0, "few_examples", f"{self.examples} examples: {message}", "warning"))
                break
        return found

    def token_stats(self) -> dict[str, float] | None:
        if not self.tokens:
            return None
        ordered = sorted(self.tokens)
        p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
        return {"min": ordered[0], "median": statistics.median(ordered), "p95": p95, "max": ordered[-1],
                "total": sum(ordered)}

    def to_dict(self) -> dict:
        return {"file": self.file, "format": self.fmt, "examples": self.examples,
                "turns": {"min": min(self.turns), "median": statistics.median(self.turns), "max": max(self.turns)}
                if self.turns else None,
                "tokens": self.token_stats(), "system_prompt_share": self.with_system / self.examples
                if self.examples else 0.0, "exact_duplicates": len(self.exact_dupes),
                "near_duplicates": len(self.normalized_dupes)}
