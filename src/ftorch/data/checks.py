"""Line-by-line checks of chat JSONL (OpenAI's fine-tuning format) and preference JSONL (OpenAI's DPO
format: how users give negative examples). Every problem is reported, each with its line number and a
stable code; files are streamed through lines.py (memory bounded: a line over the limit is reported unread) and
only ever read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .fastpath import accepts
from .lines import DEFAULT_MAX_LINE_BYTES, BadJson, Skipped, open_data, parse_json, read_blocks, read_lines

FORMATS = ("chat", "preference")
ROLES = ("system", "developer", "user", "assistant", "tool")
MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id", "refusal", "function_call"}
CHAT_KEYS = {"messages", "tools", "parallel_tool_calls", "functions"}
PREFERENCE_KEYS = {"input", "preferred_output", "non_preferred_output"}
INPUT_KEYS = {"messages", "tools", "parallel_tool_calls"}

# Every code the checker emits, with what it means; tests cover each one.
CODES = {
    "bom": "file starts with a UTF-8 byte-order mark",
    "bad_utf8": "line is not valid UTF-8",
    "blank_line": "blank line (warning)",
    "invalid_json": "line is not valid JSON",
    "too_deep": "JSON nested more than 64 levels deep: not parsed",
    "line_too_long": "line longer than data.max_line_bytes: not read (`data check` exits 2, train refuses)",
    "not_object": "line is JSON but not an object",
    "empty_file": "no examples in the file",
    "unknown_key": "unknown top-level key",
    "missing_messages": "'messages' missing, not a list, or empty",
    "message_not_object": "a message is not an object",
    "unknown_message_key": "a message has an unknown key",
    "unknown_role": "a message's role is not system/developer/user/assistant/tool",
    "missing_content": "a message has no (or only blank) content",
    "no_assistant": "no assistant message to learn from",
    "bad_weight": "'weight' is not 0/1 or is on a non-assistant message",
    "bad_tool_calls": "malformed assistant tool_calls",
    "bad_tool_message": "a tool message without tool_call_id",
    "bad_tools": "'tools' is not a list",
    "missing_input": "preference example without input.messages",
    "input_not_ending_with_user": "preference input does not end with a user message (warning)",
    "bad_output": "preferred_output/non_preferred_output is not a list of one assistant message",
    "identical_outputs": "preferred and non-preferred outputs are the same",
    "outputs_differ_in_whitespace": "preferred and non-preferred outputs differ only in whitespace (warning)",
    "too_long": "example longer than the model's context or the provider's per-example limit",
    "nothing_to_learn": "every assistant message has weight 0: the example trains nothing (warning)",
    "truncated": "example longer than train.max_length: truncation cuts it (warning; an error when it cuts "
                 "assistant tokens and everything trainable is lost)",
}


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
class Line:
    number: int
    raw: bytes
    issues: list[Issue]

    @property
    def ok(self) -> bool:
        return not any(i.severity == "error" for i in self.issues)

    def example(self) -> dict:
        return parse_json(self.raw)


def scan(path: Path, fmt: str, keep_ok: bool = True, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Line]:
    """Every non-blank line with its issues (file-level issues ride on line 1 or the blank line).
    With keep_ok=False, lines without any issue are not yielded (the format-check hot loop).
    The file is read in blocks of about 1 MiB: memory stays bounded whatever the file's size; a line over
    `max_line_bytes` is a `line_too_long` issue, never read whole."""
    name = str(path)
    check = check_chat_example if fmt == "chat" else check_preference_example
    seen_any = False
    pending_blank: list[int] = []
    number = 0
    with open_data(path) as handle:
        for block in read_blocks(handle, max_line_bytes):
            if isinstance(block, Skipped):
                number += 1
                for blank in pending_blank:
                    yield _blank(name, blank)
                pending_blank, seen_any = [], True
                yield Line(number, b"", [Issue(name, number, "line_too_long", block.message(max_line_bytes))])
                continue
            verdicts = accepts(fmt, block)
            if not pending_blank and all(verdicts):  # a clean block: no per-line work here
                if keep_ok:
                    yield from (Line(number + i, raw.rstrip(b"\r\n"), []) for i, raw in enumerate(block, 1))
                number += len(block)
                seen_any = True
                continue
            for raw, ok in zip(block, verdicts):
                number += 1
                if ok:  # the common case: JSON allows the trailing newline, so the decoder saw the raw line
                    for blank in pending_blank:
                        yield _blank(name, blank)
                    pending_blank = []
                    seen_any = True
                    if keep_ok:
                        yield Line(number, raw.rstrip(b"\r\n"), [])
                    continue
                issues: list[Issue] = []
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    issues.append(Issue(name, 1, "bom",
                                        "file starts with a UTF-8 byte-order mark; save it without BOM"))
                    raw = raw[3:]
                body = raw.rstrip(b"\r\n")
                if not body.strip():
                    pending_blank.append(number)
                    continue
                for blank in pending_blank:  # blank lines at the very end are harmless; inside, they are reported
                    yield _blank(name, blank)
                pending_blank = []
                seen_any = True
                yield Line(number, body, issues + _check_line(body, name, number, check))
    if not seen_any:
        yield Line(1, b"", [Issue(name, 1, "empty_file", "no examples in file")])


def _blank(name: str, number: int) -> Line:
    return Line(number, b"", [Issue(name, number, "blank_line", "blank line", "warning")])


def format_issues(path: Path, fmt: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> list[Issue]:
    """Only the format check, streaming: every issue in the file, nothing else kept."""
    return [issue for line in scan(path, fmt, keep_ok=False, max_line_bytes=max_line_bytes) for issue in line.issues]


def _check_line(body: bytes, name: str, number: int, check) -> list[Issue]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Issue(name, number, "bad_utf8", f"not valid UTF-8 at byte {exc.start}")]
    try:
        example = parse_json(text)
    except BadJson as exc:
        return [Issue(name, number, exc.code, exc.message)]
    return check(example, name, number)


def detect_format(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> str:
    """'chat' or 'preference', from the first line that parses; chat when nothing does."""
    with open_data(path) as handle:
        for raw in read_lines(handle, max_line_bytes):
            if isinstance(raw, Skipped):
                continue
            try:
                example = parse_json(raw.lstrip(b"\xef\xbb\xbf"))
            except ValueError:  # not JSON, too deep, not UTF-8
                continue
            if isinstance(example, dict):
                return "preference" if PREFERENCE_KEYS & example.keys() else "chat"
    return "chat"


def _issue_at(file: str, line: int):
    def issue(code: str, message: str, severity: str = "error") -> Issue:
        return Issue(file, line, code, message, severity)

    return issue


def check_chat_example(example: Any, file: str, line: int) -> list[Issue]:
    issue = _issue_at(file, line)
    if not isinstance(example, dict):
        return [issue("not_object", f"expected a JSON object, got {type(example).__name__}")]
    found = [issue("unknown_key", f"unknown top-level key '{k}'") for k in example if k not in CHAT_KEYS]
    return found + _check_messages(example, issue, require_assistant=True)


def check_preference_example(example: Any, file: str, line: int) -> list[Issue]:
    issue = _issue_at(file, line)
    if not isinstance(example, dict):
        return [issue("not_object", f"expected a JSON object, got {type(example).__name__}")]
    found = [issue("unknown_key", f"unknown top-level key '{k}'") for k in example if k not in PREFERENCE_KEYS]
    given = example.get("input")
    if not isinstance(given, dict) or not isinstance(given.get("messages"), list) or not given["messages"]:
        found.append(issue("missing_input", "'input.messages' must be a non-empty list"))
    else:
        found += [issue("unknown_key", f"unknown key 'input.{k}'") for k in given if k not in INPUT_KEYS]
        found += _check_messages(given, issue, require_assistant=False)
        last = given["messages"][-1]
        if isinstance(last, dict) and last.get("role") != "user":
            found.append(issue("input_not_ending_with_user", "input.messages should end with the user turn "
                               "that the outputs answer", "warning"))
    outputs = []
    for key in ("preferred_output", "non_preferred_output"):
        value = example.get(key)
        if not (isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict)
                and value[0].get("role") == "assistant"):
            found.append(issue("bad_output", f"'{key}' must be a list of exactly one assistant message"))
            continue
        found += _check_messages({"messages": value}, issue, require_assistant=True, where=key)
        outputs.append(value[0])
    if len(outputs) == 2 and _content_text(outputs[0].get("content")) == _content_text(outputs[1].get("content")) \
            and outputs[0].get("tool_calls") == outputs[1].get("tool_calls"):
        found.append(issue("identical_outputs", "preferred and non-preferred outputs are identical; "
                           "the pair teaches nothing"))
    elif len(outputs) == 2 and _squeezed(outputs[0].get("content")) == _squeezed(outputs[1].get("content")) \
            and outputs[0].get("tool_calls") == outputs[1].get("tool_calls"):
        found.append(issue("outputs_differ_in_whitespace", "preferred and non-preferred outputs differ only in "
                           "whitespace: the pair teaches spacing, not behaviour", "warning"))
    return found


def _check_messages(example: dict, issue, require_assistant: bool, where: str = "messages") -> list[Issue]:
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return [issue("missing_messages", f"'{where}' must be a non-empty list")]
    found = []
    if "tools" in example and not isinstance(example["tools"], list):
        found.append(issue("bad_tools", "'tools' must be a list"))
    has_assistant = trained = False
    for index, message in enumerate(messages):
        at = f"{where}[{index}]"
        if not isinstance(message, dict):
            found.append(issue("message_not_object", f"{at} is not an object"))
            continue
        found += [issue("unknown_message_key", f"{at} has unknown key '{k}'") for k in message if k not in MESSAGE_KEYS]
        role = message.get("role")
        if role not in ROLES:
            found.append(issue("unknown_role", f"{at}.role is {role!r}; expected one of {', '.join(ROLES)}"))
            continue
        if role == "assistant":
            has_assistant = True
            trained = trained or message.get("weight", 1) != 0
            found += _check_assistant(message, at, issue)
        elif role == "tool" and not isinstance(message.get("tool_call_id"), str):
            found.append(issue("bad_tool_message", f"{at}: a tool message needs a 'tool_call_id' string"))
        if "weight" in message and role != "assistant":
            found.append(issue("bad_weight", f"{at}: 'weight' is only allowed on assistant messages"))
        if (role != "assistant" or not message.get("tool_calls")) and not _content_text(message.get("content")).strip():
            found.append(issue("missing_content", f"{at} ({role}) has no content"))
    if require_assistant and not has_assistant:
        found.append(issue("no_assistant", "no assistant message to learn from"))
    elif require_assistant and not trained:
        found.append(issue("nothing_to_learn", "every assistant message has weight 0: this example trains nothing",
                           "warning"))
    return found


def _check_assistant(message: dict, at: str, issue) -> list[Issue]:
    found = []
    weight = message.get("weight", 0)
    if isinstance(weight, bool) or weight not in (0, 1):
        found.append(issue("bad_weight", f"{at}.weight must be 0 or 1, got {message['weight']!r}"))
    calls = message.get("tool_calls")
    if calls is None:
        return found
    if not isinstance(calls, list) or not calls:
        return found + [issue("bad_tool_calls", f"{at}.tool_calls must be a non-empty list")]
    for n, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(call.get("id"), str):
            found.append(issue("bad_tool_calls", f"{at}.tool_calls[{n}] needs 'id' and 'function.name'"))
        elif not isinstance(fn.get("arguments"), str):
            found.append(issue("bad_tool_calls", f"{at}.tool_calls[{n}].function.arguments must be a JSON string"))
        else:
            try:
                parse_json(fn["arguments"])
            except ValueError:
                found.append(issue("bad_tool_calls", f"{at}.tool_calls[{n}].function.arguments is not valid JSON"))
    return found


def _content_text(content: Any) -> str:
    """A message's text, for string content or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _squeezed(content: Any) -> str:
    return "".join(_content_text(content).split())


