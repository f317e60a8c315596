"""The objective a trial reports, its direction, and Hydra's sweep syntax mapped to Optuna."""

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from ftorch.sweep.objective import direction_of, objectives, planned
from hydra_plugins.ftorch_optuna.optuna_sweeper import distribution


def test_auto_objective_prefers_the_evaluation_headline():
    record = {"metrics": {"eval_tuned_field_accuracy": 0.8, "final_loss": 1.2},
              "evaluation": {"headline": "field_accuracy"}}
    assert objectives(record, "auto", "auto") == [{"name": "eval_tuned_field_accuracy", "value": 0.8,
                                                   "direction": "maximize"}]
    assert objectives({"metrics": {"final_loss": 1.2}}, "auto", "auto")[0] == {
        "name": "final_loss", "value": 1.2, "direction": "minimize"}


def test_multi_objective_with_forgetting():
    record = {"metrics": {"eval_general_base": 0.5, "eval_general_tuned": 0.4, "final_loss": 2.0}}
    found = objectives(record, ["final_loss", "general_change"], "auto")
    assert [f["direction"] for f in found] == ["minimize", "maximize"]
    assert found[1]["value"] == pytest.approx(-0.1)


def test_planned_objectives_follow_the_config():
    assert planned({"eval": {"enabled": True, "headline": "exact_match"}})[0]["name"] == "eval_tuned_exact_match"
    assert planned({"eval": {"enabled": False}, "data": {"validation": "v.jsonl"}})[0]["name"] == "final_eval_loss"
    assert direction_of("final_loss", "maximize") == "maximize"


@pytest.mark.parametrize("override,kind,fields", [
    ("train.lr=tag(log, interval(1e-4, 1e-2))", "FloatDistribution", {"low": 1e-4, "high": 1e-2, "log": True}),
    ("train.lora.r=choice(4, 8, 16)", "CategoricalDistribution", {"choices": (4, 8, 16)}),
    ("train.batch_size=range(2, 10, 2)", "IntDistribution", {"low": 2, "high": 8, "step": 2}),
    ("train.epochs=int(interval(1, 4))", "IntDistribution", {"low": 1, "high": 4}),
    ("train.epochs=interval(1, 4)", "FloatDistribution", {"low": 1.0, "high": 4.0}),
])
def test_hydra_sweep_syntax_to_optuna(override, kind, fields):
    (parsed,) = OverridesParser.create().parse_overrides([override])
    found = distribution(parsed)
    assert type(found).__name__ == kind
    for name, value in fields.items():
        assert getattr(found, name) == value
