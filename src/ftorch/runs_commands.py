"""`ftorch runs ls`, `ftorch sweep report | resume`: finding runs and comparing trials."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rich.table import Table

from .commands import err, out
from .errors import ConfigError, Problem
from .rundir import RunDir


def runs_ls(args) -> int:
    root = args.dir
    if not root.is_dir():
        raise ConfigError(Problem(str(root), "no such folder", "runs are under paths.runs (default: runs/)"))
    records = sorted(root.rglob("run.json"), key=lambda p: p.stat().st_mtime)
    table = Table(title=f"runs under {root}", title_justify="left")
    for column in ("run", "recipe", "provider", "status", "started", "duration", "headline", "cost"):
        table.add_column(column, overflow="fold")
    sweeps: dict[Path, list[dict]] = {}
    died = []
    for path in records:
        try:
            record = RunDir(path.parent).observed()  # 'running' with nobody holding the run's lock is 'died'
        except ConfigError as exc:
            err.print(f"[yellow]warning[/] skipping {path}: {exc.problems[0].message}", markup=True)
            continue
        if record["status"] == "died":
            died.append((path.parent, record))
        if path.parent.parent.parent.name == "sweeps":
            sweeps.setdefault(path.parent.parent, []).append(record)
            continue
        table.add_row(str(path.parent.relative_to(root)), record.get("recipe") or "", record.get("provider") or "",
                      _status(record), (record.get("started") or "")[:19], _duration(record), _headline(record),
                      _cost(record))
    for sweep_dir, trials in sweeps.items():
        done = sum(t.get("status") == "succeeded" for t in trials)
        best = _best(trials)
        table.add_row(str(sweep_dir.relative_to(root)) + "/", trials[0].get("recipe") or "",
                      trials[0].get("provider") or "", f"sweep: {done}/{len(trials)} succeeded",
                      (trials[0].get("started") or "")[:19], "", best, "")
    out.print(table)
    for run_dir, record in died:
        out.print(f"{run_dir} died at step {record.get('last_checkpoint_step') or 0} (last checkpoint); "
                  f"continue with: ftorch resume {run_dir}", markup=False)
    return 0


def sweep_report(args) -> int:
    from .sweep.report import load_trials, rows, write_report

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


def sweep_resume(args) -> int:
    """Start the same sweep again in its own folder: finished trials are kept, interrupted ones continued,
    and an Optuna study goes on with the trials it still owes."""
    import yaml

    from .commands import _report
    from .compose import find_project
    from .launch import launch

    saved = args.sweep_dir / "multirun.yaml"
    if not saved.is_file():
        raise ConfigError(Problem(str(args.sweep_dir), "not a sweep directory (no multirun.yaml)"))
    from omegaconf import OmegaConf

    from .compose import check_sweeper_installed

    sweep_config = yaml.safe_load(saved.read_text())
    check_sweeper_installed(OmegaConf.create(sweep_config))
    recorded = (sweep_config.get("hydra") or {}).get("overrides", {})
    given = (recorded.get("hydra") or []) + (recorded.get("task") or [])  # e.g. hydra.sweeper.n_trials=3
    overrides = [o for o in given if not o.startswith(("hydra.sweep.dir=", "hydra.mode="))]
    outcomes, sweep_dir = launch(find_project(), overrides + [f"hydra.sweep.dir={args.sweep_dir.resolve()}"], True)
    return _report(outcomes, sweep_dir)


def _short(value) -> str:
    """Numbers (also numbers in strings, as overrides are) to 4 significant digits, for a narrow terminal."""
    if value is None:
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(value) if isinstance(value, (int, bool)) else f"{number:.4g}"


def _status(record: dict) -> str:
    status = record.get("status") or "?"
    if status == "died":
        step = record.get("last_checkpoint_step")
        status = f"died (checkpoint-{step})" if step else "died (no checkpoint)"
    evaluation = (record.get("evaluation") or {}).get("status")
    if status == "succeeded" and evaluation in ("running", "died", "interrupted"):
        status = f"succeeded, eval {evaluation}"
    return f"{status} (regressed)" if record.get("regressed") else status


def _duration(record: dict) -> str:
    start, end = record.get("started"), record.get("ended")
    if not start or not end:
        return ""
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _headline(record: dict) -> str:
    evaluation = record.get("evaluation") or {}
    headline = evaluation.get("headline")
    value = (record.get("metrics") or {}).get(f"eval_tuned_{headline}") if headline else None
    if value is not None:
        return f"{headline} {value:.1%}"
    loss = (record.get("metrics") or {}).get("final_loss")
    return f"loss {loss:.3f}" if loss is not None else ""


def _cost(record: dict) -> str:
    usd = ((record.get("plan_estimates") or {}).get("cost") or {}).get("usd")
    return f"${usd:.2f}" if usd is not None else ""


def _best(trials: list[dict]) -> str:
    scored = [t["objective"][0] for t in trials if t.get("objective") and t["objective"][0]["value"] is not None]
    if not scored:
        return ""
    pick = max if scored[0]["direction"] == "maximize" else min
    best = pick(scored, key=lambda o: o["value"])
    return f"best {best['name']} {best['value']:.4g}"
