"""`ftorch cancel RUN_DIR`: cancel a run's remote job (the provider says whether it has one)."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    cancel = sub.add_parser("cancel", help="cancel a run's remote job (provider=openai)")
    cancel.add_argument("run_dir", type=Path)


def run(args) -> int:
    from ..backends import get_backend
    from ..eval.finished import config_of
    from ..run.rundir import RunDir
    from .console import out

    run_dir = RunDir(args.run_dir)
    with run_dir.owned("cancel"):
        cfg = config_of(run_dir, [])
        status = get_backend(cfg.provider.name).cancel(run_dir, cfg)
    out.print(f"job {run_dir.record().job_id}: {status}")
    return 0
