"""Other common dataset shapes -> chat JSONL. Each output line remembers its source line, so a problem
found in the converted data is reported where the user can fix it: in the source file."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, Problem
from .checks import check_chat_example, check_preference_example

SOURCES = ("alpaca", "sharegpt", "csv", "prompt-chosen-rejected")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
                  "system": "system"}


@dataclass
class Converted:
    examples: list[tuple[int, dict]]  # (source line, chat example, or preference pair)
    problems: list[Problem]
    warnings: list[str] = field(default_factory=list)


def convert(source: Path, kind: str, system: str | None = None, prompt_column: str = "prompt",
            completion_column: str = "completion") -> Converted:
    if kind == "csv":
        records = _csv_records(source, prompt_column, completion_column)
    else:
        records = _json_records(source)
    from .preference import from_prompt_chosen_rejected

    to_chat: Callable[[Any], dict] = {"alpaca": _from_alpaca, "sharegpt": _from_sharegpt, "csv": _from_csv,
               "prompt-chosen-rejected": from_prompt_chosen_rejected}[kind]
    check = check_preference_example if kind == "prompt-chosen-rejected" else check_chat_example
    examples, problems, warnings = [], [], []
    for line, record in records:
        if isinstance(record, Problem):
            problems.append(record)
            continue
        try:
            example = to_chat(record)
        except ValueError as exc:
            problems.append(Problem(f"{source}:{line}", str(exc)))
            continue
        messages = example["input"]["messages"] if "input" in example else example["messages"]
        if system and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": system})
        found = check(example, str(source), line)  # back-mapped: the issue names the source line
        problems += [Problem(f"{i.file}:{i.line}", f"[{i.code}] after conversion: {i.message}")
                     for i in found if i.severity == "error"]
        warnings += [f"{i.file}:{i.line}: [{i.code}] {i.message}" for i in found if i.severity == "warning"]
        if not any(i.severity == "error" for i in found):
            examples.append((line, example))
    return Converted(examples, problems, warnings)


def write_chat(converted: Converted, out: Path) -> None:
    if out.exists():
        raise DataError(Problem(str(out), "already exists; ftorch never overwrites a file", "choose another --out"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with tmp.open("w") as handle:
        for _, example in converted.examples:
            handle.write(json.dumps(example, ensure_ascii=False) + "\n")
    tmp.replace(out)


def _json_records(source: Path) -> Iterator[tuple[int, object]]:
    """A JSON array (line numbers of each element's start) or JSONL."""
    text = source.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        decoder = json.JSONDecoder()
        try:
            items = decoder.decode(text)
        except json.JSONDecodeError as exc:
            yield exc.lineno, Problem(f"{source}:{exc.lineno}", f"invalid JSON: {exc.msg}")
            return
        starts = _element_lines(text, len(items))
        yield from zip(starts, items)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, Problem(f"{source}:{number}", f"invalid JSON: {exc.msg}")


def _element_lines(text: str, count: int) -> list[int]:
    """The line where each top-level array element starts."""
    decoder, lines, index = json.JSONDecoder(), [], text.index("[") + 1
    for _ in range(count):
        while text[index] in " \t\r\n,":
            index += 1
        lines.append(text.count("\n", 0, index) + 1)
        _, index = decoder.raw_decode(text, index)
    return lines


def _csv_records(source: Path, prompt: str, completion: str) -> Iterator[tuple[int, object]]:
    with source.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in (prompt, completion) if c not in (reader.fieldnames or [])]
        if missing:
            yield 1, Problem(f"{source}:1", f"no column {', '.join(map(repr, missing))} in the header "
                             f"{reader.fieldnames}", "name the columns with --prompt-column/--completion-column")
            return
        start = 2
        for row in reader:
            yield start, {"prompt": row[prompt], "completion": row[completion]}
            start = reader.line_num + 1


def _from_alpaca(record: object) -> dict:
    if not isinstance(record, dict) or "instruction" not in record or "output" not in record:
        raise ValueError("an Alpaca record needs 'instruction' and 'output' (and optional 'input')")
    user = str(record["instruction"]).strip()
    if str(record.get("input") or "").strip():
        user = f"{user}\n\n{str(record['input']).strip()}"
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": str(record["output"])}]
    if str(record.get("system") or "").strip():
        messages.insert(0, {"role": "system", "content": str(record["system"])})
    return {"messages": messages}


def _from_sharegpt(record: object) -> dict:
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
        raise ValueError("a ShareGPT record needs a 'conversations' list of {from, value}")
    turns = record["conversations"]
    messages = []
    if isinstance(record.get("system"), str) and record["system"].strip():
        messages.append({"role": "system", "content": record["system"]})
    for index, turn in enumerate(turns):
        speaker = turn.get("from") if isinstance(turn, dict) else None
        if speaker not in SHAREGPT_ROLES:
            raise ValueError(f"conversations[{index}].from is {speaker!r}; expected one of "
                             f"{', '.join(sorted(SHAREGPT_ROLES))}")
        messages.append({"role": SHAREGPT_ROLES[speaker], "content": str(turn.get("value", ""))})
    return {"messages": messages}


def _from_csv(record: dict) -> dict:
    return {"messages": [{"role": "user", "content": record["prompt"]},
                         {"role": "assistant", "content": record["completion"]}]}
