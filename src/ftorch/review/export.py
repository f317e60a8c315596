"""`ftorch review DATA --export`: the curated chat file (accepted examples as they are, edited ones as edited)
and a preference file in OpenAI's DPO format (input.messages, preferred_output, non_preferred_output): an edited
assistant answer is preferred over the original, and a wrong answer sent from an evaluation loses to its
reference. Both are written beside the data, never over it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..data.checks import content_text
from ..safe_io import atomic_writer
from .data_view import DataReview


@dataclass
class Exported:
    curated: Path | None  # None when nothing was accepted or edited (an empty file would not pass data check)
    preference: Path | None
    accepted: int
    edited: int
    rejected: int
    undecided: int
    pairs: int
    stale: int

    def to_dict(self) -> dict:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def export_paths(data: Path) -> tuple[Path, Path]:
    return data.with_name(f"{data.stem}.curated.jsonl"), data.with_name(f"{data.stem}.preference.jsonl")


def pair_from_edit(original: list[dict], edited: list[dict]) -> dict | None:
    """The DPO pair an edit makes: the conversation before the last assistant message, the edited answer
    preferred, the original one not. None when the last answers are the same (nothing to prefer)."""
    last_new = _last_assistant(edited)
    last_old = _last_assistant(original)
    if last_new is None or last_old is None:
        return None
    new, old = edited[last_new], original[last_old]
    if content_text(new) == content_text(old) and new.get("tool_calls") == old.get("tool_calls"):
        return None
    return {"input": {"messages": [_plain(m) for m in edited[:last_new]]},
            "preferred_output": [_answer(new)], "non_preferred_output": [_answer(old)]}


def pair_from_negative(record: dict) -> dict | None:
    messages = record.get("messages") or []
    if not messages or messages[-1].get("role") != "assistant":
        return None
    if content_text(messages[-1]).strip() == str(record.get("rejected", "")).strip():
        return None
    return {"input": {"messages": [_plain(m) for m in messages[:-1]]},
            "preferred_output": [_answer(messages[-1])],
            "non_preferred_output": [{"role": "assistant", "content": str(record.get("rejected", ""))}]}


def _last_assistant(messages: list[dict]) -> int | None:
    return next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "assistant"), None)


def _plain(message: dict) -> dict:
    return {k: v for k, v in message.items() if k != "weight"}


def _answer(message: dict) -> dict:
    answer = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        answer["tool_calls"] = message["tool_calls"]
    return answer


def export(review: DataReview) -> Exported:
    index, decisions = review.index, review.decisions
    curated, preference = export_paths(index.path)
    accepted = edited = rejected = 0
    pairs: list[dict] = []
    rows: list[str] = []
    for line in index.lines:
        record = decisions.current.get(line)
        if record is None:
            continue
        action = record["action"]
        if action == "reject":
            rejected += 1
            continue
        if action == "accept":
            accepted += 1
            rows.append(index.raw(line).lstrip(b"\xef\xbb\xbf").decode("utf-8"))
            continue
        edited += 1
        original, _ = index.example(line)
        example = {**original, "messages": record["messages"]}
        rows.append(json.dumps(example, ensure_ascii=False))
        pair = pair_from_edit(original.get("messages") or [], record["messages"])
        if pair is not None:
            pairs.append(pair)
    pairs += [p for p in map(pair_from_negative, decisions.negatives) if p is not None]
    if rows:
        _write(curated, rows)
    if pairs:
        _write(preference, [json.dumps(p, ensure_ascii=False) for p in pairs])
    undecided = len(index.lines) - accepted - edited - rejected
    return Exported(curated if rows else None, preference if pairs else None, accepted, edited, rejected, undecided,
                    len(pairs), len(decisions.stale))


def _write(path: Path, rows: list[str]) -> None:
    """Whole file or nothing: a temporary file made exclusively beside it, renamed over an earlier export (a
    symlink there is replaced, never written through)."""
    with atomic_writer(path) as handle:
        for row in rows:
            handle.write(row + "\n")
