"""Training in a child process, written once for every backend that does it (peft under torchrun, unsloth,
axolotl): how the child starts, how it is stopped, and how it says how it ended.

Start: in its own process group (a new session), stdin closed, holding the run's lock (`run.held_fds()`), so
a child orphaned by a killed parent still owns the run and no resume can start beside it. Its output goes
straight to the console, or, with `pump`, through the parent (which echoes it, logs it, reads metrics from it).

Stop: on Ctrl-C or SIGTERM in the parent (KeyboardInterrupt or RunInterrupted), the child's whole group gets
STOP_POLICY: SIGINT, then SIGTERM, then SIGKILL, each after the previous one's grace ran out; a second Ctrl-C
skips to the next signal. Whatever the group leaves behind (workers of a launcher that exited first) is then
killed, and the interruption is re-raised for the run to be marked interrupted.

Result: the child writes RUN/child_result.json atomically before it exits (rank 0 alone under torchrun or
accelerate), one JSON object:
    {"status": "succeeded", "metrics": {...}, "artifacts": {...}, "extra": {...}}
    {"status": "failed", "error": {"type": "ConfigError", "problems": [{"where", "message", "hint"}], "hint"}}
    {"status": "interrupted"}
and exits 0, the error's exit code, or 130. `outcome()` turns that back into a Result, the same FtorchError
or a KeyboardInterrupt; a child that died without a record is a BackendError naming its exit code.
(axolotl/child.py writes the same record without importing ftorch: it runs in Axolotl's environment.)
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, ConfigError, DataError, FtorchError, MissingExtra, Problem
from .base import Result

if TYPE_CHECKING:
    from ..run.rundir import RunDir

RESULT = "child_result.json"  # in the run directory
# signal sent to the child's process group, seconds it gets to exit before the next one
STOP_POLICY: tuple[tuple[signal.Signals, float], ...] = ((signal.SIGINT, 30.0), (signal.SIGTERM, 15.0),
                                                         (signal.SIGKILL, 5.0))
INTERRUPTED_CODES = (130, -signal.SIGINT, -signal.SIGTERM)
ERRORS: dict[str, type[FtorchError]] = {cls.__name__: cls for cls in (ConfigError, DataError, BackendError,
                                                                       MissingExtra)}


@dataclass
class Ended:
    """How a child ended: its exit code and the record it left (None: it died before writing one)."""

    code: int
    record: dict[str, Any] | None


def result_path(run_path: Path) -> Path:
    return Path(run_path) / RESULT


def supervise(command: list[str], run: RunDir, *, what: str, env: dict[str, str] | None = None,
              cwd: Path | None = None, pump: Callable[[bytes], None] | None = None) -> Ended:
    """Run `command` to its end under the policy above and return how it ended (the record is read and removed).
    `what` names the child in train.log ("axolotl", "unsloth child", "torchrun"). With `pump`, the child's stdout
    and stderr come through a pipe and every chunk is handed to pump (b"" once at the end)."""
    path = result_path(run.path)
    path.unlink(missing_ok=True)  # a record from an earlier attempt must not pass for this one's
    piped = pump is not None
    child = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE if piped else None, stderr=subprocess.STDOUT if piped else None,
                             start_new_session=True, pass_fds=run.held_fds())
    run.append_log(f"{what} started (pid {child.pid})")
    try:
        if pump is not None and child.stdout is not None:
            fd = child.stdout.fileno()
            while chunk := os.read(fd, 65536):
                pump(chunk)
            pump(b"")
        code = child.wait()
    except BaseException:  # Ctrl-C, or SIGTERM turned into RunInterrupted: stop it, then let the run be marked
        stop(child, run, what, pump)
        path.unlink(missing_ok=True)  # its 'interrupted' record: the parent's own interruption says it
        raise
    finally:
        if child.stdout is not None:
            child.stdout.close()
    return Ended(code, _take(path))


def stop(child: subprocess.Popen, run: RunDir, what: str, pump: Callable[[bytes], None] | None = None) -> int:
    """Stop the child's process group with STOP_POLICY, still passing its output to `pump` meanwhile; return
    its exit code."""
    fd = child.stdout.fileno() if pump is not None and child.stdout is not None else None
    feed = pump if pump is not None else (lambda chunk: None)
    for sig, grace in STOP_POLICY:
        if child.poll() is not None:
            break
        run.append_log(f"stopping {what} (pid {child.pid}) with {sig.name}")
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        try:
            while child.poll() is None and time.monotonic() < deadline:
                if fd is None:
                    time.sleep(0.05)
                elif select.select([fd], [], [], 0.2)[0] and (chunk := os.read(fd, 65536)):
                    feed(chunk)
        except KeyboardInterrupt:  # a second Ctrl-C: go straight to the next signal
            continue
    if fd is not None:
        _drain(fd, feed)
    code = child.wait()
    run.append_log(f"{what} exited with {code}")
    try:  # workers (torchrun's, accelerate's) left behind by a launcher that exited first
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return code


def _drain(fd: int, pump: Callable[[bytes], None]) -> None:
    """What the child wrote before it exited (the pipe stays readable until every writer closed it)."""
    try:
        while select.select([fd], [], [], 0)[0] and (chunk := os.read(fd, 65536)):
            pump(chunk)
    except OSError:
        pass
    pump(b"")


def _take(path: Path) -> dict[str, Any] | None:
    import json

    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    path.unlink(missing_ok=True)
    return record if isinstance(record, dict) else None


def outcome(ended: Ended, *, where: str, log: Path, tail: list[str] | None = None) -> Result:
    """The child's Result when it succeeded; else raise what the child raised (the same FtorchError type,
    KeyboardInterrupt when it was interrupted, BackendError when it died without saying why)."""
    raise_failure(ended, where=where, log=log, tail=tail)
    record = ended.record or {}
    return Result(status="succeeded", metrics=record.get("metrics", {}), artifacts=record.get("artifacts", {}),
                  extra=record.get("extra", {}))


def raise_failure(ended: Ended, *, where: str, log: Path, tail: list[str] | None = None) -> None:
    """Nothing when the child succeeded (exit 0 and a 'succeeded' record); else raise as outcome() says: a
    BackendError under `where` (e.g. "provider=unsloth") when the child left no error of its own. `tail`, the
    child's last lines when the parent kept them, is quoted in a BackendError (a config or data error is
    precise enough without)."""
    record = ended.record
    status = (record or {}).get("status")
    if ended.code == 0 and status == "succeeded":
        return
    if status == "interrupted" or (record is None and ended.code in INTERRUPTED_CODES):
        raise KeyboardInterrupt()
    lines = "; its last lines:\n" + "\n".join(f"    | {line}" for line in tail) if tail else ""
    error = (record or {}).get("error")
    if error is None:
        raise BackendError(Problem(where, f"the training process exited with code {ended.code} without a result"
                                   + lines, f"see {log} and the output above"))
    problems = [Problem(p["where"], p["message"], p.get("hint")) for p in error["problems"]]
    kind = ERRORS.get(error["type"], BackendError)
    if kind is BackendError and lines and problems:
        problems[0] = Problem(problems[0].where, problems[0].message + lines, problems[0].hint)
    raise kind(problems, hint=error.get("hint") or (f"full output: {log}" if kind is BackendError else None))


# --- the child's side ---------------------------------------------------------------------------------------

def report(run_path: Path, status: str, **fields: Any) -> None:
    """Write this child's record (see the module's docstring) atomically: the parent never reads half of one."""
    from ..run.rundir import write_json_atomic

    write_json_atomic(result_path(run_path), {"status": status, **fields})


def report_error(run_path: Path, error: FtorchError) -> None:
    report(run_path, "failed", error={"type": type(error).__name__, "hint": error.hint,
                                      "problems": [{"where": p.where, "message": p.message, "hint": p.hint}
                                                   for p in error.problems]})


def raise_interrupt_on_sigterm() -> None:
    """In the child: SIGTERM (the policy's second signal) unwinds like Ctrl-C, so the child can report it."""
    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, interrupt)
