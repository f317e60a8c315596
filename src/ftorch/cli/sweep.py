"""`ftorch sweep report | resume SWEEP_DIR`: a sweep's leaderboard, or continue an interrupted sweep."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, Problem


def add_parser(sub) -> None:
    sweep = sub.add_parser("sweep", help="leaderboard of a sweep, or resume it")
    sweep_sub = sweep.add_subparsers(dest="sweep_command", metavar="ACTION", required=True)
    report = sweep_sub.add_parser("report", help="leaderboard.csv/.md, sweep.png and best.yaml in the sweep folder")
    report.add_argument("sweep_dir", type=Path)
    resume_sweep = sweep_sub.add_parser("resume", help="continue an interrupted sweep in its own folder")
    resume_sweep.add_argument("sweep_dir", type=Path)


def run(args) -> int:
    return {"report": report, "resume": resume}[args.sweep_command](args)


def report(args) -> int:
    from rich.table import Table

    from ..sweep.report import load_trials, rows, write_report
    from .console import out

    outputs = write_report(args.sweep_dir)
    header, table_rows = rows(load_trials(args.sweep_dir))
    table = Table(title=f"leaderboard · {args.sweep_dir}", title_justify="left")
    for column in header:
        table.add_column(column.replace("_", " ").replace(".", ". "), overflow="fold")
    for row in table_rows:
        table.add_row(*[_short(v) for v in row])
    out.print(table)
    for kind, path in outputs.items():
        out.print(f"{kind}: {path}")
    if "best" in outputs:
        out.print(f"re-run the winner: ftorch train recipe={outputs['best']}")
    return 0



def resume(args) -> int:
    """Start the same sweep again in its own folder: finished trials are kept, interrupted ones continued,
    and an Optuna study goes on with the trials it still owes."""
    import yaml

    from ..config.compose import find_project
    from ..run.launch import launch
    from .console import report_outcomes

    saved = args.sweep_dir / "multirun.yaml"
    if not saved.is_file():
        raise ConfigError(Problem(str(args.sweep_dir), "not a sweep directory (no multirun.yaml)"))
    from omegaconf import OmegaConf

    from ..config.compose import check_sweeper_installed

    sweep_config = yaml.safe_load(saved.read_text())
    check_sweeper_installed(OmegaConf.create(sweep_config))
    recorded = (sweep_config.get("hydra") or {}).get("overrides", {})
    given = (recorded.get("hydra") or []) + (recorded.get("task") or [])  # e.g. hydra.sweeper.n_trials=3
    overrides = [o for o in given if not o.startswith(("hydra.sweep.dir=", "hydra.mode="))]
    outcomes, sweep_dir = launch(find_project(), overrides + [f"hydra.sweep.dir={args.sweep_dir.resolve()}"], True)
    return report_outcomes(outcomes, sweep_dir)



def _short(value) -> str:
    """Numbers (also numbers in strings, as overrides are) to 4 significant digits, for a narrow terminal."""
    if value is None:
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(value) if isinstance(value, (int, bool)) else f"{number:.4g}"
