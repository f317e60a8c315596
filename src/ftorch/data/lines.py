"""Reading a user's data file with bounded memory. Every JSONL/CSV input path (`data check`, train's data check,
`data convert` and `split`, `review`, the manifest's hash) opens the file and reads its lines here, so that one
hostile file can neither take the machine's memory nor hang the command:

- only a regular file is read (a symlink to one is fine: it is the user's data): a FIFO, a device (/dev/zero,
  /dev/urandom), a socket or a folder is refused saying what it is, and opening never blocks;
- a line longer than the limit (data.max_line_bytes, 2 MiB by default) is never held in memory: at most limit+1
  bytes of it are read, the rest is skipped in chunks, and the caller gets its size instead, before any JSON
  parse or tokenisation. 2 MiB is over 500,000 tokens of English, past any model's context, and the hostile
  worst case under it (2 MiB of random CJK, tokenised by tiktoken) peaks near 350 MB; at 4 MiB it was 600 MB;
- JSON nested deeper than MAX_DEPTH levels is refused before the parser recurses into it (json.loads would raise
  RecursionError), by `parse_json`, the one parse of a JSONL line."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import DataError, Problem

DEFAULT_MAX_LINE_BYTES = 2 << 20
MAX_DEPTH = 64
BLOCK_BYTES = 1 << 20
_CHUNK = 1 << 20
_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
# a JSON string (skipped whole, escapes included; an unterminated one runs to the end) or one bracket
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[][{}]', re.DOTALL)


class BadJson(ValueError):
    """A JSON text that does not parse or nests too deep: `code` is the data check's issue code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Skipped:
    """A line over the limit, skipped unread: its size in bytes, its line end included."""

    size: int

    def message(self, limit: int) -> str:
        return (f"line of {self.size:,} bytes, over the limit of {limit:,} bytes per line (data.max_line_bytes): "
                "not read")


def file_problem(path: Path, where: str | None = None) -> Problem | None:
    """Why `path` cannot be read as a data file (missing, a folder, a FIFO, a device), or None. A symlink is
    followed: what counts is what it points to."""
    where = where or str(path)
    subject = "" if where == str(path) else f"{path} "  # the path is said once: as `where`, or here
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return Problem(where, f"file not found: {path}" if subject else "file not found")
    except OSError as exc:
        return Problem(where, f"{subject}cannot be read: {exc.strerror or exc}")
    if stat.S_ISDIR(mode):
        return Problem(where, f"{subject}is a directory, not a data file", "give the path of a JSONL file inside it")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "a special file")
        what = f"links to {os.path.realpath(path)}, {kind}" if os.path.islink(path) else f"is {kind}"
        return Problem(where, f"{subject}{what}, not a regular file",
                       "give the path of a regular data file (a copy on disk, not a pipe or a device)")
    return None


def check_file(path: Path, where: str | None = None) -> Path:
    """`path`, or a DataError saying why it cannot be read as a data file."""
    problem = file_problem(path, where)
    if problem is not None:
        raise DataError(problem)
    return path


def open_data(path: Path, where: str | None = None, buffering: int = _CHUNK) -> IO[bytes]:
    """The data file opened for reading in binary. Opened non-blocking (a FIFO swapped in after the check cannot
    hang the open), checked again on the open file, then switched back to blocking reads. The 1 MiB buffer is for
    streaming (skipping a long line goes 5x faster than with 8 KiB); a reader of one line may want less."""
    check_file(path, where)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise DataError(Problem(where or str(path), f"cannot be read: {exc.strerror or exc}")) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DataError(Problem(where or str(path), "is not a regular file"))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb", buffering=buffering)


def read_lines(handle: IO[bytes], limit: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[bytes | Skipped]:
    """Every line of `handle` (its line end kept), or a `Skipped` for a line longer than `limit` bytes (its line
    end aside), of which at most limit+1 bytes were ever in memory."""
    readline = handle.readline
    while raw := readline(limit + 1):
        if len(raw) > limit and not raw.endswith(b"\n"):
            yield Skipped(len(raw) + _skip_line(readline))
        else:
            yield raw


def _skip_line(readline) -> int:
    skipped = 0
    while piece := readline(_CHUNK):
        skipped += len(piece)
        if piece.endswith(b"\n"):
            break
    return skipped


def read_blocks(handle: IO[bytes], limit: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[list[bytes] | Skipped]:
    """The lines of `read_lines` in blocks of about BLOCK_BYTES (for the fast path); a line over the limit comes
    alone, as its `Skipped`."""
    block: list[bytes] = []
    size = 0
    for raw in read_lines(handle, limit):
        if isinstance(raw, Skipped):
            if block:
                yield block
                block, size = [], 0
            yield raw
            continue
        block.append(raw)
        size += len(raw)
        if size >= BLOCK_BYTES:
            yield block
            block, size = [], 0
    if block:
        yield block


def too_deep(text: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """Whether a JSON text nests more than `limit` arrays/objects deep (brackets inside strings do not count). A
    text with no more than `limit` opening brackets in all, nearly every line, is answered without a scan."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for match in _TOKEN.finditer(data):
        char = data[match.start()]
        if char in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif char in b"]}":
            depth -= 1
    return False


def parse_json(text: bytes | str) -> Any:
    """One JSON value (a JSONL line, a tool call's arguments), at most MAX_DEPTH levels deep. Raises BadJson
    ('too_deep' or 'invalid_json'); bytes that are not UTF-8 raise UnicodeDecodeError (both are ValueErrors)."""
    if too_deep(text):
        raise BadJson("too_deep", f"JSON nested more than {MAX_DEPTH} levels deep; not read")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadJson("invalid_json", f"invalid JSON: {exc.msg} (column {exc.colno})") from None
