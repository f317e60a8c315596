"""Other common dataset shapes -> chat JSONL. Each output line remembers its source line, so a problem
found in the converted data is reported where the user can fix it: in the source file. The source is streamed
(JSONL line by line, a JSON array element by element, CSV row by row), each record at most max_line_bytes long and
64 levels deep (lines.py), so a hostile file cannot take the machine's memory."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import DataError, Problem
from ..safe_io import atomic_writer
from .checks import check_chat_example, check_preference_example
from .lines import DEFAULT_MAX_LINE_BYTES, MAX_DEPTH, BadJson, Skipped, open_data, parse_json, read_lines, too_deep

SOURCES = ("alpaca", "sharegpt", "csv", "prompt-chosen-rejected")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
                  "system": "system"}
_SPACE = re.compile(r"[ \t\r\n]*")  # JSON's whitespace
_GAP = re.compile(r"[ \t\r\n,]*")  # between array elements


@dataclass
class Converted:
    examples: list[tuple[int, dict]]  # (source line, chat example, or preference pair)
    problems: list[Problem]
    warnings: list[str] = field(default_factory=list)


def convert(source: Path, kind: str, system: str | None = None, prompt_column: str = "prompt",
            completion_column: str = "completion", max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Converted:
    if kind == "csv":
        records = _csv_records(source, prompt_column, completion_column, max_line_bytes)
    else:
        records = _json_records(source, max_line_bytes)
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
    with atomic_writer(out) as handle:  # whole or not at all, never through a symlink
        for _, example in converted.examples:
            handle.write(json.dumps(example, ensure_ascii=False) + "\n")


def _json_records(source: Path, limit: int) -> Iterator[tuple[int, object]]:
    """A JSON array (line numbers of each element's start) or JSONL."""
    with open_data(source) as handle:
        array = _first_byte(handle) == b"["
        handle.seek(0)
        if array:
            yield from _array_records(source, io.TextIOWrapper(handle, encoding="utf-8-sig"), limit)
            return
        for number, raw in enumerate(read_lines(handle, limit), start=1):
            if isinstance(raw, Skipped):
                yield number, Problem(f"{source}:{number}", raw.message(limit))
                continue
            if not raw.strip():
                continue
            try:
                yield number, parse_json(raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw)
            except UnicodeDecodeError as exc:
                yield number, Problem(f"{source}:{number}", f"not valid UTF-8 at byte {exc.start}")
            except BadJson as exc:
                yield number, Problem(f"{source}:{number}", exc.message)


def _first_byte(handle: IO[bytes]) -> bytes:
    """The first byte that is not a byte-order mark or whitespace (b"" for none)."""
    start = handle.read(3)
    pending = start[3:] if start == b"\xef\xbb\xbf" else start
    while True:
        pending = pending.lstrip()
        if pending:
            return pending[:1]
        pending = handle.read(1 << 16)
        if not pending:
            return b""


def _array_records(source: Path, text: IO[str], limit: int) -> Iterator[tuple[int, object]]:
    """The elements of a top-level JSON array, one at a time, each with the line it starts on. Only the element
    being parsed is in memory (at most `limit` characters): a longer one, a deeper one or invalid JSON stops it."""
    decoder = json.JSONDecoder()
    buffer, at, line, done = "", 0, 1, False
    deep = f"JSON nested more than {MAX_DEPTH} levels deep; not read"

    def more() -> None:
        nonlocal buffer, at, done
        try:
            piece = text.read(1 << 20)
        except UnicodeDecodeError as exc:
            raise DataError(Problem(f"{source}:{line}", f"not valid UTF-8 ({exc.reason})")) from None
        buffer, at, done = buffer[at:] + piece, 0, not piece

    def skip(gap: re.Pattern[str]) -> None:  # separators, counting the lines they span; more text as needed
        nonlocal at, line
        while True:
            stop = gap.match(buffer, at).end()  # type: ignore[union-attr]
            line += buffer.count("\n", at, stop)
            at = stop
            if at < len(buffer) or done:
                return
            more()

    def problem(message: str, where: int | None = None) -> tuple[int, Problem]:
        where = line if where is None else where
        return where, Problem(f"{source}:{where}", message)

    skip(_SPACE)
    at += 1  # the opening bracket (_first_byte saw it)
    while True:
        skip(_GAP)
        if at == len(buffer):
            yield problem("invalid JSON: the array is not closed with ']'")
            return
        if buffer[at] == "]":
            return
        while True:
            try:
                item, end = decoder.raw_decode(buffer, at)
            except RecursionError:
                yield problem(deep)
                return
            except json.JSONDecodeError as exc:
                cut = exc.pos >= len(buffer) - 16 or exc.msg.startswith("Unterminated string")
                if cut and not done and len(buffer) - at <= limit:
                    more()  # the element goes on past what is read so far
                    continue
                if cut and len(buffer) - at > limit:
                    yield problem(f"array element over the limit of {limit:,} bytes (data.max_line_bytes): not read")
                else:
                    yield problem(f"invalid JSON: {exc.msg}", line + buffer.count("\n", at, exc.pos))
                return
            if end < len(buffer) or done:
                break
            more()  # a number at the end of what is read may go on
        if too_deep(buffer[at:end]):
            yield problem(deep)
            return
        yield line, item
        line += buffer.count("\n", at, end)
        at = end


def _csv_records(source: Path, prompt: str, completion: str, limit: int) -> Iterator[tuple[int, object]]:
    """Rows with the line each starts on. Lines are read bounded, and a cell may hold at most `limit` characters
    (csv's field_size_limit): a longer line or cell stops the conversion with exit 2, naming the line."""
    with open_data(source) as handle:
        reader = csv.DictReader(_csv_lines(source, handle, limit))
        previous = csv.field_size_limit(limit)
        try:
            missing = [c for c in (prompt, completion) if c not in (reader.fieldnames or [])]
            if missing:
                yield 1, Problem(f"{source}:1", f"no column {', '.join(map(repr, missing))} in the header "
                                 f"{reader.fieldnames}", "name the columns with --prompt-column/--completion-column")
                return
            start = 2
            for row in reader:
                yield start, {"prompt": row[prompt], "completion": row[completion]}
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DataError(Problem(f"{source}:{reader.line_num}", f"not readable as CSV: {exc}")) from None
        finally:
            csv.field_size_limit(previous)


def _csv_lines(source: Path, handle: IO[bytes], limit: int) -> Iterator[str]:
    for number, raw in enumerate(read_lines(handle, limit), start=1):
        if isinstance(raw, Skipped):
            raise DataError(Problem(f"{source}:{number}", raw.message(limit)))
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(Problem(f"{source}:{number}", f"not valid UTF-8 at byte {exc.start}")) from None


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
