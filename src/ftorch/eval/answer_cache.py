"""A content-keyed cache of generated answers, so an evaluation never recomputes an answer it already has: a
sweep's trials share base and arm answers, `ftorch eval RUN` reuses the tuned answers of an unchanged adapter, a
re-run reuses everything.

An answer is stored under the sha256 of: the base model's content (every file of its folder, hashed in full;
each file's digest is memoized by path, size and mtime so a 500 MB model is read once, not at every
evaluation), the adapter's content (none when the adapter is off: base, prompted and the prompting arms are
the base model), the exact prompt (the chat template's token ids), the decoding settings (max_new_tokens,
min_new_tokens, the constraint, greedy), the model's dtype and device, and the versions of what shapes
generation (torch, transformers, peft, ftorch's DECODER_VERSION). Changing any of them recomputes.

The store is diskcache (sqlite, safe across processes: parallel sweep trials share it) under
$FTORCH_CACHE/answers, capped at eval.answer_cache_mb with least-recently-used eviction. Values are JSON text
(never pickles): the reply and the seconds per answer measured when it was generated, which the report gives
as the latency of a reused answer (marked as such), never a near-zero lookup time.

The store also keeps, per prompt and decoding settings, the latest DRAFTS_KEPT replies of the same base model
under any adapter or none: a local decoder that takes drafts (eval/drafts.py) checks them as guesses for the
answers it must generate, so a sweep's later trials decode their tuned replies from the earlier trials' in fewer
steps. A draft never changes a reply, so drafts are not part of any key.

Only generators that can describe their content are cached (LocalModel, VLLMGenerator, or anything with
`cache_identity` and `cache_prompt`). Hosted models (eval/openai_chat.py) are not: the same model id can answer
differently from one day to the next and the provider's weights cannot be hashed, so a cached answer could not be
trusted to be the model's answer today."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

Messages = list[dict]
KEY_VERSION = 1  # the layout of the key itself
SKIPPED_FILES = {".complete", ".lock"}


class Describer(Protocol):
    """What a generator must tell for its answers to be cached."""

    def identity(self, systems: tuple[str, ...]) -> dict[str, Any]:
        """Everything but the prompt and the decoding settings that decides an answer, under the active system()
        blocks (outermost first; () when none is active)."""
        ...

    def prompt(self, messages: Messages) -> Any:
        """The exact prompt the model sees (e.g. the chat template's token ids), JSON-serialisable."""
        ...


# ---------------------------------------------------------------------------------------------------- content


def folder_digest(folder: Path, memo: Any = None) -> str:
    """The sha256 of a folder's content: every regular file under it (names and full contents), each file's
    digest memoized in `memo` (a mapping, e.g. the diskcache of file_hashes()) by resolved path, size and
    mtime_ns."""
    combined = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
                       and p.name not in SKIPPED_FILES):
        combined.update(path.relative_to(folder).as_posix().encode() + b"\0")
        combined.update(file_digest(path, memo).encode() + b"\n")
    return combined.hexdigest()


def file_digest(path: Path, memo: Any = None) -> str:
    info = path.stat()
    key = f"{path.resolve()}|{info.st_size}|{info.st_mtime_ns}"
    if memo is not None:
        found = memo.get(key)
        if isinstance(found, str):
            return found
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            sha.update(block)
    digest = sha.hexdigest()
    if memo is not None:
        memo[key] = digest
    return digest


