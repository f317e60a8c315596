"""Mapped or refused, per provider: every train.*, model.* and eval.* setting, changed from its default, either
changes what the provider's plan (or evaluation) would run, or is a config error naming that key. Nothing is
silently ignored. And every setting has one name: an old recipe's provider.* copy of a train.* setting is refused
with its new key."""

import functools
import json
import typing

import pytest

from ftorch.backends import REGISTRY, get_backend
from ftorch.backends.settings import unused_paths
from ftorch.cli import main
from ftorch.config.compose import find_project
from ftorch.config.schema import RENAMED, EvalConfig, ModelConfig, TrainConfig, defaults_tree, weights_only_settings
from ftorch.errors import ConfigError
from ftorch.run.lifecycle import prepare

PROJECT = find_project()
BASE = {"peft": ["recipe=quickstart-tiny"], "axolotl": ["recipe=axolotl-quickstart"],
        # 16-bit loading (provider=unsloth's default is 4bit), so that the schema's alternative 4bit is a change
        "unsloth": ["recipe=unsloth-quickstart", "provider.allow_cpu=true", "train.quantization=none"],
    "openai": ["recipe=openai-quickstart"], "together": ["recipe=together-quickstart"]}
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
        return ["3"] if int in args else ["0.5"] if float in args else ["v1"] if str in args else []
    if isinstance(default, str) and default.endswith("_KEY"):  # the name of a key's variable (set by the test)
        return ["FTORCH_TEST_KEY"]
    if isinstance(default, str) and annotation is str:
        return [f"{default}-2"]
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
    monkeypatch.setenv("TOGETHER_API_KEY", "together-test")
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
            model = {"train": TrainConfig, "model": ModelConfig, "eval": EvalConfig}[section]
            assert key.split(".")[0] in defaults_tree(model), path


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


# eval.*: the evaluation of a provider whose models stay hosted (provider=openai) talks to an API: what needs the
# weights (drift, lm-eval) is refused there; everything else reaches the evaluation, checked on the prepared config
# (the suite reads cfg.eval) and, for what only a local model can do, by the refusal
EVAL_NOT_APPLICABLE = {
    "eval.headline": "one of eval.metrics (a model check), tried with its metric in tests/eval",
    "eval.json_schema": "a file path, set by the base recipes; tests/eval/test_metrics.py",
    "eval.reference_model": "a model folder or id, loaded at evaluation time; tests/eval/test_arms_local.py",
    "eval.judge.model": "a judge model, loaded or reached at evaluation time; tests/eval/test_judging.py",
    "eval.lm_eval_include_path": "a folder path; refused with provider=openai like eval.lm_eval_tasks",
    "eval.rejected_patterns": "preference data only (a model check); tests/eval/test_report_verdict.py",
    "eval.prompted_instructions": "preference data only (a model check); tests/eval/test_report_verdict.py",
}
EVAL_CASES = [(backend, path, _alternatives(annotation, default))
              for backend in REGISTRY for path, annotation, default in _leaves(EvalConfig, "eval.")
              if path not in EVAL_NOT_APPLICABLE]


def _evaluated(overrides):
    prepared = prepare(PROJECT, overrides)
    return prepared.config.eval, prepared.plan.ignored


@pytest.mark.parametrize("backend, path, values", EVAL_CASES, ids=[f"{b}-{p}" for b, p, _ in EVAL_CASES])
def test_every_eval_setting_is_mapped_or_refused(monkeypatch, backend, path, values):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("FTORCH_TEST_KEY", "sk-test")
    assert values, f"no alternative value for {path}: add one or list it in EVAL_NOT_APPLICABLE"
    hosted = get_backend(backend).weights == "hosted"
    value = values[0]
    try:
        evaluated, ignored = _evaluated([*BASE[backend], f"{path}={value}"])
    except ConfigError as exc:
        assert path in exc.render(), exc.render()  # refused, naming the key
        return
    if path in ignored:  # set to what the provider does anyway (provider=openai: eval.drift=false)
        assert evaluated == _evaluated(BASE[backend])[0], f"{path}={value} accepted by provider={backend}, ignored"
        return
    assert not (hosted and path in weights_only_settings()), f"{path} needs weights: provider={backend} must refuse"
    reference, _ = _evaluated(BASE[backend])
    assert evaluated != reference, f"{path}={value} does not reach the evaluation of provider={backend}"


