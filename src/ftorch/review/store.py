"""The review file: every decision a person makes, appended at once (flush + fsync) beside the data, so a crash,
a closed tab or Ctrl-C loses nothing. The data file itself is only ever read.

One JSON object a line. A decision is keyed by the example's line and its content hash; replaying the file gives
each example's current decision (the newest one; `undo` pops it). When the data changed since, a decision follows
its content hash to wherever that example moved, and one whose example is gone or edited is reported as stale.

Durable means: a record is acknowledged only once all of it is written (a short write is continued) and fsynced;
a write the disk refuses part-way (a full disk) is rolled back to the size before it, so no torn line is left for
the next record to be glued onto. A torn last line left by a crash is cut off when the file is opened (and said
so). Appends and that repair hold an exclusive lock on the file, so two servers or threads never interleave."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..safe_io import open_fd

ACTIONS = ("accept", "reject", "edit")
VERSION = 1


def review_path(data: Path) -> Path:
    """data/train.jsonl -> data/train.review.jsonl"""
    return data.with_name(f"{data.stem}.review.jsonl")


class NotSaved(OSError):
    """A record the disk did not take whole: rolled back, so nothing was acknowledged and nothing is torn."""

    def __str__(self) -> str:
        return str(self.strerror)


_APPENDING = threading.Lock()


@contextmanager
def _exclusive(fd: int) -> Iterator[None]:
    """This process's threads and other processes (flock) one at a time on the file behind `fd`."""
    with _APPENDING:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written: a short write (a nearly full disk) is continued, and the write that
    then fails raises (ENOSPC) instead of leaving the record cut."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, "the disk took none of the record")
        view = view[written:]


