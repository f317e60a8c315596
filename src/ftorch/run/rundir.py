"""A run directory: its layout, an atomic run.json that always tells the truth, secret redaction."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import platform
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import ConfigError, Problem
from ..safe_io import atomic_writer, check_folder, check_regular, open_append, open_fd, write_text
from ..secrets import REDACTED, is_secret, redact, redact_hydra_dir, redact_override, scrub, scrub_text_tree
from ..threads import current as thread_policy
from .record import WRITTEN_STATUSES, RunRecord

if TYPE_CHECKING:
    from ..config.schema import RunConfig

__all__ = ["REDACTED", "RunDir", "RunRecord", "is_secret", "redact", "redact_hydra_dir", "redact_override",
           "write_json_atomic"]

LOCK_NAME = "run.lock"
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)  # a run folder ftorch cannot write in
# the folders ftorch (or a library it drives) writes inside a run directory: never through a symlink
OWN_FOLDERS = ("adapter", "checkpoints", "data", "eval", "export", ".hydra", "unsloth", "merged", "gguf", "tensorboard",
               "axolotl_data")
APPENDED = ("train.log", "metrics.jsonl", "events.jsonl")  # files appended to (safe_io.open_append refuses a symlink)
_HELD: dict[Path, int] = {}  # run dir -> this process's lock descriptor
KEY_PACKAGES = ("ftorch", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "hydra-core", "openai",
                "unsloth", "unsloth_zoo", "optuna")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temp file made exclusively beside `path`, fsync, then rename over it: never a torn file, and a
    symlink planted at `path` is replaced, never written through (safe_io)."""
    with atomic_writer(path) as handle:
        json.dump(scrub_text_tree(data), handle, indent=2, default=str)
        handle.write("\n")


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


