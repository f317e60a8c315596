"""The number a trial reports to the sweeper, read from its run.json, and which way is better."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..run.record import RunRecord

MAXIMIZE_HINTS = ("accuracy", "match", "valid", "schema", "chrf", "rouge", "eval_tuned_", "general_change",
                  "reward_margin")


def resolve(record: RunRecord, name: str) -> tuple[str, float | None]:
    """(the metric's concrete name, its value or None when the run has no such number)."""
    metrics = record.metrics
    if name == "auto":
        headline = record.evaluation.headline if record.evaluation else None
        for candidate in ([f"eval_tuned_{headline}"] if headline else []) + ["final_eval_loss", "final_loss"]:
            if _finite(metrics.get(candidate)) is not None:
                return candidate, metrics[candidate]
        return "final_loss", None
    if name == "preference_accuracy":  # a preference run's held-out preference accuracy, tuned
        return "eval_tuned_preference_accuracy", _finite(metrics.get("eval_tuned_preference_accuracy"))
    if name == "general_change":
        base, tuned = metrics.get("eval_general_base"), metrics.get("eval_general_tuned")
        return name, None if base is None or tuned is None else tuned - base
    return name, _finite(metrics.get(name))


def direction_of(name: str, requested: str = "auto") -> str:
    if requested != "auto":
        return requested
    if "loss" in name or "perplexity" in name or name.startswith("eval_harmful") or name.endswith("rejected_rate"):
        return "minimize"
    return "maximize" if any(hint in name for hint in MAXIMIZE_HINTS) else "minimize"


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
                name = f"eval_tuned_{evaluation.headline}"
            else:
                name = "final_eval_loss" if (config.get("data") or {}).get("validation") else "final_loss"
        result.append({"name": name, "direction": direction_of(name, direction)})
    return result
