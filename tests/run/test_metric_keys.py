"""The metric registry: every task metric and every number run.json keeps has one declared direction, the keys
are built in one place, and a sweep over a name ftorch does not know asks for its direction instead of guessing."""

from __future__ import annotations

import pytest

from ftorch.config.schema import METRICS
from ftorch.errors import ConfigError
from ftorch.eval.metrics import TASK_METRICS, is_binary
from ftorch.run import metric_keys
from ftorch.run.metrics_log import PREFERENCE_NAMES
from ftorch.sweep.objective import direction_of, planned


def test_the_registry_and_the_schema_name_the_same_metrics():
    assert set(TASK_METRICS) == set(METRICS)


def test_pass_fail_metrics_are_declared_not_guessed():
    assert {m for m in TASK_METRICS if is_binary(m)} == {"exact_match", "normalized_match", "json_valid",
                                                        "json_schema"}
    assert not is_binary("field_accuracy") and not is_binary("no_such_metric")


@pytest.mark.parametrize("name,expected", [
    ("eval_tuned_field_accuracy", "maximize"), ("eval_prompted_chrf", "maximize"), ("eval_base_judge", "maximize"),
    ("final_loss", "minimize"), ("final_eval_loss", "minimize"), ("general_change", "maximize"),
    ("eval_general_tuned", "maximize"), ("eval_harmful_tuned", "minimize"), ("eval_tuned_rejected_rate", "minimize"),
    ("eval_tuned_preference_accuracy", "maximize"), ("eval_tuned_reward_margin", "maximize"),
    ("final_train_reward_rejected", "minimize"),
])
def test_directions_come_from_the_registry(name, expected):
    assert metric_keys.direction(name) == expected == direction_of(name)


def test_every_name_the_run_writes_has_a_direction():
    assert all(metric_keys.direction(metric_keys.final_train(n)) for n in PREFERENCE_NAMES)
    assert all(metric_keys.direction(name) for name in metric_keys.known())


def test_an_unknown_objective_needs_its_direction_named():
    with pytest.raises(ConfigError) as caught:
        direction_of("eval_tuned_feild_accuracy")
    text = caught.value.render()
    assert "sweep.objective" in text and "did you mean 'eval_tuned_field_accuracy'" in text
    assert "sweep.direction" in text
    assert direction_of("trained_tokens", "minimize") == "minimize"
    with pytest.raises(ConfigError):
        planned({"sweep": {"objective": "trained_tokens"}})
