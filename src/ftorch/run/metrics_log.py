"""metrics.jsonl: the row every provider writes (one declared schema), the one writer, the one reader, and the
final figures of a run from a transformers Trainer's log history."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ..safe_io import open_append, write_text
from . import metric_keys

if TYPE_CHECKING:
    from .rundir import RunDir

# what a transformers/TRL Trainer logs -> the name in metrics.jsonl (eval rows: the same with eval_)
TRAINER_NAMES = {"learning_rate": "lr", "grad_norm": "grad_norm", "mean_token_accuracy": "token_accuracy",
                 "rewards/accuracies": "reward_accuracy", "rewards/margins": "reward_margin",
                 "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected"}
PREFERENCE_NAMES = ("reward_accuracy", "reward_margin", "reward_chosen", "reward_rejected")


class MetricsRow(BaseModel):
    """One line of metrics.jsonl. After a resume a (kind, step) may appear twice: the later row wins."""

    model_config = ConfigDict(extra="allow")  # summary rows carry the trainer's own figures (train_runtime, ...)

    step: int
    kind: Literal["train", "eval", "summary"]
    epoch: float | None = None
    time: float | None = None
    loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens: int | None = None
    tokens_per_s: float | None = None
    token_accuracy: float | None = None
    eval_loss: float | None = None
    reward_accuracy: float | None = None
    reward_margin: float | None = None
    reward_chosen: float | None = None
    reward_rejected: float | None = None


def from_trainer_logs(step: int, logs: dict[str, Any], **extra: Any) -> MetricsRow | None:
    """A Trainer's log event (what on_log receives, or what Axolotl prints) as a row; None for events that are
    neither a training step, an evaluation nor the final summary."""
    if "loss" in logs:
        names = {theirs: ours for theirs, ours in TRAINER_NAMES.items() if theirs in logs}
        return MetricsRow(step=step, kind="train", loss=logs["loss"], epoch=logs.get("epoch"),
                          **{ours: logs[theirs] for theirs, ours in names.items()}, **extra)
    if "eval_loss" in logs:
        found = {f"eval_{ours}": logs[f"eval_{theirs}"] for theirs, ours in TRAINER_NAMES.items()
                 if ours in PREFERENCE_NAMES and f"eval_{theirs}" in logs}
        return MetricsRow(step=step, kind="eval", eval_loss=logs["eval_loss"], epoch=logs.get("epoch"), **found,
                          **extra)
    if "train_runtime" in logs:
        numbers = {k: v for k, v in logs.items() if isinstance(v, (int, float)) and k not in ("step", "kind")}
        return MetricsRow(step=step, kind="summary", **numbers, **extra)
    return None


def append(path: Path, rows: list[MetricsRow] | MetricsRow) -> None:
    """Append rows, each one JSON line without its empty fields."""
    rows = [rows] if isinstance(rows, MetricsRow) else rows
    with open_append(path) as handle:  # a symlink planted at metrics.jsonl is refused, never followed
        for row in rows:
            handle.write(json.dumps(row.model_dump(exclude_none=True)) + "\n")


def read(path: Path) -> list[dict]:
    """metrics.jsonl rows, one per (kind, step) (the later wins: a resume rewrites the steps after its
    checkpoint), in step order; a line torn by a kill is skipped."""
    if not path.exists():
        return []
    by_step: dict[tuple[str, int], dict] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "step" in row:
            by_step[(row.get("kind", "train"), row["step"])] = row
    return sorted(by_step.values(), key=lambda r: r["step"])


def final_metrics(history: list[dict[str, Any]], global_step: int | None) -> dict[str, Any]:
    """final_loss, final_eval_loss, the last training value of each preference figure (final_train_<name>) and
    global_step, from a Trainer's log history."""
    metrics: dict[str, Any] = {}
    for key, name in (("loss", metric_keys.FINAL_LOSS), ("eval_loss", metric_keys.FINAL_EVAL_LOSS),
                      *((theirs, metric_keys.final_train(ours)) for theirs, ours in TRAINER_NAMES.items()
                        if ours in PREFERENCE_NAMES)):
        seen = [h[key] for h in history if isinstance(h.get(key), (int, float)) and math.isfinite(h[key])]
        if seen:
            metrics[name] = seen[-1]
    if global_step is not None:
        metrics["global_step"] = global_step
    return metrics


def keep_metrics_until(run: RunDir, step: int) -> None:
    """Drop metrics.jsonl rows past `step` (and a line torn by a kill), atomically: each step stays once."""
    if not run.metrics.is_file():
        return
    kept = []
    for line in run.metrics.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            kept.append(line + "\n")
    write_text(run.metrics, "".join(kept))  # a temporary file made exclusively, renamed over: no symlink followed
