"""The number a trial reports to the sweeper, read from its run.json, and which way is better."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, Problem, did_you_mean
from ..run import metric_keys

if TYPE_CHECKING:
    from ..run.record import RunRecord


def resolve(record: RunRecord, name: str) -> tuple[str, float | None]:
    """(the metric's concrete name, its value or None when the run has no such number)."""
    metrics = record.metrics
    if name == "auto":
        headline = record.evaluation.headline if record.evaluation else None
        candidates = [metric_keys.task("tuned", headline)] if headline else []
        for candidate in [*candidates, metric_keys.FINAL_EVAL_LOSS, metric_keys.FINAL_LOSS]:
            if _finite(metrics.get(candidate)) is not None:
                return candidate, metrics[candidate]
        return metric_keys.FINAL_LOSS, None
    if name == metric_keys.GENERAL_CHANGE:
        base, tuned = metrics.get(metric_keys.general("base")), metrics.get(metric_keys.general("tuned"))
        return name, None if base is None or tuned is None else tuned - base
    return metric_keys.concrete(name), _finite(metrics.get(metric_keys.concrete(name)))


def direction_of(name: str, requested: str = "auto") -> str:
    """The requested direction, or with 'auto' the one the metric registry (run/metric_keys.py) declares; a
    metric it does not know needs its direction named (never guessed from its name)."""
    if requested != "auto":
        return requested
    found = metric_keys.direction(name)
    if found is None:
        raise ConfigError(Problem("sweep.objective", f"'{name}' has no known direction (maximize or minimize)",
                                  (did_you_mean(name, metric_keys.known()) or "")
                                  + " set sweep.direction=maximize or sweep.direction=minimize for it"))
    return found


def _pairs(names: str | Sequence[str], directions: str | Sequence[str]) -> list[tuple[str, str]]:
    """(objective, requested direction) for each objective; one direction may stand for all."""
    name_list = [names] if isinstance(names, str) else list(names)
    direction_list = [directions] * len(name_list) if isinstance(directions, str) else list(directions)
    return list(zip(name_list, direction_list, strict=True))


def objectives(record: RunRecord, names: str | list[str], directions: str | list[str]) -> list[dict]:
    """[{name, value, direction}] for each objective of the sweep."""
    result = []
    for name, requested in _pairs(names, directions):
        concrete, value = resolve(record, name)
        result.append({"name": concrete, "value": value, "direction": direction_of(concrete, requested)})
    return result


def score_run(run_dir, names: str | list[str], directions: str | list[str]) -> list[float] | None:
    """Score a finished run: its objectives are kept in its run.json; the values (None unless it
    succeeded with a finite number for each) are what the sweeper is told."""
    from ..run.rundir import RunDir

    run = RunDir(run_dir)
    record = run.record()
    found = objectives(record, names, directions)
    run.update(objective=found)
    values = [item["value"] for item in found]
    if record.status != "succeeded" or any(v is None for v in values):
        return None
    return values


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def planned(config: dict[str, Any]) -> list[dict]:
    """The objectives a sweep over this (composed, resolved) config will report, known before any trial runs:
    what 'auto' will mean, and each direction. Defaults are the schema's."""
    from ..config.schema import EvalConfig, SweepSettings

    sweep = SweepSettings.model_validate(config.get("sweep") or {})
    evaluation = EvalConfig.model_validate(config.get("eval") or {})
    result = []
    for name, direction in _pairs(sweep.objective, sweep.direction):
        if name == "auto":
            if evaluation.enabled:
                name = metric_keys.task("tuned", evaluation.headline)
            else:
                validation = (config.get("data") or {}).get("validation")
                name = metric_keys.FINAL_EVAL_LOSS if validation else metric_keys.FINAL_LOSS
        result.append({"name": name, "direction": direction_of(name, direction)})
    return result
