"""What is in ftorch's cache ($FTORCH_CACHE): each kind of entry it keeps, with its entry count and size, and
clearing one kind or all (`ftorch cache ls|clear`). The OpenAI upload record (openai_files.json) is not a cache
(it remembers what was uploaded, so nothing is uploaded twice) and is neither listed nor cleared."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cache import cache_root


@dataclass(frozen=True)
class Kind:
    """One kind of cache entry: `entries(root)` lists its entries (files or folders) under the cache root;
    `store` is true for a diskcache store (counted and cleared through diskcache, safe beside a running
    evaluation)."""

    name: str
    what: str
    entries: Callable[[Path], list[Path]]
    store: bool = False


@dataclass(frozen=True)
class Usage:
    name: str
    what: str
    entries: int
    bytes: int
    path: Path


def _children(folder: str, pattern: str = "*") -> Callable[[Path], list[Path]]:
    return lambda root: sorted((root / folder).glob(pattern)) if (root / folder).is_dir() else []


def _store(folder: str) -> Callable[[Path], list[Path]]:
    return lambda root: [root / folder] if (root / folder).is_dir() else []


KINDS = (
    Kind("answers", "generated evaluation answers (eval.answer_cache)", _store("answers"), store=True),
    Kind("judge", "LLM judge replies", _children("judge", "*/*.json")),
    Kind("tiny", "tiny test models (model.tiny)", _children("models", "tiny-llama-*")),
    Kind("gguf", "GGUF models converted for transformers", _children("models", "gguf-*")),
    Kind("tokenized", "tokenized training data", _children("preprocessed")),
    Kind("tiktoken", "tiktoken encodings", _children("tiktoken")),
    Kind("file-hashes", "content hashes of model files (answer cache keys)", _store("file-hashes"), store=True),
)
NAMES = tuple(kind.name for kind in KINDS)


def kind(name: str) -> Kind:
    from .errors import ConfigError, Problem, did_you_mean

    for candidate in KINDS:
        if candidate.name == name:
            return candidate
    raise ConfigError(Problem(f"command line: {name}", f"no cache named '{name}'",
                              did_you_mean(name, list(NAMES)) or f"caches: {', '.join(NAMES)}"))


def usage(which: Kind, root: Path | None = None) -> Usage:
    root = root or cache_root()
    paths = which.entries(root)
    if which.store:
        count = sum(_store_count(p) for p in paths)
    else:
        count = len(paths)
    return Usage(which.name, which.what, count, sum(_size(p) for p in paths), root)


def inventory(root: Path | None = None) -> list[Usage]:
    return [usage(k, root) for k in KINDS]


def clear(which: Kind, root: Path | None = None) -> Usage:
    """Remove every entry of one kind; returns what there was. A symlink inside is unlinked, never followed."""
    from .safe_io import remove

    root = root or cache_root()
    before = usage(which, root)
    for path in which.entries(root):
        if which.store:
            _store_clear(path)
        else:
            remove(path)
    return before


def _open(path: Path):
    import diskcache

    from .safe_io import check_folder, check_regular

    check_folder(path)
    check_regular(path / "cache.db")
    return diskcache.Cache(str(path))  # its own saved settings (size limit, eviction) are kept


def _store_count(path: Path) -> int:
    store = _open(path)
    try:
        return len(store)
    finally:
        store.close()


def _store_clear(path: Path) -> None:
    store = _open(path)
    try:
        store.clear()
    finally:
        store.close()


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size if path.exists() or path.is_symlink() else 0
    total = 0
    for folder, _, files in os.walk(path):  # os.walk does not follow symlinked folders
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
