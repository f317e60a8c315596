"""provider=together's plan, offline: train.* becomes the spec's job body or is refused naming the key; full
fine-tuning is a setting; DPO maps the preference settings; a model Together does not fine-tune is refused from
the cached list."""

import json

import pytest

from ftorch.config.compose import find_project
from ftorch.errors import ConfigError
from ftorch.run.lifecycle import prepare

PROJECT = find_project()
BASE = ["recipe=together-quickstart"]


@pytest.fixture(autouse=True)
def key(monkeypatch, tmp_path):
    monkeypatch.setenv("TOGETHER_API_KEY", "together-test")
    monkeypatch.setenv("FTORCH_CACHE", str(tmp_path / "cache"))  # no list fetched earlier: the shipped copy


def job(*overrides):
    return prepare(PROJECT, [*BASE, *overrides]).plan.inputs["job"]


def refused(*overrides) -> str:
    with pytest.raises(ConfigError) as raised:
        prepare(PROJECT, [*BASE, *overrides])
    return raised.value.render()


def test_the_quickstart_job_body():
    body = job()
    assert body["model"] == "meta-llama/Llama-3.2-1B-Instruct" and body["n_epochs"] == 3
    assert body["training_method"] == {"method": "sft", "train_on_inputs": False}
    assert body["training_type"] == {"type": "Lora", "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
                                     "lora_trainable_modules": "q_proj,v_proj"}
    assert body["lr_scheduler"] == {"lr_scheduler_type": "cosine"} and body["random_seed"] == 42


def test_train_settings_reach_the_body():
    body = job("train.assistant_only_loss=false", "train.batch_size=auto", "train.scheduler=linear",
               "train.lora.target_modules=[q_proj,k_proj,v_proj,o_proj]", "train.packing=false")
    assert body["training_method"]["train_on_inputs"] is True and body["batch_size"] == "max"
    assert body["lr_scheduler"]["lr_scheduler_type"] == "linear" and body["packing"] is False
    assert body["training_type"]["lora_trainable_modules"] == "q_proj,k_proj,v_proj,o_proj"


def test_full_fine_tuning_is_a_setting_and_refuses_lora_shapes():
    assert job("provider.training_type=full", "provider.download_adapter=false",
               "eval.drift=false")["training_type"] == {"type": "Full"}
    text = refused("provider.training_type=full", "train.lora.r=64", "provider.download_adapter=false",
                   "eval.drift=false")
    assert "train.lora.r" in text and "training_type=full" in text
    assert "provider.download_adapter" in refused("provider.training_type=full")


def test_dpo_maps_beta_and_sft_weight():
    body = job("data=quickstart-dpo", "train=dpo", "train.preference.beta=0.2", "train.preference.sft_weight=0.5")
    assert body["training_method"] == {"method": "dpo", "dpo_beta": 0.2, "rpo_alpha": 0.5}
    assert "train.preference.beta" in refused("train.preference.beta=0.2")  # sft has no beta


@pytest.mark.parametrize("override, key", [("train.method=orpo", "train.method"), ("train.epochs=1.5", "train.epochs"),
                                           ("train.scheduler=constant", "train.scheduler"),
                                           ("train.grad_accum=4", "train.grad_accum"),
                                           ("train.lora.modules_to_save=[lm_head]", "train.lora.modules_to_save")])
def test_what_together_cannot_take_is_refused_naming_the_key(override, key):
    assert key in refused(override)


def test_a_model_together_does_not_fine_tune_is_refused_from_the_cached_list(tmp_path):
    text = refused("provider.model=acme/unknown-7b")
    assert "provider.model" in text and "does not fine-tune acme/unknown-7b" in text and "together.yaml" in text
    cache = tmp_path / "cache" / "together_models.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"https://api.together.ai/v1": {"models": ["acme/unknown-7b"],
                                                                "fetched": "2026-12-07"}}))
    assert job("provider.model=acme/unknown-7b")["model"] == "acme/unknown-7b"  # the list fetched last time wins
    assert "does not fine-tune" in refused()  # and the recipe's model is not in it
