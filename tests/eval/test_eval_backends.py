"""The evaluation asks the run's backend what to evaluate and whether it fits the budget (Backend.eval_models,
Backend.check_eval_budget); it knows no provider by name."""

from __future__ import annotations

import pytest

from ftorch.backends import REGISTRY, get_backend
from ftorch.config.compose import find_project
from ftorch.errors import ConfigError
from ftorch.eval import finished as evaluation
from ftorch.run.lifecycle import prepare
from ftorch.run.rundir import RunDir

PROJECT = find_project()


def never() -> dict:
    raise AssertionError("a free evaluation must not build its calls")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_backend_says_how_its_runs_are_evaluated(name):
    backend = get_backend(name)
    assert callable(backend.eval_models) and callable(backend.check_eval_budget)


@pytest.mark.parametrize("name", ["peft", "unsloth", "axolotl"])
def test_a_local_run_is_free_to_evaluate_and_needs_its_adapter(tmp_path, name):
    cfg = prepare(PROJECT, ["recipe=quickstart-tiny"]).plan.config
    backend, run = get_backend(name), RunDir(tmp_path)
    backend.check_eval_budget(run, cfg, never)
    with pytest.raises(ConfigError, match="no adapter in this run to evaluate"):
        backend.eval_models(run, cfg)


def openai_cfg(*overrides: str):
    return prepare(PROJECT, ["recipe=openai-quickstart", *overrides]).plan.config


def test_an_openai_evaluation_over_the_budget_is_refused(tmp_path):
    backend, run = get_backend("openai"), RunDir(tmp_path)
    run.update(status="succeeded", metrics={"trained_tokens": 1_000_000}, fine_tuned_model="ft:x")
    calls = {"base": [[{"role": "user", "content": "word " * 200}]] * 500, "prompted": [], "tuned": []}
    cheap = openai_cfg("provider.max_cost_usd=1000")
    backend.check_eval_budget(run, cheap, lambda: calls)
    tight = cheap.model_copy(update={"provider": cheap.provider.model_copy(update={"max_cost_usd": 0.05})})
    with pytest.raises(ConfigError) as info:
        backend.check_eval_budget(run, tight, lambda: calls)
    assert "provider.max_cost_usd: training ($" in info.value.render()
    assert "plus this evaluation is estimated at $" in info.value.render()
    unlimited = cheap.model_copy(update={"provider": cheap.provider.model_copy(update={"max_cost_usd": None})})
    backend.check_eval_budget(run, unlimited, never)


def test_an_openai_run_without_a_fine_tuned_model_has_nothing_to_evaluate(tmp_path):
    run = RunDir(tmp_path)
    run.update(status="failed")
    with pytest.raises(ConfigError, match="no fine-tuned model id in run.json"):
        get_backend("openai").eval_models(run, openai_cfg())


def test_the_budget_is_checked_before_anything_is_loaded(tmp_path, monkeypatch):
    steps = []

    class Fake:
        name, weights = "fake", "adapter"  # the Backend protocol's: a run that leaves an adapter here

        def check_eval_budget(self, run, cfg, calls):
            steps.append(("budget", sorted(calls())))

        def eval_models(self, run, cfg):
            steps.append("models")
            return "generator", None, None

    cfg = prepare(PROJECT, ["recipe=quickstart-tiny"]).plan.config
    monkeypatch.setattr("ftorch.backends.get_backend", lambda name: Fake())
    assert evaluation._models_for(RunDir(tmp_path), cfg) == ("generator", None, None)
    assert steps == [("budget", ["base", "prompted", "tuned"]), "models"]
