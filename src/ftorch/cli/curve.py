"""`ftorch curve recipe=NAME [fractions=0.25,0.5,1.0] [KEY=VALUE ...]`: the recipe as a learning-curve sweep
(conf/sweep/learning_curve.yaml), then its evaluation and fit (eval/curve.py); `ftorch curve --sweep SWEEP_DIR
[eval.KEY=VALUE ...]` evaluates and fits a sweep that ran already (after `ftorch sweep resume`, say)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, Problem


def add_parser(sub) -> None:
    curve = sub.add_parser("curve", help="would more data help? train on nested fractions of the data, fit and "
                           "project the headline", description="Runs the recipe as a sweep over data.train_fraction "
                           "(fractions=0.25,0.5,1.0 by default), evaluates each trial on the same test split against "
                           "the same strongest prompt, fits an inverse power law and projects 2x and 4x the data.")
    curve.add_argument("--sweep", type=Path, metavar="SWEEP_DIR", help="fit this finished sweep instead of running one")
    curve.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="fractions=..., recipe=..., any setting")


def run(args) -> int:
    from .console import out

    code = 0
    if args.sweep is not None:
        if any(not item.startswith(("eval.", "eval=")) for item in args.overrides):
            raise ConfigError(Problem("--sweep", "fits a finished sweep: only eval.* settings apply to it",
                                      "keep eval.KEY=VALUE arguments only, or run a new curve without --sweep"))
        sweep_dir = args.sweep
        eval_overrides = list(args.overrides)
    else:
        from .console import report_outcomes
        from .train import checked_launch

        outcomes, found = checked_launch(_sweep_overrides(args.overrides), True)
        code = report_outcomes(outcomes, found)
        if found is None or not any(o.status == "succeeded" for o in outcomes):
            return code or 1
        sweep_dir = found
        eval_overrides = []
    from ..eval.curve import analyse, table

    report = analyse(sweep_dir, eval_overrides=eval_overrides)
    from rich.table import Table

    header, rows = table(report)
    shown = Table(title=f"learning curve · {sweep_dir}", title_justify="left")
    for column in header:
        shown.add_column(column, overflow="fold")
    for row in rows:
        shown.add_row(*row)
    out.print(shown)
    if report.baseline is not None:
        out.print(f"strongest prompt ({report.baseline_arm or 'prompted'}): {100 * report.baseline:.1f}%",
                  markup=False)
    out.print(f"curve: {report.sentence}", markup=False)
    out.print(f"written: {sweep_dir / 'curve.md'}  {sweep_dir / 'curve.png'}", markup=False)
    return code


def _sweep_overrides(overrides: list[str]) -> list[str]:
    """fractions=A,B,C becomes the sweep over data.train_fraction; sweep=learning_curve is added."""
    fractions = "0.25,0.5,1.0"
    rest = []
    for item in overrides:
        if item.startswith("fractions="):
            fractions = item.split("=", 1)[1]
        elif item.startswith(("sweep=", "-m")):
            raise ConfigError(Problem(f"command line: {item}", "ftorch curve runs its own sweep (sweep=learning_curve)",
                                      "drop it; for another sweep use `ftorch train -m`"))
        else:
            rest.append(item)
    values = [v.strip() for v in fractions.split(",") if v.strip()]
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        numbers = []
    if not numbers or any(not 0.0 < n <= 1.0 for n in numbers):
        raise ConfigError(Problem(f"command line: fractions={fractions}", "fractions are numbers in (0, 1], "
                                  "separated by commas", "for example fractions=0.25,0.5,1.0"))
    if len(set(numbers)) < 3:
        from .console import err

        err.print("[yellow]fewer than three fractions: the curve will be inconclusive[/]")
    return [*rest, "sweep=learning_curve", f"data.train_fraction={','.join(values)}"]