def library_versions() -> dict[str, str]:
    """The versions of what shapes a local model's generation (read from the installed metadata, no import)."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__
    from .local import DECODER_VERSION

    found = {"ftorch": __version__, "decoder": str(DECODER_VERSION)}
    for name in ("torch", "transformers", "peft"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


class LocalDescriber:
    """eval/local.py's LocalModel (or eval/lazy_local.py's, without loading it), or eval/vllm_generator.py's
    VLLMGenerator (without starting its engine): the base model's folder and the adapter's, hashed; the adapter
    counts only under 'tuned' (every other system turns it off, and an outer block's 'off' holds inside). A
    generator other than the transformers decoder names its `engine`, so its answers are keyed apart."""

    def __init__(self, model, base_folder: Path, memo: Any = None):
        self.model = model
        adapter = model.adapter_path
        dtype = getattr(model, "dtype", None) or str(next(iter(model.model.parameters())).dtype)
        engine = getattr(model, "engine", None)
        self.base = {"model": folder_digest(base_folder, memo), "dtype": dtype, "device": str(model.device),
                     "versions": library_versions(), **({"engine": engine} if engine else {})}
        self.adapter = folder_digest(Path(adapter), memo) if adapter is not None and model.has_adapter else None
        self.merged = bool(getattr(model, "merge_tuned", False))  # 'tuned' from weights with the adapter merged

    def identity(self, systems: tuple[str, ...]) -> dict[str, Any]:
        adapter_on = self.adapter is not None and all(name == "tuned" for name in systems)
        merged = {"merged": True} if adapter_on and systems and self.merged else {}  # merged rounds differently
        return {**self.base, "adapter": self.adapter if adapter_on else None, **merged}

    def prompt(self, messages: Messages) -> Any:
        from .local import chat_ids

        return chat_ids(self.model.tokenizer, messages)


class SelfDescribed:
    """A generator that describes itself (`cache_identity(system)`, `cache_prompt(messages)`)."""

    def __init__(self, generator):
        self.generator = generator

    def identity(self, systems: tuple[str, ...]) -> dict[str, Any]:
        return dict(self.generator.cache_identity(systems[-1] if systems else None))

    def prompt(self, messages: Messages) -> Any:
        return self.generator.cache_prompt(messages)


def describer_for(generator, memo: Any = None) -> Describer | None:
    """How to key `generator`'s answers, or None when they cannot be keyed by content (then nothing is cached)."""
    if getattr(generator, "keyed_by_files", False):  # LocalModel, LazyLocalModel, VLLMGenerator
        folder = _model_folder(generator.base_path)
        return LocalDescriber(generator, folder, memo) if folder is not None else None
    if hasattr(generator, "cache_identity") and hasattr(generator, "cache_prompt"):
        return SelfDescribed(generator)
    return None


def _model_folder(name: str | None) -> Path | None:
    """The folder holding a model's files: the path itself, or a hub id's snapshot in the local hub cache (no
    network); None when there are no files to hash (a model loaded some other way)."""
    if not name:
        return None
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not a hub id, or not downloaded: nothing to hash, so nothing is cached
        return None


# ------------------------------------------------------------------------------------------------------ store


def answers_folder() -> Path:
    from ..cache import cache_root

    return cache_root() / "answers"


def hashes_folder() -> Path:
    from ..cache import cache_root

    return cache_root() / "file-hashes"


def open_store(folder: Path, size_limit: int):
    """A diskcache Cache at `folder` with least-recently-used eviction above `size_limit` bytes. Its folder and
    database are refused when a symlink stands at their name (sqlite would write through it)."""
    import diskcache

    from ..safe_io import check_regular, ensure_dir

    ensure_dir(folder)
    for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
        check_regular(folder / name)
    return diskcache.Cache(str(folder), size_limit=size_limit, eviction_policy="least-recently-used",
                           disk_min_file_size=1 << 24)  # values stay inside sqlite: no loose files to follow


@dataclass
class Reuse:
    """Answers one system got: generated now, or reused from the cache."""

    generated: int = 0
    reused: int = 0


@dataclass
class LastCall:
    """The latest generate call: how many answers were reused, and the seconds of all its answers (reused ones
    at the seconds recorded when they were generated, fresh ones as measured now)."""

    answers: int = 0
    reused: int = 0
    seconds: float = 0.0


DRAFTS_KEPT = 3  # earlier replies kept per prompt as drafts for the next model that answers it (eval/drafts.py)
HELD_MAX_BYTES = 1 << 30
HELD: dict[str, tuple[str, Any]] = {}
"""CachedGenerator.hold's results in this process: kind -> (key, the latest result)."""


@dataclass
class CachedGenerator:
    """A Generator (eval/suite.py) whose answers come from the store when their key is there. Everything else
    (prompt_tokens, context_length, constraint_kinds, ...) is the wrapped generator's."""

    inner: Any
    describer: Describer
    store: Any
    folder: Path
    usage: dict[str, Reuse] = field(default_factory=dict)
    last_call: LastCall | None = None
    systems: list[str] = field(default_factory=list)  # the active system() blocks, innermost last
    measures_reused: list[str] = field(default_factory=list)  # held_out_loss, drift: stored results used

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @contextmanager
    def system(self, name: str) -> Iterator[None]:
        """Noted here, entered on the wrapped generator only around the answers it must generate (a lazily
        loaded model is not loaded to switch its adapter off for answers that are all cached)."""
        self.systems.append(name)
        try:
            yield
        finally:
            self.systems.pop()

    def prompt_tokens(self, messages: Messages) -> int:
        return self.inner.prompt_tokens(messages)

    def key(self, messages: Messages, max_new_tokens: int, extra: dict[str, Any]) -> str:
        constraint = extra.get("constraint")
        decoding = {"greedy": True, "max_new_tokens": max_new_tokens,
                    "min_new_tokens": int(extra.get("min_new_tokens", 0)),
                    "constraint": _plain(constraint) if constraint is not None else None}
        payload = {"v": KEY_VERSION, "identity": self.describer.identity(tuple(self.systems)),
                   "prompt": self.describer.prompt(messages), "decoding": decoding}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def generate(self, conversations: list[Messages], max_new_tokens: int, batch_size: int,
                 on_batch: Callable[[int], None] | None = None, starts: list | None = None,
                 **extra: Any) -> list[str]:
        """The stored replies, and the rest generated by the wrapped generator (with drafts where it takes them).
        `starts` (eval/forced.py: read off the held-out loss's pass) are handed on for the replies it generates;
        their share of that pass's seconds counts in the replies' recorded seconds. They change no reply, so no
        key."""
        keys = [self.key(m, max_new_tokens, extra) for m in conversations]
        replies: dict[int, str] = {}
        seconds = 0.0
        for i, key in enumerate(keys):
            found = _entry(self.store.get(key))
            if found is not None:
                replies[i], recorded = found
                seconds += recorded
        reused = len(replies)
        if reused and on_batch:
            on_batch(reused)
        missing = [i for i in range(len(conversations)) if i not in replies]
        if missing:
            # unconstrained replies of the same base model to the same prompt (any adapter) are the decoder's drafts;
            # a local decoder also takes the replies' known beginnings
            drafting = getattr(self.inner, "takes_drafts", False) and not extra
            draft_keys = [self._draft_key(conversations[i], max_new_tokens) for i in missing] if drafting else []
            known = [starts[i] for i in missing] if starts is not None and drafting else None
            hints: dict[str, Any] = {"drafts": [self._drafts(k) for k in draft_keys]} if drafting else {}
            if known is not None:
                hints["starts"] = known
            with ExitStack() as blocks:
                for name in self.systems:
                    blocks.enter_context(self.inner.system(name))
                started = time.perf_counter()
                fresh = self.inner.generate([conversations[i] for i in missing], max_new_tokens, batch_size,
                                            on_batch=on_batch, **extra, **hints)
                elapsed = time.perf_counter() - started + sum(s.seconds for s in known or [] if s is not None)
            seconds += elapsed
            for i, reply in zip(missing, fresh):
                replies[i] = reply
                self.store.set(keys[i], json.dumps({"reply": reply, "seconds": elapsed / len(missing)},
                                                   ensure_ascii=False))
            for key, reply in zip(draft_keys, fresh):
                self._add_draft(key, reply)
        system = self.systems[-1] if self.systems else "tuned"
        counts = self.usage.setdefault(system, Reuse())
        counts.generated += len(missing)
        counts.reused += reused
        self.last_call = LastCall(len(conversations), reused, seconds)
        return [replies[i] for i in range(len(conversations))]

    def _draft_key(self, messages: Messages, max_new_tokens: int) -> str:
        """Where the replies of the base model, under any adapter or none, to this prompt are kept as drafts."""
        payload = {"v": KEY_VERSION, "drafts": True, "identity": self.describer.identity(("base",)),
                   "prompt": self.describer.prompt(messages), "max_new_tokens": max_new_tokens}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _drafts(self, key: str) -> list[str]:
        raw = self.store.get(key)
        try:
            found = json.loads(raw) if isinstance(raw, str) else []
        except ValueError:
            found = []
        return [r for r in found if isinstance(r, str)] if isinstance(found, list) else []

    def _add_draft(self, key: str, reply: str) -> None:
        """The newest reply first; read and written without a lock (a draft lost to a parallel trial only costs
        speed)."""
        if reply:
            kept = [reply] + [r for r in self._drafts(key) if r != reply]
            self.store.set(key, json.dumps(kept[:DRAFTS_KEPT], ensure_ascii=False))

    def remember(self, kind: str, inputs: Any, compute: Callable[[], dict[str, Any]],
                 systems: tuple[str, ...] = ("base", "tuned")) -> dict[str, Any]:
        """A measurement of the model under `systems` (drift: base and tuned together; the held-out loss: one
        system at a time, so a sweep's trials share base's): `compute()`, or its stored result when the model,
        the adapter (where a system uses it), the library versions and `inputs` (JSON-serialisable: the texts
        and settings it reads) are those it was computed for. Reused measures are listed as `kind`, or
        `kind (system)` for one system's."""
        key = self._measure_key(kind, inputs, systems)
        raw = self.store.get(key)
        if isinstance(raw, str):
            try:
                found = json.loads(raw)
            except ValueError:
                found = None
            if isinstance(found, dict):
                self._reused(kind, systems)
                return found
        result = compute()
        self.store.set(key, json.dumps(result, ensure_ascii=False))
        return result

    def hold(self, kind: str, inputs: Any, compute: Callable[[], Any], size_of: Callable[[Any], int],
             systems: tuple[str, ...] = ("base",)) -> Any:
        """Like `remember`, for a result too large for the store (drift's base distributions: every position's
        log-probabilities over the vocabulary, hundreds of MB): kept in this process's memory (HELD, the latest
        result of each kind, at most HELD_MAX_BYTES), so the trials of a sweep run by Hydra's own launcher, one
        after another in one process, compute it once. Never written to disk."""
        key = self._measure_key(kind, inputs, systems)
        found = HELD.get(kind)
        if found is not None and found[0] == key:
            self._reused(kind, systems)
            return found[1]
        HELD.pop(kind, None)  # the previous model's: released before the new one is computed
        result = compute()
        if size_of(result) <= HELD_MAX_BYTES:
            HELD[kind] = (key, result)
        return result

    def _measure_key(self, kind: str, inputs: Any, systems: tuple[str, ...]) -> str:
        payload = {"v": KEY_VERSION, "measure": kind, "inputs": inputs,
                   "identity": {name: self.describer.identity((name,)) for name in systems}}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _reused(self, kind: str, systems: tuple[str, ...]) -> None:
        self.measures_reused.append(kind if len(systems) > 1 else f"{kind} ({systems[0]})")

    def report(self) -> dict[str, Any]:
        """The report's `answer_cache` section (eval/report_model.py's AnswerCacheUse)."""
        return {"folder": str(self.folder),
                "systems": {name: dataclasses.asdict(counts) for name, counts in self.usage.items()},
                "measures_reused": list(self.measures_reused)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **dataclasses.asdict(value)}
    return repr(value)


def _entry(raw: Any) -> tuple[str, float] | None:
    """(reply, seconds recorded when it was generated) from a stored value; None for anything unreadable."""
    if not isinstance(raw, str):
        return None
    try:
        data = json.loads(raw)
        return str(data["reply"]), float(data["seconds"])
    except (ValueError, KeyError, TypeError):
        return None


def wrap(generator, enabled: bool = True, size_mb: int = 1024, folder: Path | None = None):
    """`generator` with its answers cached (CachedGenerator), or unchanged when caching is off or its answers
    cannot be keyed by content."""
    import sqlite3

    if not enabled:
        return generator
    folder = folder or answers_folder()
    try:
        memo = open_store(hashes_folder(), 64 << 20)
        try:
            describer = describer_for(generator, memo)
        finally:
            memo.close()
        if describer is None:
            return generator
        store = open_store(folder, size_mb << 20)
    except (OSError, sqlite3.Error) as exc:  # a read-only or full cache folder: evaluate without the cache
        import warnings

        warnings.warn(f"the answer cache in {folder} cannot be used ({exc}); every answer is generated",
                      stacklevel=2)
        return generator
    return CachedGenerator(generator, describer, store, folder)


class CallClock:
    """Seconds per answer over one or more generate calls: measured around each call, except that a call that
    reused cached answers counts, for those, the seconds recorded when they were generated."""

    def __init__(self, generator):
        self.generator = generator
        self.seconds = 0.0
        self.answers = 0
        self.reused = 0

    def run(self, call: Callable[..., list[str]], *args: Any, charged: float = 0.0) -> list[str]:
        """`call(*args)`, timed; `charged` seconds spent on these answers before the call (the held-out loss's pass
        that began them: eval/forced.py) count with them, as a CachedGenerator counts them itself."""
        if isinstance(self.generator, CachedGenerator):
            self.generator.last_call = None
        started = time.perf_counter()
        replies = call(*args)
        elapsed = time.perf_counter() - started
        last = getattr(self.generator, "last_call", None)
        if isinstance(last, LastCall) and last.answers == len(replies):
            self.seconds += last.seconds
            self.reused += last.reused
        else:
            self.seconds += elapsed + charged
        self.answers += len(replies)
        return replies

    @property
    def per_answer(self) -> float:
        return self.seconds / max(1, self.answers)