@dataclass
class RunDir:
    """One run's folder. All writes of run.json go through `update`, atomically. `writes=False` is how a
    process that must leave the folder alone sees it (ranks other than 0 of a distributed run, which train
    the same code): update() and append_log() write nothing."""

    path: Path
    writes: bool = True

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    @property
    def adapter(self) -> Path:
        return self.path / "adapter"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def manifest(self) -> Path:
        return self.path / "data" / "manifest.json"

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_NAME

    def record(self) -> RunRecord:
        """run.json, typed and validated; a torn, foreign or hand-broken file is a ConfigError naming it and
        the key (never a traceback)."""
        return RunRecord.load(self.run_json)

    def read(self) -> dict[str, Any]:
        """run.json as a plain dict, validated like `record()`. For callers not yet on the typed record
        (backends/); new code uses `record()`."""
        return self.record().to_json()

    def update(self, **fields: Any) -> RunRecord:
        """Set `fields` in run.json (validated against RunRecord), atomically; unknown keys are kept. A RunDir
        made with writes=False (the other ranks of a distributed run) validates and writes nothing."""
        record = self.record() if self.run_json.exists() else None
        data = {**(record.to_json() if record else {}), **fields}
        if data.get("status") not in WRITTEN_STATUSES:
            raise ValueError(f"bad run status {data.get('status')!r}")
        merged = RunRecord.from_dict(data, self.run_json)
        if self.writes:
            write_json_atomic(self.run_json, merged.to_json())
        return merged

    def start(self, *, recipe: str | None, provider: str, project_root: Path, overrides: list[str]) -> None:
        if self.run_json.exists():
            raise FileExistsError(f"{self.path} already holds a run; ftorch never overwrites one")
        self.update(
            status="running", recipe=recipe, provider=provider, started=now(), ended=None,
            overrides=[redact_override(o) for o in overrides], git_commit=git_commit(project_root),
            host=socket.gethostname(), platform=platform.platform(), python=platform.python_version(),
            packages=package_versions(), threads=thread_policy().to_json(), metrics={}, error=None,
        )

    def finish(self, status: str, *, error: str | None = None, **fields: Any) -> RunRecord:
        return self.update(status=status, ended=now(), error=error, **fields)

    def append_log(self, line: str) -> None:
        if not self.writes:
            return
        with open_append(self.log) as handle:  # a symlink planted at train.log is refused, never followed
            handle.write(f"{now()} {scrub(line)}\n")

    # One writer per run: the process that owns it holds an flock on RUN/run.lock. The OS drops the lock when
    # that process dies, however it dies, so a free lock beside status 'running' means the run died.

    def acquire(self) -> int | None:
        """Take the run's lock: its file descriptor (keep it open while writing), or None if another holds it."""
        fd = open_fd(self.lock_file, os.O_RDWR | os.O_CREAT)  # a planted symlink: UnsafePath, never written through
        # a reader asking who holds the lock (holder()) holds a shared lock for an instant: try a few times before
        # concluding that another process owns the run
        for attempt in range(10):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 9:
                    os.close(fd)
                    return None
                time.sleep(0.03)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        return fd

    def holder(self) -> dict | None:
        """{"pid", "host"} of the process holding the lock, or None when it is free (or there is no lock file)."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a symlink: no lock
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pid, _, host = os.pread(fd, 512, 0).decode(errors="replace").strip().partition(" ")
                return {"pid": int(pid) if pid.isdigit() else None, "host": host or "?"}
            return None
        finally:
            os.close(fd)

    @contextmanager
    def owned(self, action: str, *, read_only_hint: str | None = None) -> Iterator[int]:
        """Hold the run's lock for `action` (train, resume, eval, cancel), or refuse naming who holds it. A run
        folder that cannot be written (a read-only filesystem, no permission) is refused too (RunNotWritable,
        exit 2), with `read_only_hint` (how to do `action` without writing there) or a general one."""
        try:
            fd = self.acquire()
        except OSError as exc:
            if exc.errno not in NOT_WRITABLE:
                raise
            raise self._not_writable(action, f"{exc.strerror}: {self.lock_file.name}", read_only_hint) from None
        if fd is None:
            raise self._in_use(action)
        if not os.access(self.path, os.W_OK):  # run.lock opened, yet nothing else could be written beside it
            os.close(fd)
            raise self._not_writable(action, "no write permission", read_only_hint)
        _HELD[self.path.resolve()] = fd
        try:
            self.check_layout()
            yield fd
        finally:
            _HELD.pop(self.path.resolve(), None)
            os.close(fd)

    @contextmanager
    def read_only(self, action: str) -> Iterator[None]:
        """For `action` reading a finished run without writing anything in it (eval or export with --out, which
        works on a read-only run): no lock is taken (that would mean writing run.lock), but a run another process
        owns (training, resuming) is refused as by owned()."""
        if self.holder() is not None:
            raise self._in_use(action)
        yield

    def _not_writable(self, action: str, why: str, hint: str | None) -> RunNotWritable:
        return RunNotWritable(Problem(str(self.path), f"cannot {action}: this run's folder cannot be written ({why}),"
                                      " and ftorch records what it does in it", hint or "make the folder writable "
                                      "(or copy the run somewhere writable), then run the command again"))

    def _in_use(self, action: str) -> ConfigError:
        who = self.holder() or {}
        return ConfigError(Problem(str(self.path), f"cannot {action}: this run is in use by pid {who.get('pid')} "
                                   f"on {who.get('host')} (it holds {self.lock_file.name})",
                                   "wait for that process to finish, or stop it (Ctrl-C or kill PID) first"))

    def check_layout(self) -> None:
        """Refuse a symlink planted at one of the run's own folders or appended files (UnsafePath, exit 2), before
        any work: ftorch and the libraries it drives (the Trainer's checkpoints, save_pretrained) write there, and
        must not write elsewhere."""
        for name in OWN_FOLDERS:
            check_folder(self.path / name)
        for name in APPENDED:  # refused now, before any work, rather than at the first line written
            check_regular(self.path / name)

    def held_fds(self) -> tuple[int, ...]:
        """The lock's descriptor if this process owns the run: pass it to a child (Popen pass_fds) that writes
        the run, and the lock stays held while either lives."""
        fd = _HELD.get(self.path.resolve())
        return (fd,) if fd is not None else ()

    def alive(self, record: RunRecord) -> bool:
        """Whether a process still owns this run: its lock is held (runs from before the lock: pid on this host)."""
        if self.lock_file.exists():
            return self.holder() is not None
        return pid_alive(record)

    def observed(self, record: RunRecord | None = None) -> RunRecord:
        """The record as a reader should report it: 'running' with nobody holding the lock is 'died' (with the
        last step and checkpoint, and the command that continues it); likewise an evaluation or an export left
        'running' (an export killed outright stays so in run.json until the next export clears it)."""
        record = record if record is not None else self.record()
        if _running(record) and not self.alive(record):
            try:  # the owner may have finished between our read and the lock test: trust only a second read
                record = self.record()
            except (OSError, ValueError):
                pass
        if not _running(record) or self.alive(record):
            return record
        if record.status == "running":
            step = record.last_checkpoint_step
            return record.model_copy(update={
                "status": "died", "error": f"the process died (last checkpoint: step {step or 'none'}); "
                                           f"continue with: ftorch resume {self.path}"})
        update: dict[str, Any] = {}
        if record.evaluation is not None and record.evaluation.status == "running":  # the run succeeded
            update["evaluation"] = record.evaluation.model_copy(update={
                "status": "died", "error": f"the evaluation died; run it again with: ftorch eval {self.path}"})
        if any(_export_running(e) for e in record.exports):
            update["exports"] = [{**e, "status": "died", "error": "the export was killed before it finished; the "
                                  f"next export removes its unfinished folder: ftorch export {self.path} --to "
                                  f"{e.get('kind') or 'merged'}"} if _export_running(e) else e
                                 for e in record.exports]
        return record.model_copy(update=update)

    def write_config(self, resolved: dict, raw: dict) -> None:
        write_text(self.config_file, yaml.safe_dump(redact(resolved, raw), sort_keys=False))

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    def config_data(self) -> dict[str, Any]:
        """The run's config.yaml as written (secrets redacted), for a caller that merges into it before
        validating (eval overrides). A missing, unreadable or malformed file is a ConfigError naming it."""
        file = self.config_file
        if not file.is_file():
            raise ConfigError(Problem(str(file), "not a run directory (no config.yaml)"))
        try:
            data = yaml.safe_load(file.read_text())
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ConfigError(Problem(str(file), f"cannot read this run's config ({type(exc).__name__})")) from None
        if not isinstance(data, dict):
            raise ConfigError(Problem(str(file), "cannot read this run's config (not a mapping)"))
        from ..config.schema import recorded_by_older_version

        return recorded_by_older_version(data)

    def config(self) -> RunConfig:
        """The finished run's RunConfig, from its config.yaml: the one reader (resume, eval, export, cancel, the
        training children, review, sweep reports). Any failure is a ConfigError naming the file."""
        from pydantic import ValidationError

        from ..config.schema import RunConfig

        data = self.config_data()
        try:
            return RunConfig.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(Problem(str(self.config_file), f"this run's config does not validate: {where}: "
                                      f"{first['msg']}")) from None


class RunNotWritable(ConfigError):
    """A run folder ftorch cannot write in (a read-only filesystem, no permission), for a command that must."""

    title = "run folder not writable"


def _running(record: RunRecord) -> bool:
    return (record.status == "running" or (record.evaluation is not None and record.evaluation.status == "running")
            or any(_export_running(e) for e in record.exports))


def _export_running(entry: dict[str, Any]) -> bool:
    return isinstance(entry, dict) and entry.get("status") == "running"


def pid_alive(record: RunRecord) -> bool:
    """Whether the process a run.json names (pid on this host) still exists: the owner test for runs from
    before the lock file."""
    if not record.pid or record.host != socket.gethostname():
        return False
    try:
        os.kill(record.pid, 0)
    except OSError:
        return False
    return True