def test_an_evaluation_without_the_weights_refuses_what_needs_them(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(ConfigError) as raised:
        prepare(PROJECT, [*BASE["openai"], "eval.drift=true", "eval.lm_eval_tasks=[arc_easy]", "eval.lm_eval_limit=5"])
    text = raised.value.render()
    for key in ("eval.drift=true", "eval.lm_eval_tasks=['arc_easy']", "eval.lm_eval_limit=5"):
        assert f"{key} needs the model's weights, and provider=openai" in text
    assert "provider=peft" in text
    assert set(weights_only_settings()) <= set(prepare(PROJECT, BASE["openai"]).plan.ignored)
    assert not set(weights_only_settings()) & set(prepare(PROJECT, BASE["peft"]).plan.ignored)


# one name per setting: the provider.* copies are gone, and an old recipe or override is told the new key
OLD_KEYS = {"openai": {"provider.n_epochs=2": "train.epochs", "provider.batch_size=4": "train.batch_size",
                       "provider.seed=1": "train.seed", "provider.method=dpo": "train.method"},
            "unsloth": {"provider.load_in_4bit=false": "train.quantization"}}


@pytest.mark.parametrize("backend, old, new", [(b, o, n) for b, keys in OLD_KEYS.items() for o, n in keys.items()])
def test_an_old_provider_key_names_its_new_one(monkeypatch, tmp_path, capsys, backend, old, new):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    key, _, value = old.partition("=")
    assert key in RENAMED
    with pytest.raises(ConfigError) as raised:  # on the command line
        prepare(PROJECT, [*BASE[backend], old])
    assert f"{key}: this setting has moved" in raised.value.render() and f"use {new}" in raised.value.render()
    recipe = tmp_path / "old.yaml"  # in a recipe written for an older ftorch
    base = BASE[backend][0].partition("=")[2]
    recipe.write_text(f"# @package _global_\ndefaults:\n  - {base}\nprovider:\n  {key.partition('.')[2]}: {value}\n")
    assert main(["plan", f"paths.runs={tmp_path}", f"recipe={recipe}", *BASE[backend][1:]]) == 2
    err = capsys.readouterr().err
    assert f"{key}: this setting has moved" in err and f"use {new}" in err and str(recipe.name) in err


@pytest.mark.parametrize("overrides, hyper", [
    ([], {"n_epochs": 3, "batch_size": "auto"}),  # the recipe's train.epochs; OpenAI picks the batch size
    (["train.epochs=auto", "train.batch_size=4", "train.seed=7"], {"n_epochs": "auto", "batch_size": 4}),
])
def test_openai_reads_train_settings(monkeypatch, overrides, hyper):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    job = prepare(PROJECT, [*BASE["openai"], *overrides]).plan.inputs["job"]
    assert {k: job["method"]["supervised"]["hyperparameters"][k] for k in hyper} == hyper
    assert job.get("seed") == (7 if overrides else None)  # train.seed=null (provider=openai's default): OpenAI picks


@pytest.mark.parametrize("backend", ["peft", "axolotl", "unsloth"])
@pytest.mark.parametrize("setting", ["train.epochs=auto", "train.batch_size=auto", "train.seed=null"])
def test_only_a_provider_that_picks_accepts_auto(backend, setting):
    with pytest.raises(ConfigError) as raised:
        prepare(PROJECT, [*BASE[backend], setting])
    assert setting.partition("=")[0] in raised.value.render()
    assert f"provider={backend} needs a value" in raised.value.render()


def test_a_run_recorded_before_the_fold_reads_as_it_trained():
    from ftorch.config.schema import RunConfig, recorded_by_older_version

    old = {"provider": {"name": "openai", "n_epochs": "auto", "batch_size": 4, "seed": 9, "method": "supervised"},
           "model": {"name": "gpt-4o-mini-2024-07-18"}, "data": {"train": "train.jsonl"},
           "train": {"epochs": 3.0, "batch_size": 8, "seed": 42, "method": "lora"}}
    train = RunConfig.model_validate(recorded_by_older_version(old)).train
    assert (train.epochs, train.batch_size, train.seed, train.method) == ("auto", 4, 9, "lora")
    unsloth = {**old, "provider": {"name": "unsloth", "load_in_4bit": True}, "train": {}}
    assert RunConfig.model_validate(recorded_by_older_version(unsloth)).train.quantization == "4bit"


def test_a_run_recorded_before_eval_judge_reads():
    """Every run recorded before eval.judge holds eval.judge_model and eval.judge_rubric (as defaults at least):
    `ftorch eval` on it must still read its config; a judge it named moves to eval.judge.model."""
    from ftorch.config.schema import RunConfig, recorded_by_older_version

    base = {"provider": {"name": "peft"}, "model": {"name": "m"}, "data": {"train": "train.jsonl"}}
    unset = {**base, "eval": {"judge_model": None, "judge_rubric": "Is the answer correct?", "limit": 5}}
    evaluation = RunConfig.model_validate(recorded_by_older_version(unset)).eval
    assert evaluation.judge.model is None and evaluation.limit == 5
    named = {**base, "eval": {"judge_model": "gpt-4.1-mini", "judge_rubric": "x", "metrics": ["exact_match", "judge"],
                              "headline": "exact_match"}}
    judge = RunConfig.model_validate(recorded_by_older_version(named)).eval.judge
    assert judge.model == "gpt-4.1-mini" and judge.rubric == "correctness"
