"""The data side of `ftorch review`: an index of one JSONL file built in one streaming pass through the same
checks as `ftorch data check` (issues, token counts, duplicate clusters), pages of examples read from disk on
demand, and live validation of an edit with those same checks. The file is read through data/lines.py: a FIFO or a
device is refused, and a line over data.max_line_bytes stops the review (exit 2, naming it) before it is parsed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.checks import Issue, check_chat_example, check_preference_example, content_text
from ..data.lines import DEFAULT_MAX_LINE_BYTES, Skipped, open_data, parse_json, read_lines
from ..data.profile import exact_key, normalized_key
from ..data.report import inspect_file
from ..data.tokens import TokenCounter, truncation_issue
from ..errors import DataError, Problem
from . import store

PAGE_MAX = 200


def content_hash(raw: bytes) -> str:
    """The key a decision follows: the project's exact-duplicate key (same example up to JSON formatting and key
    order), or the bytes' hash for a line that is not a JSON object."""
    try:
        example = parse_json(raw.lstrip(b"\xef\xbb\xbf"))
    except ValueError:  # not JSON, too deep, not UTF-8
        example = None
    if isinstance(example, dict):
        return exact_key(example)
    return hashlib.sha256(raw).hexdigest()


@dataclass
class DataIndex:
    path: Path
    fmt: str
    counter: TokenCounter
    max_length: int | None = None
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    lines: list[int] = field(default_factory=list)  # example lines (blank lines left out), in file order
    offsets: list[int] = field(default_factory=list)  # byte offset of every physical line (index = line - 1)
    issues: dict[int, list[Issue]] = field(default_factory=dict)
    file_issues: list[Issue] = field(default_factory=list)
    tokens: dict[int, int] = field(default_factory=dict)
    hashes: dict[int, str] = field(default_factory=dict)
    normal: dict[int, str] = field(default_factory=dict)
    clusters: dict[int, dict] = field(default_factory=dict)  # line -> {"kind", "lines"}

    @classmethod
    def build(cls, path: Path, fmt: str, counter: TokenCounter, max_length: int | None = None,
              max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> DataIndex:
        index = cls(path, fmt, counter, max_length, max_line_bytes)

        def visit(line, tokens):
            long = next((i for i in line.issues if i.code == "line_too_long"), None)
            if long is not None:  # the page could not show it: refused before anything else is read
                raise DataError(Problem(f"{path}:{line.number}", long.message, "fix or remove that line, then "
                                        "review again (`ftorch data check FILE` lists every such line)"))
            if not line.raw:
                return
            index.lines.append(line.number)
            index.hashes[line.number] = content_hash(line.raw)
            if tokens is not None:
                index.tokens[line.number] = tokens
                index.normal[line.number] = normalized_key(line.example())

        report = inspect_file(path, fmt, counter, max_length, visit=visit, max_line_bytes=max_line_bytes)
        offset = 0
        with open_data(path) as handle:
            for raw in read_lines(handle, max_line_bytes):
                index.offsets.append(offset)
                offset += raw.size if isinstance(raw, Skipped) else len(raw)
        for issue in report.issues:
            if issue.line in index.hashes:
                index.issues.setdefault(issue.line, []).append(issue)
            else:  # file-level (line 0, an empty file) or a blank line
                index.file_issues.append(issue)
        for kind, pairs in (("exact", report.profile.exact_dupes), ("near", report.profile.normalized_dupes)):
            groups: dict[int, list[int]] = {}
            for line, first in pairs:
                groups.setdefault(first, [first]).append(line)
            for members in groups.values():
                for line in members:
                    index.clusters[line] = {"kind": kind, "lines": members}
        return index

    def raw(self, line: int) -> bytes:
        with open_data(self.path, buffering=-1) as handle:  # one line: the default small buffer
            handle.seek(self.offsets[line - 1])
            return handle.readline(self.max_line_bytes + 1).rstrip(b"\r\n")

    def example(self, line: int) -> tuple[Any, str | None]:
        """(parsed JSON, None) or (None, the raw text) for a line that does not parse (or nests too deep)."""
        raw = self.raw(line)
        try:
            return parse_json(raw.lstrip(b"\xef\xbb\xbf")), None
        except ValueError:
            return None, raw.decode("utf-8", errors="replace")

    def item(self, line: int, decision: dict | None) -> dict:
        example, text = self.example(line)
        return {"line": line, "hash": self.hashes[line], "example": example, "raw": text,
                "issues": [i.to_dict() for i in self.issues.get(line, [])], "tokens": self.tokens.get(line),
                "cluster": self.clusters.get(line), "decision": decision}

    def search(self, needle: str) -> set[int]:
        """Lines whose text contains needle (case-insensitive), in one sequential read."""
        needle = needle.lower()
        with open_data(self.path) as handle:
            return {number for number, raw in enumerate(read_lines(handle, self.max_line_bytes), 1)
                    if isinstance(raw, bytes) and needle in raw.decode("utf-8", errors="replace").lower()}

    # ---- live validation of an edit ----

    def validate(self, line: int, messages: Any) -> dict:
        """The issues `ftorch data check` would report for the example with these messages (chat files)."""
        original, _ = self.example(line)
        example = {**original, "messages": messages} if isinstance(original, dict) else {"messages": messages}
        name = str(self.path)
        issues = check_chat_example(example, name, line)
        tokens = None
        if not any(i.severity == "error" for i in issues):
            tokens = self.counter.count(example, "chat")
            limit = self.counter.max_tokens
            if limit is not None and tokens > limit:
                issues.append(Issue(name, line, "too_long", f"{tokens} tokens, over the limit of {limit}"))
            if self.max_length is not None and tokens > self.max_length:
                kept, cut = self.counter.truncation(example["messages"], self.max_length)
                issues.append(truncation_issue(name, line, tokens, self.max_length, kept, cut))
            issues += self._duplicate_of(line, example)
        return {"ok": not any(i.severity == "error" for i in issues), "tokens": tokens, "example": example,
                "issues": [i.to_dict() for i in issues]}

    def _duplicate_of(self, line: int, example: dict) -> list[Issue]:
        exact, normal = exact_key(example), normalized_key(example)
        for other in self.lines:
            if other == line:
                continue
            if self.hashes.get(other) == exact:
                return [Issue(str(self.path), line, "duplicate", f"exact duplicate of line {other}", "warning")]
            if self.normal.get(other) == normal:
                return [Issue(str(self.path), line, "near_duplicate",
                              f"same text as line {other} up to case and whitespace", "warning")]
        return []

    def check(self, example: Any, line: int) -> list[Issue]:
        check = check_chat_example if self.fmt == "chat" else check_preference_example
        return check(example, str(self.path), line)


def summary_text(example: Any, raw: str | None) -> str:
    """A one-line preview: the last user message, or the raw text."""
    if raw is not None:
        return raw[:120]
    messages: list[Any] = []
    if isinstance(example, dict):
        messages = example.get("messages") or (example.get("input") or {}).get("messages") or []
    users = [content_text(m) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return (users[-1] if users else json.dumps(example, ensure_ascii=False))[:120]


@dataclass
class DataReview:
    """One data file under review: its index and the decisions replayed from its review file."""

    kind = "data"

    index: DataIndex
    review_file: Path
    decisions: store.Decisions
    order: list[int] | None = None  # lines in review order (`--order suspects`); None: file order
    suspects: dict[int, dict] = field(default_factory=dict)  # line -> rank, score, the model's answer

    @classmethod
    def open(cls, path: Path, fmt: str, counter: TokenCounter, max_length: int | None = None,
             max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> DataReview:
        index = DataIndex.build(path, fmt, counter, max_length, max_line_bytes)
        review_file = store.review_path(path)
        return cls(index, review_file, store.replay(review_file, index.hashes))

    def order_by_suspects(self, rows: list[dict]) -> int:
        """Review the suspects (data/suspects.py's rows, best first) first, then every other example in file
        order. A suspect whose line no longer holds the same example (the file changed) is left out of the
        ordering; returns how many suspects were placed."""
        placed = [r for r in rows if self.index.hashes.get(r.get("line", -1)) == r.get("hash")]
        self.suspects = {r["line"]: {"rank": r["rank"], "score": r["score"], "answer": r.get("answer"),
                                     "loss": r.get("loss"), "disagreement": r.get("disagreement")} for r in placed}
        first = [r["line"] for r in placed]
        self.order = first + [n for n in self.index.lines if n not in self.suspects]
        return len(placed)

    @property
    def ordered_lines(self) -> list[int]:
        return self.order if self.order is not None else self.index.lines

    def reload_decisions(self) -> None:
        self.decisions = store.replay(self.review_file, self.index.hashes)

    def decision_of(self, line: int) -> str:
        record = self.decisions.current.get(line)
        return record["action"] if record else "undecided"

    def meta(self) -> dict:
        codes: dict[str, int] = {}
        for issues in self.index.issues.values():
            for code in {i.code for i in issues}:
                codes[code] = codes.get(code, 0) + 1
        counts = self.decisions.counts()
        counts["undecided"] = len(self.index.lines) - sum(counts.values())
        return {"kind": "data", "file": str(self.index.path), "resume": self.resume_line(), "format": self.index.fmt,
                "review_file": str(self.review_file), "examples": len(self.index.lines), "codes": codes,
                "decisions": counts, "stale": [s.to_dict() for s in self.decisions.stale],
                "moved": self.decisions.moved, "negatives": len(self.decisions.negatives),
                "unreadable_records": self.decisions.unreadable, "repaired": self.decisions.repaired,
                "tokenizer": self.index.counter.tokenizer,
                "order": "suspects" if self.order is not None else "file", "suspects": len(self.suspects),
                "file_issues": [i.to_dict() for i in self.index.file_issues],
                "editable": self.index.fmt == "chat"}

    def resume_line(self) -> int | None:
        """Where the person stopped: the first undecided example after the newest decision (then from the top)."""
        lines, last = self.ordered_lines, self.decisions.last_line
        place = lines.index(last) if last in lines else -1
        after = lines[place + 1:] if last is not None else lines
        before = lines[: place + 1] if last is not None else []
        return next((n for n in after + before if n not in self.decisions.current), last)

    def matching(self, code: str = "", decision: str = "", query: str = "") -> list[int]:
        lines = self.ordered_lines
        if code == "any":
            lines = [n for n in lines if n in self.index.issues]
        elif code == "none":
            lines = [n for n in lines if n not in self.index.issues]
        elif code:
            lines = [n for n in lines if any(i.code == code for i in self.index.issues.get(n, []))]
        if decision:
            lines = [n for n in lines if self.decision_of(n) == decision]
        if query:
            found = self.index.search(query)
            needle = query.lower()
            lines = [n for n in lines if n in found
                     or needle in json.dumps(self.decisions.current.get(n, {}).get("messages", ""),
                                             ensure_ascii=False).lower()]
        return lines

    def page(self, start: int, size: int, around: int | None = None, **filters: str) -> dict:
        """Examples start..start+size of those matching; with `around`, the page holding that line instead (its
        place in the page is "current")."""
        lines = self.matching(**filters)
        size = max(1, min(size, PAGE_MAX))
        current = 0
        if around is not None and around in lines:
            place = lines.index(around)
            start, current = place - place % size, place % size
        start = max(0, min(start, max(0, len(lines) - 1)))
        items = []
        for line in lines[start:start + size]:
            item = self.index.item(line, self.decisions.current.get(line))
            item["preview"] = summary_text(item["example"], item["raw"])
            item["suspect"] = self.suspects.get(line)
            items.append(item)
        return {"total": len(lines), "start": start, "items": items, "current": current}

    def decide(self, line: int, digest: str, action: str, messages: Any = None, note: str = "") -> dict:
        if line not in self.index.hashes or self.index.hashes[line] != digest:
            raise LookupError(f"line {line} is not the example the page showed (the data file changed): reload")
        if action == "undo":
            record = self.decisions.current.get(line)
            if record is None:
                return {"ok": True, "decision": None, "note": "nothing to undo"}
            store.decide(self.review_file, record.get("moved_from", line), digest, "undo")
        else:
            validation = None
            if action == "edit":
                if not self.index.fmt == "chat":
                    raise ValueError("only chat examples can be edited")
                validation = self.index.validate(line, messages)
                if not validation["ok"]:
                    return {"ok": False, "validation": validation}
            self.decisions.applied(store.decide(self.review_file, line, digest, action, messages=messages,
                                                note=note))
            return {"ok": True, "decision": self.decisions.current.get(line), "meta": self.meta()}
        self.reload_decisions()  # an undo: the previous decision may be one that followed its example here
        return {"ok": True, "decision": self.decisions.current.get(line), "meta": self.meta()}
