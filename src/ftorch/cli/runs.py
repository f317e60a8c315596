"""`ftorch runs ls [DIR]`: every run and sweep under a folder, with status and headline numbers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, Problem

if TYPE_CHECKING:
    from ..run.record import RunRecord


def add_parser(sub) -> None:
    runs = sub.add_parser("runs", help="list runs and sweeps")
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    ls = runs_sub.add_parser("ls", help="runs and sweeps under a folder, with status and headline numbers")
    ls.add_argument("dir", type=Path, nargs="?", help="default: runs/")


def run(args) -> int:
    from rich.table import Table

    from ..run.rundir import RunDir
    from .console import err, out

    root = args.dir or Path("runs")
    if not root.is_dir():
        if args.dir is None and not root.exists():  # a new project: nothing trained yet
            out.print(f"no runs yet (ftorch train writes them under {root}/)", markup=False)
            return 0
        raise ConfigError(Problem(str(root), "not a folder" if root.exists() else "no such folder",
                                  "runs are under paths.runs (default: runs/)"))
    records = sorted(root.rglob("run.json"), key=_mtime)
    if not records:
        out.print(f"no runs yet under {root}", markup=False)
        return 0
    table = Table(title=f"runs under {root}", title_justify="left")
    for column in ("run", "recipe", "provider", "status", "started", "duration", "headline", "cost"):
        table.add_column(column, overflow="fold")
    sweeps: dict[Path, list[RunRecord]] = {}
    died = []
    killed: list[dict] = []  # exports killed outright, not yet cleared by the next export (observed(): 'died')
    for path in records:
        if not path.is_file():  # a folder, a FIFO, a device: reading it would fail or never end
            err.print(f"[yellow]warning[/] skipping {path}: not a regular file", markup=True)
            continue
        try:
            record = RunDir(path.parent).observed()  # 'running' with nobody holding the run's lock is 'died'
        except ConfigError as exc:
            err.print(f"[yellow]warning[/] skipping {path}: {exc.problems[0].message}", markup=True)
            continue
        except OSError as exc:  # unreadable, or gone meanwhile
            err.print(f"[yellow]warning[/] skipping {path}: cannot read it ({exc.strerror or exc})", markup=True)
            continue
        if record.status == "died":
            died.append((path.parent, record))
        killed += [e for e in record.exports if _killed(e)]
        if path.parent.parent.parent.name == "sweeps":
            sweeps.setdefault(path.parent.parent, []).append(record)
            continue
        table.add_row(str(path.parent.relative_to(root)), record.recipe or "", record.provider or "",
                      _status(record), (record.started or "")[:19], _duration(record), _headline(record),
                      _cost(record))
    for sweep_dir, trials in sweeps.items():
        done = sum(t.status == "succeeded" for t in trials)
        best = _best(trials)
        table.add_row(str(sweep_dir.relative_to(root)) + "/", trials[0].recipe or "",
                      trials[0].provider or "", f"sweep: {done}/{len(trials)} succeeded",
                      (trials[0].started or "")[:19], "", best, "")
    out.print(table)
    for run_dir, record in died:
        out.print(f"{run_dir} died at step {record.last_checkpoint_step or 0} (last checkpoint); "
                  f"continue with: ftorch resume {run_dir}", markup=False)
    for entry in killed:
        out.print(f"{entry.get('dir')}: {entry.get('error')}", markup=False)
    return 0



def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # a dangling symlink, gone meanwhile: listed (and skipped with a warning) last
        return float("inf")


def _status(record: RunRecord) -> str:
    status: str = record.status
    if status == "died":
        step = record.last_checkpoint_step
        status = f"died (checkpoint-{step})" if step else "died (no checkpoint)"
    evaluation = record.evaluation.status if record.evaluation else None
    if status == "succeeded" and evaluation in ("running", "died", "interrupted"):
        status = f"succeeded, eval {evaluation}"
    if record.status == "succeeded" and any(e.get("status") == "running" for e in record.exports):
        status = f"{status}, export running"
    elif record.status == "succeeded" and any(_killed(e) for e in record.exports):
        status = f"{status}, export died"
    return f"{status} (regressed)" if record.regressed else status


def _killed(export: dict) -> bool:
    """An export observed() reports as died: killed outright and not yet cleared (and recorded, with the time
    it was found) by the next export."""
    return export.get("status") == "died" and not export.get("ended")


def _duration(record: RunRecord) -> str:
    start, end = record.started, record.ended
    if not start or not end:
        return ""
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _headline(record: RunRecord) -> str:
    value = record.headline_metric
    latest = record.evaluation.latest_success() if record.evaluation is not None else None
    judged = record.judged_summary()
    if value is not None and latest is not None:
        return f"{latest.get('headline')} {value:.1%}" + (f"; {judged}" if judged else "")
    loss = record.metrics.get("final_loss")
    return f"loss {loss:.3f}" if loss is not None else ""


def _cost(record: RunRecord) -> str:
    usd = record.cost_usd
    return f"${usd:.2f}" if usd is not None else ""


def _best(trials: list[RunRecord]) -> str:
    scored = [t.objective[0] for t in trials if t.objective and t.objective[0].value is not None]
    if not scored:
        return ""
    pick = max if scored[0].direction == "maximize" else min
    best = pick(scored, key=lambda o: o.value or 0.0)
    return f"best {best.name} {best.value:.4g}"
