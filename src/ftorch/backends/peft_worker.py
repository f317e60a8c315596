"""provider=peft on several processes (train.num_gpus > 1): the run's process starts
`torchrun --nproc_per_node N -m ftorch.backends.peft_worker RUN_DIR` and waits; every rank rebuilds
the plan from the run directory and trains under DDP (NCCL on GPUs, gloo on CPU); rank 0 alone writes to
the run directory and leaves its result for the parent, which keeps run.json's status truthful."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from ..errors import BackendError, Problem
from ..rundir import RunDir
from .base import Plan, Result

RESULT = "worker_result.json"


class _QuietRun(RunDir):
    """What ranks other than 0 see of the run directory: nothing they write lands."""

    def update(self, **fields):
        return {}

    def append_log(self, line: str) -> None:
        pass


def launch_distributed(plan: Plan, run: RunDir, resume_from: str | None) -> Result:
    cfg = plan.config
    (run.path / RESULT).unlink(missing_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(cfg.train.num_gpus), "-m", "ftorch.backends.peft_worker", str(run.path),
               *([resume_from] if resume_from else [])]
    run.append_log("launching: " + " ".join(command))
    # torchrun keeps the run's lock (an inherited descriptor): if this process is killed, the ranks it leaves
    # behind still own the run, and no resume can start beside them
    child = subprocess.Popen(command, start_new_session=True, pass_fds=run.held_fds())
    try:
        code = child.wait()
    except BaseException:  # Ctrl-C or SIGTERM: stop every rank, then let the run be marked
        os.killpg(child.pid, signal.SIGINT)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
        raise
    result_file = run.path / RESULT
    if code != 0 or not result_file.is_file():
        raise BackendError(Problem("train.num_gpus", f"the distributed training exited with code {code}",
                                   f"see {run.log} and the output above"))
    result = json.loads(result_file.read_text())
    result_file.unlink()
    return Result(**result)


def main(argv: list[str]) -> int:
    import yaml

    from ..data.report import check_data
    from ..schema import RunConfig
    from .peft import PeftBackend

    run_path = Path(argv[0])
    resume_from = argv[1] if len(argv) > 1 else None
    main_rank = int(os.environ.get("RANK", "0")) == 0
    run = RunDir(run_path) if main_rank else _QuietRun(run_path)
    config = RunConfig.model_validate(yaml.safe_load((run_path / "config.yaml").read_text()))
    backend = PeftBackend()
    plan = backend.plan(config, check_data(config.data))
    result = backend._train(plan, run, resume_from=resume_from)
    if main_rank:
        from ..rundir import write_json_atomic

        write_json_atomic(run_path / RESULT, asdict(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
