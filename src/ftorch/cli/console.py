"""What every command prints with: the two rich consoles, error rendering, and the lines about a finished run."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import EXIT_INTERRUPTED, FtorchError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(exc: FtorchError) -> None:
    err.print(f"[bold red]ftorch: {exc.title}[/]")
    err.print(exc.render(), markup=False)


def interrupted(run_dir: Path) -> int:
    """What run.json now says after Ctrl-C or SIGTERM (the same words, so console and record agree)."""
    from ..run.rundir import RunDir

    try:
        status: str = RunDir(run_dir).record().status
    except (OSError, FtorchError):
        status = "interrupted"
    err.print(f"[red]{status}[/] {run_dir}")  # the reason was printed when it was recorded
    return EXIT_INTERRUPTED


def print_evaluation(run_dir: Path) -> None:
    from ..run.rundir import RunDir

    evaluation = RunDir(run_dir).observed().evaluation
    if evaluation is not None and evaluation.status == "succeeded" and evaluation.dir:
        from ..eval.preference import console_line

        line = console_line(Path(evaluation.dir))
        if line:
            out.print(line, markup=False)
        out.print(f"verdict: {evaluation.verdict}", markup=False)
        out.print(f"report: {evaluation.dir}/report.md")
    elif evaluation is not None:
        out.print(f"evaluation: {evaluation.status} {evaluation.error or evaluation.reason or ''}", markup=False)


def report_outcomes(outcomes, sweep_dir: Path | None) -> int:
    """The runs (or a sweep's trials) a launch produced, and the exit code they add up to."""
    for outcome in outcomes:
        if outcome.error is not None and isinstance(outcome.error, FtorchError):
            print_error(outcome.error)
    if sweep_dir is not None and any((sweep_dir / o.run_dir.name / "run.json").is_file() for o in outcomes):
        from ..sweep.report import write_report

        written = write_report(sweep_dir)
        out.print(f"leaderboard: {written['md']}  plot: {written['png']}"
                  + (f"  best: {written['best']}" if "best" in written else ""))
    if sweep_dir is not None:
        table = Table(title=f"sweep {sweep_dir}")
        for column in ("run dir", "status", "final loss"):
            table.add_column(column)
        for outcome in outcomes:
            loss = (outcome.metrics or {}).get("final_loss")
            table.add_row(str(outcome.run_dir), outcome.status, f"{loss:.4f}" if loss is not None else "-")
        out.print(table)
    else:
        for outcome in outcomes:
            color = "green" if outcome.status == "succeeded" else "red"
            if (outcome.run_dir / "run.json").is_file():
                print_evaluation(outcome.run_dir)
            out.print(f"[{color}]{outcome.status}[/] run dir: {outcome.run_dir}")
    if any(o.interrupted for o in outcomes):
        return EXIT_INTERRUPTED
    failed = [o for o in outcomes if o.status != "succeeded"]
    if failed:
        codes = [o.error.exit_code for o in failed if isinstance(o.error, FtorchError)]
        return max(codes) if codes else 1
    return 0
