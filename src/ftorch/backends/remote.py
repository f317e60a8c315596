"""What the hosted-job backends (provider=openai, provider=together) share: the run's stable key that marks its
one job, following a job until it ends, and the Ctrl-C message that leaves a job running."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, Problem

if TYPE_CHECKING:
    from ..run.rundir import RunDir

MAX_POLL_FAILURES = 30  # transient errors in a row before following stops (the job is kept)


def run_key(run: RunDir) -> str:
    """A stable id for this run (its folder), carried by its job (metadata, suffix) and as the idempotency key."""
    return "ftorch-" + hashlib.sha256(str(run.path.resolve()).encode()).hexdigest()[:24]


def detached_message(job_id: str, run: RunDir) -> str:
    return (f"\nstopped following; job {job_id} keeps running. Reattach: ftorch resume {run.path}\n"
            f"cancel it: ftorch cancel {run.path}")


def follow_job(run: RunDir, job_id: str, poll: Callable[[], Any], transient: tuple[type[BaseException], ...],
               terminal: tuple[str, ...], interval: float, longest: float) -> Any:
    """Poll a hosted job until its status is in `terminal`; returns the last job object. `poll()` retrieves the
    job (and records its events, metrics, checkpoints); a `transient` error is retried up to MAX_POLL_FAILURES
    times in a row, then following stops with the job kept for `ftorch resume`. Each new status goes to run.json,
    train.log and the console; while nothing changes the wait grows 1.5x a poll, up to `longest` seconds."""
    delay, status, failures = interval, None, 0
    while True:
        try:
            job = poll()
        except transient as exc:
            failures += 1
            run.append_log(f"poll failed ({type(exc).__name__}); retrying ({failures}/{MAX_POLL_FAILURES})")
            if failures >= MAX_POLL_FAILURES:
                raise BackendError(Problem(f"job {job_id}", f"lost contact with the API: {exc}. The job is "
                                           f"kept: `ftorch resume {run.path}` reattaches")) from None
            time.sleep(delay)
            continue
        failures = 0
        if job.status != status:
            status, delay = job.status, interval
            run.update(job_status=status)
            run.append_log(f"job {job_id}: {status}")
            print(f"job {job_id}: {status}", flush=True)
        else:
            delay = min(delay * 1.5, longest)
        if status in terminal:
            return job
        time.sleep(delay)
