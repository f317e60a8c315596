"""Line-by-line checks of chat JSONL (OpenAI's fine-tuning format). Every problem is reported,
each with its line number and a stable code; the input file is only read."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROLES = ("system", "developer", "user", "assistant", "tool")
MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id", "refusal", "function_call"}
EXAMPLE_KEYS = {"messages", "tools", "parallel_tool_calls", "functions"}


@dataclass(frozen=True)
class Issue:
    file: str
    line: int
    code: str
    message: str
    severity: str = "error"  # or "warning"

    def render(self) -> str:
        return f"{self.file}:{self.line}: [{self.code}] {self.message}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ChatFile:
    path: Path
    examples: list[dict]
    lines: list[int]  # source line of each example
    issues: list[Issue]

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]


def read_chat_jsonl(path: Path) -> ChatFile:
    """Parse and check every line; examples with errors are left out of `examples`."""
    name = str(path)
    raw = path.read_bytes()
    issues: list[Issue] = []
    if raw.startswith(b"\xef\xbb\xbf"):
        issues.append(Issue(name, 1, "bom", "file starts with a UTF-8 byte-order mark; save it without BOM"))
        raw = raw[3:]
    examples, lines = [], []
    for number, line_bytes in enumerate(raw.split(b"\n"), start=1):
        if not line_bytes.strip():
            if number < raw.count(b"\n") + 1 or line_bytes:
                issues.append(Issue(name, number, "blank_line", "blank line", "warning"))
            continue
        try:
            text = line_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            issues.append(Issue(name, number, "bad_utf8", f"not valid UTF-8 at byte {exc.start}"))
            continue
        try:
            example = json.loads(text)
        except json.JSONDecodeError as exc:
            issues.append(Issue(name, number, "invalid_json", f"invalid JSON: {exc.msg} (column {exc.colno})"))
            continue
        found = check_chat_example(example, name, number)
        issues += found
        if not any(i.severity == "error" for i in found):
            examples.append(example)
            lines.append(number)
    if not examples and not any(i.severity == "error" for i in issues):
        issues.append(Issue(name, 1, "empty_file", "no examples in file"))
    return ChatFile(path, examples, lines, issues)


def check_chat_example(example: Any, file: str, line: int) -> list[Issue]:
    def issue(code: str, message: str, severity: str = "error") -> Issue:
        return Issue(file, line, code, message, severity)

    if not isinstance(example, dict):
        return [issue("not_object", f"expected a JSON object, got {type(example).__name__}")]
    found = [issue("unknown_key", f"unknown top-level key '{k}'") for k in example if k not in EXAMPLE_KEYS]
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return found + [issue("missing_messages", "'messages' must be a non-empty list")]
    if "tools" in example and not isinstance(example["tools"], list):
        found.append(issue("bad_tools", "'tools' must be a list"))
    has_assistant = False
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            found.append(issue("message_not_object", f"{where} is not an object"))
            continue
        found += [issue("unknown_message_key", f"{where} has unknown key '{k}'") for k in message if k not in MESSAGE_KEYS]
        role = message.get("role")
        if role not in ROLES:
            found.append(issue("unknown_role", f"{where}.role is {role!r}; expected one of {', '.join(ROLES)}"))
            continue
        content = message.get("content")
        if role == "assistant":
            has_assistant = True
            found += _check_assistant(message, where, issue)
        elif role == "tool" and not isinstance(message.get("tool_call_id"), str):
            found.append(issue("bad_tool_message", f"{where}: a tool message needs a 'tool_call_id' string"))
        if role != "assistant" or not message.get("tool_calls"):
            if not _content_text(content).strip():
                found.append(issue("missing_content", f"{where} ({role}) has no content"))
        if "weight" in message and role != "assistant":
            found.append(issue("bad_weight", f"{where}: 'weight' is only allowed on assistant messages"))
    if not has_assistant:
        found.append(issue("no_assistant", "no assistant message to learn from"))
    return found


def _check_assistant(message: dict, where: str, issue) -> list[Issue]:
    found = []
    if "weight" in message and message["weight"] not in (0, 1) or isinstance(message.get("weight"), bool):
        found.append(issue("bad_weight", f"{where}.weight must be 0 or 1, got {message['weight']!r}"))
    calls = message.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list) or not calls:
            found.append(issue("bad_tool_calls", f"{where}.tool_calls must be a non-empty list"))
        else:
            for n, call in enumerate(calls):
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(call.get("id"), str):
                    found.append(issue("bad_tool_calls", f"{where}.tool_calls[{n}] needs 'id' and 'function.name'"))
                elif not isinstance(fn.get("arguments"), str):
                    found.append(issue("bad_tool_calls", f"{where}.tool_calls[{n}].function.arguments must be a JSON string"))
                else:
                    try:
                        json.loads(fn["arguments"])
                    except json.JSONDecodeError:
                        found.append(issue("bad_tool_calls", f"{where}.tool_calls[{n}].function.arguments is not valid JSON"))
    return found


def _content_text(content: Any) -> str:
    """A message's text, for string content or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def content_text(message: dict) -> str:
    return _content_text(message.get("content"))
