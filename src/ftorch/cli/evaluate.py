"""`ftorch eval RUN_DIR [eval.KEY=VALUE ...] [--out DIR]`: evaluate a finished run again, into a new
eval/<timestamp>/ recorded in run.json; with --out, into DIR/<timestamp>/, reading the run without writing in it
(a run on a read-only filesystem can be evaluated so; without --out it is refused, saying so)."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    evaluate = sub.add_parser("eval", help="evaluate a finished run again (a new eval/<timestamp>/ each time)",
                              description="Only eval.* settings can change, e.g. eval.limit=20 eval.few_shot=3.")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("overrides", nargs="*", metavar="eval.KEY=VALUE")
    evaluate.add_argument("--out", type=Path, metavar="DIR", help="write the evaluation to DIR/<timestamp>/ "
                          "(with its record, evaluation.json) and leave the run's folder untouched: for a run "
                          "you cannot write to, e.g. on a read-only filesystem")


def run(args) -> int:
    from ..errors import RunInterrupted
    from ..eval.finished import config_of, evaluate_run, summary_lines
    from ..run.rundir import RunDir
    from ..run.signals import sigterm_as_interrupt
    from .console import err, interrupted, out

    run_dir = RunDir(args.run_dir)
    if args.out is not None:
        output_folder(args.out)
    hint = f"evaluate it into a folder you can write to: ftorch eval {args.run_dir} --out DIR"
    lock = run_dir.read_only("evaluate") if args.out else run_dir.owned("evaluate", read_only_hint=hint)
    try:
        with lock, sigterm_as_interrupt():
            report = evaluate_run(run_dir, config_of(run_dir, args.overrides), console=err, out=args.out)
    except (KeyboardInterrupt, RunInterrupted):
        return interrupted(args.run_dir)
    for line in summary_lines(report):
        out.print(line, markup=False)
    out.print(f"report: {report.folder}/report.md")
    return 0


def output_folder(path: Path) -> Path:
    """An --out folder (made if absent): anything but a folder there, or one that cannot be made, is exit 2."""
    from ..errors import ConfigError, Problem

    if path.exists() and not path.is_dir():
        raise ConfigError(Problem(f"--out {path}", "not a folder", "give a folder you can write to"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(Problem(f"--out {path}", f"cannot make this folder ({exc.strerror or exc})",
                                  "give a folder you can write to")) from None
    return path
