"""`ftorch eval RUN_DIR [eval.KEY=VALUE ...]`: evaluate a finished run again, into a new eval/<timestamp>/."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    evaluate = sub.add_parser("eval", help="evaluate a finished run again (a new eval/<timestamp>/ each time)",
                              description="Only eval.* settings can change, e.g. eval.limit=20 eval.few_shot=3.")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("overrides", nargs="*", metavar="eval.KEY=VALUE")


def run(args) -> int:
    from ..errors import RunInterrupted
    from ..eval.finished import config_of, evaluate_run, summary_lines
    from ..run.lifecycle import _sigterm_as_interrupt
    from ..run.rundir import RunDir
    from .console import err, interrupted, out

    run_dir = RunDir(args.run_dir)
    try:
        with run_dir.owned("evaluate"), _sigterm_as_interrupt():
            report = evaluate_run(run_dir, config_of(run_dir, args.overrides), console=err)
    except (KeyboardInterrupt, RunInterrupted):
        return interrupted(args.run_dir)
    for line in summary_lines(report):
        out.print(line, markup=False)
    evaluation = run_dir.record().evaluation  # evaluate_run recorded it
    if evaluation is not None and evaluation.dir:
        out.print(f"report: {evaluation.dir}/report.md")
    return 0
