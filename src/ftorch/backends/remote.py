"""What the hosted-job backends (provider=openai, provider=together) share: the run's stable key that marks its
one job, and the Ctrl-C message that leaves a job running."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..run.rundir import RunDir


def run_key(run: RunDir) -> str:
    """A stable id for this run (its folder), carried by its job (metadata, suffix) and as the idempotency key."""
    return "ftorch-" + hashlib.sha256(str(run.path.resolve()).encode()).hexdigest()[:24]


def detached_message(job_id: str, run: RunDir) -> str:
    return (f"\nstopped following; job {job_id} keeps running. Reattach: ftorch resume {run.path}\n"
            f"cancel it: ftorch cancel {run.path}")
