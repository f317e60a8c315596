"""`ftorch resume RUN_DIR`: continue an interrupted or failed run from its last checkpoint."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    resume = sub.add_parser("resume", help="continue an interrupted or failed run from its last checkpoint")
    resume.add_argument("run_dir", type=Path)


def run(args) -> int:
    from ..errors import RunInterrupted
    from ..run import lifecycle
    from .console import interrupted, out, print_evaluation

    try:
        result = lifecycle.resume(args.run_dir)
    except (KeyboardInterrupt, RunInterrupted):
        return interrupted(args.run_dir)
    out.print(f"[green]{result.status}[/] {args.run_dir}")
    print_evaluation(args.run_dir)
    return 0
