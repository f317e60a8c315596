"""`ftorch pull RUN_DIR`: download a provider=together run's LoRA adapter into RUN/adapter, verified against
the local base (model.*), so `ftorch eval`, `chat` and `export` treat it as a local run."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    pull = sub.add_parser("pull", help="download a hosted run's adapter into the run folder (provider=together)")
    pull.add_argument("run_dir", type=Path)


def run(args) -> int:
    from ..errors import ConfigError, Problem
    from ..eval.finished import config_of
    from ..run.rundir import RunDir
    from .console import out

    run_dir = RunDir(args.run_dir)
    with run_dir.owned("pull"):
        cfg = config_of(run_dir, [])
        if cfg.provider.name != "together":
            raise ConfigError(Problem(str(run_dir.path), f"provider={cfg.provider.name} has no adapter to pull",
                                      "ftorch pull is for provider=together runs"))
        from ..backends.together.pull import pull_run

        digest = pull_run(run_dir, cfg)
    out.print(f"adapter in {run_dir.adapter} (sha256 {digest[:16]}); evaluate it: ftorch eval {run_dir.path}")
    return 0