def _roll_back(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError:
        pass  # the torn tail is cut off when the file is next opened (repair_tail)


def append_record(path: Path, record: dict) -> dict:
    """Append one record and make it durable before returning; on any failure the file is as it was before and
    NotSaved is raised (the caller must not acknowledge the record)."""
    record = {"v": VERSION, "at": datetime.now(UTC).isoformat(timespec="seconds"), **record}
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = open_fd(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        with _exclusive(fd):
            before = os.fstat(fd).st_size
            if before and os.pread(fd, 1, before - 1) != b"\n":
                data = b"\n" + data  # a line torn by a crash elsewhere: this record still starts a line of its own
            try:
                write_all(fd, data)
                os.fsync(fd)
            except OSError as exc:
                _roll_back(fd, before)
                raise NotSaved(exc.errno, f"not saved: {exc.strerror or exc} ({path}); nothing was written, the "
                                          "decisions saved before are safe") from exc
            except BaseException:
                _roll_back(fd, before)
                raise
    finally:
        os.close(fd)
    return record


def _last_line_start(fd: int, end: int) -> int:
    """The offset where the line ending at `end` starts (just after the newline before it, or 0)."""
    position = end
    while position > 0:
        start = max(0, position - (64 << 10))
        found = os.pread(fd, position - start, start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        position = start
    return 0


def _complete(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def repair_tail(path: Path) -> str:
    """Cut a torn last line (one without its newline that is not a whole record, or that does not parse) back to
    the last complete record, and say so; a whole record that only lacks its newline gets it. "" when nothing
    was wrong (or the file is absent, or cannot be written: its torn line is then skipped as unreadable)."""
    try:
        fd = open_fd(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return ""
        raise
    try:
        with _exclusive(fd):
            size = os.fstat(fd).st_size
            ends_whole = size > 0 and os.pread(fd, 1, size - 1) == b"\n"
            start = _last_line_start(fd, size - 1 if ends_whole else size)
            tail = os.pread(fd, size - start, start)
            whole = not tail.strip() or _complete(tail)
            if whole and (ends_whole or not tail.strip()):
                return ""
            try:
                if whole:
                    write_all(fd, b"\n")
                else:
                    os.ftruncate(fd, start)
                os.fsync(fd)
            except OSError:  # a full or failing disk: the line is skipped as unreadable, the next append
                return ""  # starts a line of its own
            if whole:
                return ""
    finally:
        os.close(fd)
    return (f"{path}: its last line was cut off by an interrupted write (never confirmed to the page) and "
            f"was removed ({len(tail)} bytes); every complete decision before it is kept")


def read_records(path: Path) -> tuple[list[dict], list[int]]:
    """Every readable record, and the numbers of lines that are not (a torn last line after a power cut)."""
    records: list[dict] = []
    unreadable: list[int] = []
    if not path.is_file():
        return records, unreadable
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                unreadable.append(number)
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                unreadable.append(number)
    return records, unreadable


@dataclass
class Stale:
    """A decision that no longer applies: its example changed or is gone from the data file."""

    line: int
    hash: str
    action: str

    def to_dict(self) -> dict:
        return {"line": self.line, "hash": self.hash, "action": self.action}


@dataclass
class Decisions:
    """The current decision per data line (after mapping by content hash), and what could not be mapped."""

    path: Path
    current: dict[int, dict] = field(default_factory=dict)  # data line -> newest decision record
    stale: list[Stale] = field(default_factory=list)
    moved: int = 0  # decisions found at another line than recorded (the file changed, the example did not)
    negatives: list[dict] = field(default_factory=list)  # wrong answers sent from an evaluation
    unreadable: list[int] = field(default_factory=list)
    repaired: str = ""  # what repair_tail cut off on opening (a torn last line), for the page and the terminal
    stacks: dict[tuple[int, str], list[dict]] = field(default_factory=dict, repr=False)
    last_line: int | None = None  # where the newest standing decision is: reopening resumes after it
    records: int = 0  # records read or appended: the next one's place in the file

    def applied(self, record: dict) -> None:
        """A new accept/reject/edit just appended at its example's current line: it becomes that line's decision
        (what a replay would give, without replaying the whole file)."""
        line = record["line"]
        record["_seq"] = self.records
        self.records += 1
        self.stacks.setdefault((line, record["hash"]), []).append(record)
        if "moved_from" in self.current.get(line, {}):
            self.moved -= 1  # a decision made here supersedes the one that followed the example here
        self.current[line] = record
        self.last_line = line

    def counts(self) -> dict[str, int]:
        found = {action: 0 for action in ACTIONS}
        for record in self.current.values():
            found[record["action"]] += 1
        return found


def replay(path: Path, hashes: dict[int, str]) -> Decisions:
    """The decisions in the review file, applied to the data as it is now (`hashes`: data line -> content hash).
    A torn last line is cut off first (repair_tail)."""
    repaired = repair_tail(path)
    records, unreadable = read_records(path)
    stacks: dict[tuple[int, str], list[dict]] = {}
    negatives: dict[str, dict] = {}
    for number, record in enumerate(records):
        record["_seq"] = number  # its place in the file (in memory only)
        action = record.get("action")
        if action == "negative":
            negatives[record["hash"]] = record
            continue
        key = (int(record.get("line", 0)), str(record.get("hash", "")))
        if action == "undo":
            if stacks.get(key):
                stacks[key].pop()
        elif action in ACTIONS:
            stacks.setdefault(key, []).append(record)
    lines_of: dict[str, list[int]] = {}
    for line, digest in hashes.items():
        lines_of.setdefault(digest, []).append(line)
    decisions = Decisions(path, negatives=list(negatives.values()), unreadable=unreadable, stacks=stacks,
                          records=len(records), repaired=repaired)
    moved = []
    for (line, digest), stack in stacks.items():
        if not stack:
            continue
        if hashes.get(line) == digest:
            decisions.current[line] = stack[-1]
        else:
            moved.append((line, digest, stack[-1]))
    direct = set(decisions.current)
    for line, digest, record in moved:  # the same content elsewhere: the decision follows it
        places = lines_of.get(digest, [])
        free = [n for n in places if n not in decisions.current]
        if free:
            target = min(free, key=lambda n: abs(n - line))
            decisions.current[target] = {**record, "line": target, "moved_from": line}
            decisions.moved += 1
        elif not places or not direct.intersection(places):
            decisions.stale.append(Stale(line, digest, record["action"]))
        # else: a newer decision made at the example's new line supersedes it
    decisions.stale.sort(key=lambda s: s.line)
    current = decisions.current
    decisions.last_line = max(current, key=lambda n: current[n]["_seq"]) if current else None
    return decisions


def decide(path: Path, line: int, digest: str, action: str, *, messages: list | None = None,
           note: str = "") -> dict:
    if action not in ACTIONS and action != "undo":
        raise ValueError(f"unknown action {action!r}")
    record: dict[str, Any] = {"action": action, "line": line, "hash": digest}
    if action == "edit":
        record["messages"] = messages
    if note:
        record["note"] = note
    return append_record(path, record)


def add_negative(path: Path, digest: str, source: str, messages: list[dict], rejected: str, note: str = "") -> dict:
    """A wrong answer from an evaluation: `messages` ends with the reference answer, `rejected` is the wrong one."""
    record = {"action": "negative", "line": 0, "hash": digest, "source": source, "messages": messages,
              "rejected": rejected}
    if note:
        record["note"] = note
    return append_record(path, record)