def content_text(message: dict) -> str:
    return _content_text(message.get("content"))


@dataclass
class ChatFile:
    """A whole file in memory, for training: the examples that passed, their lines, and every issue."""

    path: Path
    examples: list[dict]
    lines: list[int]
    issues: list[Issue]

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]


def read_jsonl(path: Path, fmt: str = "chat", max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> ChatFile:
    examples, lines, issues = [], [], []
    for line in scan(path, fmt, max_line_bytes=max_line_bytes):
        issues += line.issues
        if line.ok and line.raw:
            examples.append(line.example())
            lines.append(line.number)
    return ChatFile(path, examples, lines, issues)


def read_chat_jsonl(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> ChatFile:
    return read_jsonl(path, "chat", max_line_bytes)


def preferred_as_chat(example: dict) -> dict:
    """A preference pair as the chat example it prefers: the prompt's messages, then the preferred answer."""
    return {"messages": [*example["input"]["messages"], example["preferred_output"][0]]}


def read_as_chat(path: Path, fmt: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> ChatFile:
    """A chat file as read, or a preference file as the chat examples it prefers (what prompts may show)."""
    file = read_jsonl(path, fmt, max_line_bytes)
    if fmt == "preference":
        file.examples = [preferred_as_chat(e) for e in file.examples]
    return file
