"""provider=peft on several processes (train.num_gpus > 1): the run's process starts
`torchrun --nproc_per_node N -m ftorch.backends.peft.child RUN_DIR` under backends/child.py's supervision
and waits; every rank rebuilds the plan from the run directory and trains under DDP (NCCL on GPUs, gloo on
CPU) through PeftBackend.train_in_process; rank 0 alone writes to the run directory and reports the result
(child.py's record), which the parent turns into run.json's truthful status."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path

from ...errors import FtorchError
from ...run.rundir import RunDir
from .. import child


def main(argv: list[str]) -> int:

    from ...data.report import check_data
    from .backend import PeftBackend

    run_path = Path(argv[0])
    resume_from = argv[1] if len(argv) > 1 else None
    main_rank = int(os.environ.get("RANK", "0")) == 0
    run = RunDir(run_path, writes=main_rank)
    child.raise_interrupt_on_sigterm()
    try:
        config = run.config()
        backend = PeftBackend()
        plan = backend.plan(config, check_data(config.data))
        result = backend.train_in_process(plan, run, resume_from=resume_from)
    except KeyboardInterrupt:
        if main_rank:
            child.report(run_path, "interrupted")
        return 130
    except FtorchError as exc:
        if main_rank:
            child.report_error(run_path, exc)
        return exc.exit_code
    if main_rank:
        child.report(run_path, **asdict(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
