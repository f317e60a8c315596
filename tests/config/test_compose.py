"""Composition: groups, recipes and command-line overrides, and every shipped config validates."""

import pytest

from ftorch.config.compose import compose, find_project
from ftorch.config.load import Origins, load
from ftorch.run.lifecycle import prepare

PROJECT = find_project()


def config_for(*overrides):
    return prepare(PROJECT, list(overrides)).config


def test_default_recipe_is_quickstart_with_schema_defaults():
    prepared = prepare(PROJECT, [])
    assert prepared.recipe == "quickstart"
    cfg = prepared.config
    assert cfg.provider.name == "peft"
    assert cfg.model.tiny is None and cfg.model.name.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert cfg.train.scheduler == "cosine"  # from the schema: not set in any file
    assert cfg.train.lora.alpha == 32


def test_one_parameter_three_hops():
    # conf/train/lora.yaml sets 2e-4, the quickstart recipe 1e-3, the command line wins over both
    assert config_for("recipe=quickstart").train.lr == pytest.approx(1e-3)
    assert config_for("recipe=quickstart", "train.lr=5e-5").train.lr == pytest.approx(5e-5)


def test_keys_missing_from_group_files_can_be_overridden_without_plus():
    assert config_for("train.scheduler=linear").train.scheduler == "linear"
    assert config_for("train.lora.r=4").train.lora.r == 4


def test_group_choice_override():
    cfg = config_for("train=qlora")
    assert cfg.train.quantization == "4bit"


def test_plan_estimates_steps_from_data():
    prepared = prepare(PROJECT, ["train.batch_size=10", "train.epochs=2", "train.grad_accum=2"])
    assert prepared.plan.estimates["train_examples"] == 240
    assert prepared.plan.estimates["steps_per_epoch"] == 12
    assert prepared.plan.estimates["total_steps"] == 24
    assert prepared.plan.inputs["sft"]["learning_rate"] == prepared.config.train.lr


@pytest.mark.parametrize("recipe", PROJECT.recipe_names())
def test_every_recipe_validates(recipe):
    assert prepare(PROJECT, [f"recipe={recipe}"]).recipe == recipe


@pytest.mark.parametrize("group,option", [(g, o) for g in ("provider", "model", "data", "train")
                                          for o in PROJECT.group_options(g)])
def test_every_group_option_validates(group, option):
    """Each preset composes and passes the schema (a provider may still need a matching model, preference data a
    preference method: recipes)."""
    overrides = [f"{group}={option}"]
    text = (PROJECT.conf_dir / group / f"{option}.yaml").read_text()
    if group == "data" and "format: preference" in text:
        overrides.append("train.method=dpo")
    if group == "train" and "method: dpo" in text:
        overrides.append("data=quickstart-dpo")
    composed = compose(PROJECT, overrides)
    load(composed, Origins(PROJECT, [], dict(composed.hydra.runtime.choices)))


def test_a_sweep_whose_sweeper_library_is_missing_is_a_config_error(monkeypatch, tmp_path):
    import importlib.util

    from ftorch.config.compose import plan_trials
    from ftorch.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    with pytest.raises(ConfigError) as raised:
        plan_trials(PROJECT, ["recipe=quickstart-tiny", "sweep=optuna", f"paths.runs={tmp_path}"], False)
    assert "needs optuna" in raised.value.render() and "pip install 'ftorch[sweep]'" in raised.value.render()
    assert not any(tmp_path.iterdir())  # nothing written
