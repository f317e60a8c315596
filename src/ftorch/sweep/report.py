"""A sweep's leaderboard: every trial's swept parameters, objective and key numbers, sorted best first;
leaderboard.csv / .md, sweep.png, and best.yaml (the winner's configuration as a recipe)."""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, Problem
from ..run.plots import read_metrics
from ..run.record import Objective, RunRecord
from ..run.rundir import RunDir
from ..safe_io import atomic_writer, save_figure, write_text

KEY_METRICS = ("final_loss", "final_eval_loss", "trained_tokens")


@dataclass
class Trial:
    path: Path
    record: RunRecord
    config: dict
    overrides: dict[str, str]

    @property
    def objective(self) -> Objective | None:
        return self.record.objective[0] if self.record.objective else None

    @property
    def value(self) -> float | None:
        """The (first) objective's value, if the trial has one."""
        return self.objective.value if self.objective else None

    @property
    def duration_s(self) -> float | None:
        start, end = self.record.started, self.record.ended
        if not start or not end:
            return None
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def load_trials(sweep_dir: Path) -> list[Trial]:
    if not sweep_dir.is_dir():
        raise ConfigError(Problem(str(sweep_dir), "no such sweep directory"))
    trials = []
    for run_json in sorted(sweep_dir.glob("*/run.json"), key=lambda p: _trial_number(p.parent)):
        folder = run_json.parent
        overrides_file = folder / ".hydra" / "overrides.yaml"
        items = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        run = RunDir(folder)
        try:
            record = run.observed()  # a running trial that nobody owns any more: 'died'
        except ConfigError as exc:
            print(f"ftorch: skipping {run_json}: {exc.problems[0].message}", file=sys.stderr)
            continue
        trials.append(Trial(folder, record,
                            run.config_data() if run.config_file.is_file() else {},
                            dict(item.split("=", 1) for item in items if "=" in item)))
    if not trials:
        raise ConfigError(Problem(str(sweep_dir), "no trials (no */run.json) in this folder"))
    return trials


def swept_keys(trials: list[Trial]) -> list[str]:
    """The override keys whose values differ between trials."""
    keys = sorted({k for t in trials for k in t.overrides})
    return [k for k in keys if len({t.overrides.get(k) for t in trials}) > 1]


def ranked(trials: list[Trial]) -> list[Trial]:
    """Best first by the (first) objective; trials without a value last."""
    scored = [t for t in trials if t.value is not None]
    maximize = any(t.objective.direction == "maximize" for t in scored[:1] if t.objective)
    scored.sort(key=lambda t: t.value or 0.0, reverse=maximize)
    return scored + [t for t in trials if t not in scored]


def rows(trials: list[Trial]) -> tuple[list[str], list[list[Any]]]:
    keys = swept_keys(trials)
    objective = next((t.objective.name for t in trials if t.objective), "objective")
    metrics = [m for m in KEY_METRICS if any(t.record.metrics.get(m) is not None for t in trials)]
    costs = any(_cost(t) is not None for t in trials)
    errors = any(t.record.error for t in trials)
    judged = any(t.record.judged_summary() for t in trials)
    header = ["rank", "trial", *keys, objective, *metrics, *(["judged"] * judged), "status", "duration_s"]
    header += ["cost_usd"] * costs + ["error"] * errors
    table = []
    for rank, trial in enumerate(ranked(trials), start=1):
        numbers = trial.record.metrics
        row = [rank, trial.path.name, *[trial.overrides.get(k, "") for k in keys], trial.value,
               *[numbers.get(m) for m in metrics], *([trial.record.judged_summary()] * judged), trial.record.status,
               round(trial.duration_s, 1) if trial.duration_s is not None else None]
        row += [_cost(trial)] * costs
        row += [trial.record.error.splitlines()[0][:120] if trial.record.error else ""] * errors
        table.append(row)
    return header, table


def _cost(trial: Trial) -> float | None:
    return trial.record.cost_usd


def write_report(sweep_dir: Path) -> dict[str, Path]:
    trials = load_trials(sweep_dir)
    header, table = rows(trials)
    outputs = {"csv": sweep_dir / "leaderboard.csv", "md": sweep_dir / "leaderboard.md",
               "png": sweep_dir / "sweep.png", "best": sweep_dir / "best.yaml"}
    with atomic_writer(outputs["csv"]) as handle:  # every report file: never through a symlink
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(table)
    lines = [f"# Sweep {sweep_dir}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table]
    write_text(outputs["md"], "\n".join(lines) + "\n")
    plot(trials, outputs["png"])
    best = ranked(trials)[0]
    if best.value is not None:
        write_best(best, outputs["best"])
    else:
        outputs.pop("best")
    return outputs


def write_best(trial: Trial, path: Path) -> None:
    """The winner's whole resolved configuration as a recipe: `ftorch train recipe=<this file>` reruns it."""
    config = {k: v for k, v in trial.config.items() if k not in ("paths", "sweep")}
    header = (f"# @package _global_\n# Best trial of the sweep: {trial.path}\n"
              f"# {trial.objective.name if trial.objective else 'objective'} = {trial.value}\n"
              f"# Re-run it: ftorch train recipe={path}\n")
    write_text(path, header + yaml.safe_dump(config, sort_keys=False))


def plot(trials: list[Trial], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = swept_keys(trials) or ["trial"]
    fig, axes = plt.subplots(1, len(keys) + 1, figsize=(4.2 * (len(keys) + 1), 3.6), dpi=110, squeeze=False)
    name = next((t.objective.name for t in trials if t.objective), "objective")
    for ax, key in zip(axes[0], keys):
        points = [(_number(t.overrides.get(key, t.path.name)), t.value) for t in trials if t.value is not None]
        if points:
            xs, ys = zip(*points)
            ax.scatter(xs, ys)
            if key == "train.lr" and all(isinstance(x, float) and x > 0 for x in xs):
                ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    curves = axes[0][-1]
    for trial in trials:
        train = [(r["step"], r["loss"]) for r in read_metrics(trial.path / "metrics.jsonl")
                 if r.get("kind", "train") == "train" and r.get("loss") is not None]
        if train:
            curves.plot(*zip(*train), label=trial.path.name, linewidth=1)
    curves.set_xlabel("step")
    curves.set_ylabel("train loss")
    curves.legend(fontsize=7)
    curves.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out)  # atomically, never through a symlink
    plt.close(fig)


def _number(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _trial_number(folder: Path) -> tuple[int, str]:
    digits = "".join(ch for ch in folder.name if ch.isdigit())
    return (int(digits) if digits else 0, folder.name)
