"""Writes that never follow a symlink. Every file ftorch writes in a run folder, a cache or beside the user's data
goes through here: an existing file is opened with O_NOFOLLOW (a symlink planted where ftorch expects its own
file is refused, naming the path), and a replacement is written to a temporary file created exclusively
(O_EXCL, by `tempfile.mkstemp`) in the target's own folder, then renamed over the target: a rename replaces a
symlink, it never writes through it. Non-regular files (FIFOs, devices) are refused the same way.

In a shared runs folder this is what stops anyone who can write there from making another user's ftorch
overwrite that user's files."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import EXIT_USER, FtorchError, Problem

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafePath(FtorchError):
    """A symlink or a non-regular file where ftorch expects its own file: refused, exit 2."""

    exit_code = EXIT_USER
    title = "unsafe path"


def _refused(path: Path, what: str, own: str = "regular file") -> UnsafePath:
    return UnsafePath(Problem(str(path), f"{what} where ftorch expects its own {own}; refusing to write "
                                         "through it", "remove it (or move it away), then run the command again"))


def check_regular(path: Path) -> None:
    """Refuse `path` if it exists and is a symlink or not a regular file (a FIFO, a device, a folder)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise _refused(path, "a symlink")
    if not stat.S_ISREG(info.st_mode):
        raise _refused(path, "not a regular file")


def open_fd(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open with O_NOFOLLOW: a symlink at `path` is an UnsafePath error, as is a non-regular file."""
    check_regular(path)
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refused(path, "a symlink") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refused(path, "not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: Path, *, binary: bool = False, buffering: int = -1) -> IO[Any]:
    """A file opened for appending (created if absent), never through a symlink."""
    fd = open_fd(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    if binary:
        return os.fdopen(fd, "ab", buffering=buffering)
    return os.fdopen(fd, "a", encoding="utf-8", buffering=buffering)


@contextmanager
def atomic_writer(path: Path, *, binary: bool = False, mode: int = 0o644) -> Iterator[IO[Any]]:
    """Write `path` whole or not at all: a temporary file made exclusively beside it, fsynced, then renamed over
    it (replacing a symlink, never following one). On any error the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        raise _refused(path, "a folder")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        handle: IO[Any] = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    """`path.write_text`, atomically and without following a symlink."""
    with atomic_writer(path, mode=mode) as handle:
        handle.write(text)


def write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """`path.write_bytes`, atomically and without following a symlink."""
    with atomic_writer(path, binary=True, mode=mode) as handle:
        handle.write(data)


def copy_file(source: Path, path: Path) -> None:
    """`shutil.copyfile(source, path)`, streamed, atomically and without following a symlink at `path`."""
    with source.open("rb") as reader, atomic_writer(path, binary=True) as handle:
        shutil.copyfileobj(reader, handle)


def ensure_dir(path: Path) -> Path:
    """`path` as a folder of ftorch's own (made if absent, parents too): a symlink or a file planted at its name
    is refused, so nothing written inside it lands in someone else's folder."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        pass  # a file or a dangling symlink at its name: refused just below
    check_folder(path)
    return path


def check_folder(path: Path) -> None:
    """Refuse `path` if it exists and is a symlink (even to a folder) or not a folder."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise _refused(path, "a symlink", "folder")
    if not stat.S_ISDIR(info.st_mode):
        raise _refused(path, "not a folder", "folder")


def fresh_dir(path: Path) -> Path:
    """An empty folder at `path`, made exclusively here: whatever was there goes first (a symlink is unlinked,
    never followed), so a library that writes into the folder (save_pretrained, torch.save) writes only here."""
    remove(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir()  # not exist_ok: one planted in between is an error, never followed
    return path


def remove(path: Path) -> None:
    """Whatever is at `path` goes: a symlink or a file is unlinked (a symlink's target is left alone), a folder is
    removed with its content (rmtree unlinks the symlinks inside, never follows them)."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def save_figure(fig: Any, path: Path) -> Path:
    """A matplotlib figure written atomically to `path` (its format from the suffix), never through a symlink."""
    with atomic_writer(path, binary=True) as handle:
        fig.savefig(handle, format=path.suffix.lstrip(".") or "png")
    return path
