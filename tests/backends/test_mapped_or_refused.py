"""Mapped or refused, per provider: every train.* and model.* setting, changed from its default, either changes
what the provider's plan would run, or is a config error naming that key. Nothing is silently ignored."""

import functools
import json
import typing

import pytest

from ftorch.backends import REGISTRY, get_backend
from ftorch.backends.settings import unused_paths
from ftorch.config.compose import find_project
from ftorch.config.schema import ModelConfig, TrainConfig, defaults_tree
from ftorch.errors import ConfigError
from ftorch.run.lifecycle import prepare

PROJECT = find_project()
BASE = {"peft": ["recipe=quickstart-tiny"], "axolotl": ["recipe=axolotl-quickstart"],
        # 16-bit loading, so that train.quantization=4bit has something to contradict (with load_in_4bit=true
        # it is the same request)
        "unsloth": ["recipe=unsloth-quickstart", "provider.allow_cpu=true", "provider.load_in_4bit=false"],
    "openai": ["recipe=openai-quickstart"]}
NOT_APPLICABLE = {  # leaf -> why no alternative value is tried here
    "train.method": "lora or sft; a preference method needs preference data (tests/backends/test_preference.py)",
    "model.name": "every provider passes it on (the model to train)",
    "model.tiny": "a group of its own (model=tiny), checked by tests/test_models.py",
}


def _leaves(model, prefix):
    defaults = defaults_tree(model)
    for name, info in model.model_fields.items():
        if isinstance(defaults.get(name), dict) and name != "tiny":
            yield from _leaves(info.annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", info.annotation, defaults.get(name)


def _alternatives(annotation, default):
    """Values other than the default, written as overrides."""
    args = [typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a
            for a in typing.get_args(annotation)]
    literals = [v for a in (*args, annotation) if typing.get_origin(a) is typing.Literal for v in typing.get_args(a)]
    if isinstance(default, bool):
        return [str(not default).lower()]
    if literals and default in literals:
        return [str(v) for v in literals if v != default] + (["true", "false"] if bool in args else [])
    if isinstance(default, int):
        return [str(default + 3)]
    if isinstance(default, float):
        return [str(default * 0.5 or 0.01)]
    if isinstance(default, list):
        return ["[q_proj]"]
    if default is None:
        return ["3"] if int in args else ["v1"] if str in args else []
    return []


CASES = [(backend, path, _alternatives(annotation, default))
         for backend in REGISTRY
         for path, annotation, default in [*_leaves(TrainConfig, "train."), *_leaves(ModelConfig, "model.")]
         if path not in NOT_APPLICABLE]


def _plan(overrides):
    return json.dumps(prepare(PROJECT, overrides).plan.to_dict(), sort_keys=True, default=str)


@pytest.fixture(scope="module")
def reference():
    return {backend: _plan(base) for backend, base in BASE.items()}


@pytest.mark.parametrize("backend, path, values", CASES, ids=[f"{b}-{p}" for b, p, _ in CASES])
def test_every_setting_is_mapped_or_refused(monkeypatch, reference, backend, path, values):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert values, f"no alternative value for {path}: add one or list it in NOT_APPLICABLE"
    outcomes = []
    for value in values:
        try:
            outcomes.append("mapped" if _plan([*BASE[backend], f"{path}={value}"]) != reference[backend] else value)
        except ConfigError as exc:
            assert path in exc.render(), exc.render()  # refused, naming the key
            outcomes.append("refused")
        if outcomes[-1] in ("mapped", "refused"):
            break
    assert any(o in ("mapped", "refused") for o in outcomes), f"{path} is ignored by provider={backend}: {outcomes}"


def test_a_refused_setting_names_the_key_the_provider_and_what_to_do(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(ConfigError) as raised:
        prepare(PROJECT, [*BASE["openai"], "train.lr=5", "train.lora.r=64"])
    text = raised.value.render()
    assert "train.lr=5.0 has no effect with provider=openai" in text
    assert "train.lora.r=64 has no effect with provider=openai" in text
    assert "provider.learning_rate_multiplier" in text


def test_the_plan_lists_what_the_provider_does_not_use(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    plan = prepare(PROJECT, BASE["openai"]).plan.to_dict()
    assert "train.lora.r" in plan["ignored"] and "train.lr" in plan["ignored"]
    assert prepare(PROJECT, BASE["peft"]).plan.to_dict()["ignored"] == []
    for backend in REGISTRY:  # every declared key exists in the schema
        for path in unused_paths(get_backend(backend).unused_settings):
            section, _, key = path.partition(".")
            assert key.split(".")[0] in defaults_tree(TrainConfig if section == "train" else ModelConfig), path


# train.preference.*: a preference run per provider that trains preferences, and every method
PREFERENCE_BASE = {"peft": ["recipe=dpo-quickstart-tiny"],
                   "unsloth": ["recipe=dpo-quickstart-tiny", "provider=unsloth", "provider.allow_cpu=true"]}
PREFERENCE_CASES = [(backend, method, path, _alternatives(annotation, default))
                    for backend in PREFERENCE_BASE for method in ("dpo", "kto", "orpo", "simpo")
                    for path, annotation, default in _leaves(TrainConfig, "train.")
                    if path.startswith("train.preference.")]


@functools.cache
def _preference_reference(backend, method):
    return _plan([*PREFERENCE_BASE[backend], f"train.method={method}"])


@pytest.mark.parametrize("backend, method, path, values", PREFERENCE_CASES,
                         ids=[f"{b}-{m}-{p}" for b, m, p, _ in PREFERENCE_CASES])
def test_every_preference_setting_is_mapped_or_refused(backend, method, path, values):
    base = [*PREFERENCE_BASE[backend], f"train.method={method}"]
    reference = _preference_reference(backend, method)
    assert values, f"no alternative value for {path}"
    outcomes = []
    for value in values:
        try:
            outcomes.append("mapped" if _plan([*base, f"{path}={value}"]) != reference else value)
        except ConfigError as exc:
            assert path in exc.render(), exc.render()
            outcomes.append("refused")
        if outcomes[-1] in ("mapped", "refused"):
            break
    assert any(o in ("mapped", "refused") for o in outcomes), \
        f"{path} is ignored by provider={backend} with train.method={method}: {outcomes}"
