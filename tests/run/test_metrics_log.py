"""metrics.jsonl: one row schema for every provider, one writer, one reader."""

import json

import pytest
from pydantic import ValidationError

from ftorch.run import metrics_log
from ftorch.run.metrics_log import MetricsRow, final_metrics, from_trainer_logs


def test_a_trainer_s_log_events_become_rows():
    train = from_trainer_logs(4, {"loss": 1.5, "learning_rate": 2e-4, "grad_norm": 0.7, "epoch": 0.5,
                                  "rewards/accuracies": 0.75, "mean_token_accuracy": 0.6}, time=1.0, tokens=99)
    assert train.model_dump(exclude_none=True) == {"step": 4, "kind": "train", "loss": 1.5, "lr": 2e-4,
                                                   "grad_norm": 0.7, "epoch": 0.5, "reward_accuracy": 0.75,
                                                   "token_accuracy": 0.6, "time": 1.0, "tokens": 99}
    evaluation = from_trainer_logs(4, {"eval_loss": 1.2, "eval_rewards/margins": 0.3})
    assert evaluation.kind == "eval" and evaluation.eval_loss == 1.2
    assert evaluation.model_dump()["eval_reward_margin"] == 0.3
    summary = from_trainer_logs(8, {"train_runtime": 12.5, "train_loss": 1.1, "epoch": 1.0})
    assert summary.kind == "summary" and summary.model_dump()["train_runtime"] == 12.5
    assert from_trainer_logs(8, {"memory/max_allocated": 3.0}) is None  # neither step, evaluation nor summary


def test_a_row_is_checked():
    with pytest.raises(ValidationError):
        MetricsRow(step="four", kind="train")
    with pytest.raises(ValidationError):
        MetricsRow(step=1, kind="training")


def test_read_keeps_the_later_row_of_a_step_and_skips_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    metrics_log.append(path, [MetricsRow(step=1, kind="train", loss=3.0), MetricsRow(step=2, kind="train", loss=2.0)])
    metrics_log.append(path, MetricsRow(step=2, kind="train", loss=1.9))  # after a resume
    metrics_log.append(path, MetricsRow(step=2, kind="eval", eval_loss=2.5))
    with path.open("a") as handle:
        handle.write('{"step": 3, "kind": "tr')  # killed mid-line
    assert "null" not in path.read_text()  # empty fields are not written
    rows = metrics_log.read(path)
    assert [(r["kind"], r["step"], r.get("loss", r.get("eval_loss"))) for r in rows] == [
        ("train", 1, 3.0), ("train", 2, 1.9), ("eval", 2, 2.5)]
    assert json.loads(path.read_text().splitlines()[0]) == {"step": 1, "kind": "train", "loss": 3.0}


def test_final_metrics_from_a_log_history():
    history = [{"loss": 2.0, "step": 1}, {"eval_loss": 2.2, "step": 1}, {"loss": 1.5, "rewards/margins": 0.4},
               {"loss": float("nan")}, {"train_runtime": 3.0}]
    assert final_metrics(history, 3) == {"final_loss": 1.5, "final_eval_loss": 2.2, "final_train_reward_margin": 0.4,
                                         "global_step": 3}
    assert final_metrics([], None) == {}
