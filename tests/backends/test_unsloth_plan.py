"""provider=unsloth before anything runs: plan without unsloth installed, the translation of train.* into
FastLanguageModel/SFTConfig arguments, and preflight refusals (exit 2, a hint, no run directory)."""

import importlib.util
import json
import sys

import pytest

from ftorch.backends.hf import loading
from ftorch.backends.unsloth import backend as unsloth
from ftorch.cli import main
from ftorch.errors import BackendError, ConfigError, MissingExtra, Problem

from conftest import TINY

UNSLOTH = ["provider=unsloth", *TINY, "eval=none"]


def fake_find_spec(monkeypatch, present: set[str]) -> None:
    """Pretend exactly `present` of unsloth/unsloth_zoo/torchvision are installed; other names stay real."""
    real = importlib.util.find_spec
    faked = {"unsloth", "unsloth_zoo", "torchvision"}

    def find_spec(name, *args, **kwargs):
        if name in faked:
            return importlib.util.spec_from_loader(name, loader=None) if name in present else None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def plan_json(capsys, *overrides: str) -> dict:
    assert main(["plan", "--json", *UNSLOTH, *overrides]) == 0
    return json.loads(capsys.readouterr().out)["plan"]


def test_plan_needs_no_unsloth_and_imports_nothing_heavy(tmp_path, capsys, monkeypatch):
    fake_find_spec(monkeypatch, present=set())
    before = set(sys.modules)
    assert main(["plan", f"paths.runs={tmp_path}", *UNSLOTH]) == 0
    out = capsys.readouterr().out
    assert "provider=unsloth" in out
    assert "4-bit (bitsandbytes NF4, QLoRA)" in out and "Unsloth's PEFT wrapper" in out
    assert "refused (provider.allow_cpu=false)" in out
    imported = {name.split(".")[0] for name in set(sys.modules) - before}
    assert not imported & {"unsloth", "unsloth_zoo", "torch", "trl", "peft"}
    assert list(tmp_path.iterdir()) == []


def test_plan_notes_describe_the_cpu_fallback(capsys):
    plan = plan_json(capsys, "provider.allow_cpu=true", "train.lora.dropout=0.1")
    notes = "\n".join(plan["notes"])
    assert "Unsloth's CPU fallback" in notes and "4-bit off" in notes and "packing off" in notes
    assert "dropout 0" in notes  # Unsloth's fast LoRA path


@pytest.mark.parametrize("overrides,path,expected", [
    ([], ("from_pretrained", "load_in_4bit"), True),  # provider=unsloth's default: train.quantization=4bit
    (["train.quantization=none"], ("from_pretrained", "load_in_4bit"), False),
    (["train.max_length=333"], ("from_pretrained", "max_seq_length"), 333),
    (["train.lora.r=4"], ("get_peft_model", "r"), 4),
    (["train.lora.alpha=7"], ("get_peft_model", "lora_alpha"), 7),
    (["train.lora.dropout=0.0"], ("get_peft_model", "lora_dropout"), 0.0),
    (["train.lora.target_modules=[q_proj]"], ("get_peft_model", "target_modules"), ["q_proj"]),
    (["train.seed=7"], ("get_peft_model", "random_state"), 7),
    (["train.gradient_checkpointing=true"], ("get_peft_model", "use_gradient_checkpointing"), "unsloth"),
    (["train.gradient_checkpointing=false"], ("get_peft_model", "use_gradient_checkpointing"), False),
    ([], ("get_peft_model", "use_gradient_checkpointing"), "auto"),  # decided with the device
    ([], ("sft", "use_liger_kernel"), False),  # Unsloth brings its own kernels
    (["train.lr=1e-3"], ("sft", "learning_rate"), 1e-3),
    (["train.max_steps=5"], ("sft", "max_steps"), 5),
    ([], ("sft", "assistant_only_loss"), True),
    ([], ("sft", "gradient_checkpointing"), False),  # get_peft_model owns checkpointing
    (["provider.export_gguf=q4_k_m"], ("exports", "gguf"), "q4_k_m"),
])
def test_translation(capsys, overrides, path, expected):
    inputs = plan_json(capsys, *overrides)["inputs"]
    assert inputs[path[0]][path[1]] == expected
    assert "activation_checkpointing" not in inputs["sft"]


@pytest.mark.parametrize("setting,device,expected", [("auto", "cuda", "unsloth"), ("auto", "cpu", False),
                                                      (False, "cuda", False), ("unsloth", "cpu", "unsloth")])
def test_checkpointing_auto_is_decided_with_the_device(setting, device, expected):
    inputs = {"get_peft_model": {"r": 8, "use_gradient_checkpointing": setting}, "sft": {}}
    resolved = unsloth._for_device(inputs, device)
    assert resolved["get_peft_model"] == {"r": 8, "use_gradient_checkpointing": expected}
    assert inputs["get_peft_model"]["use_gradient_checkpointing"] == setting  # the plan is not changed


def test_impossible_settings_are_all_reported(tmp_path, capsys):
    code = main(["plan", f"paths.runs={tmp_path}", *UNSLOTH, "train.num_gpus=2", "train.fused_loss=on",
                 "provider.export_gguf=q9_x"])
    err = capsys.readouterr().err
    assert code == 2
    for words in ("train.num_gpus: provider=unsloth trains on one GPU", "provider=axolotl",
                  "train.fused_loss: has no effect with provider=unsloth",
                  "provider.export_gguf: unknown GGUF quantization 'q9_x'", "q4_k_m"):
        assert words in err
    assert "Traceback" not in err


def test_an_old_recipe_with_load_in_4bit_is_told_the_new_key(tmp_path, capsys):
    recipe = tmp_path / "old.yaml"
    recipe.write_text("# @package _global_\ndefaults:\n  - quickstart-tiny\n  - override /provider: unsloth\n"
                      "provider:\n  load_in_4bit: false\n")
    code = main(["plan", f"paths.runs={tmp_path}", f"recipe={recipe}", "eval=none"])
    err = capsys.readouterr().err
    assert code == 2
    assert "provider.load_in_4bit: this setting has moved" in err and "use train.quantization" in err
    code = main(["plan", f"paths.runs={tmp_path}", *UNSLOTH, "provider.load_in_4bit=false"])  # on the command line
    err = capsys.readouterr().err
    assert code == 2 and "provider.load_in_4bit" in err and "use train.quantization" in err


def test_missing_unsloth_is_exit_2_with_an_install_hint(tmp_path, capsys, monkeypatch):
    fake_find_spec(monkeypatch, present=set())
    runs = tmp_path / "runs"
    code = main(["train", f"paths.runs={runs}", *UNSLOTH])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing dependency" in err and "unsloth is not installed in this environment" in err
    assert "ftorch setup unsloth" in err and "pip uninstall -y torchvision" in err
    assert "Traceback" not in err
    assert not runs.exists()


def test_no_gpu_without_allow_cpu_is_exit_2_suggesting_peft(tmp_path, capsys, monkeypatch):
    fake_find_spec(monkeypatch, present={"unsloth", "unsloth_zoo"})
    monkeypatch.setattr(loading, "cuda_available", lambda: False)
    runs = tmp_path / "runs"
    code = main(["train", f"paths.runs={runs}", *UNSLOTH])
    err = capsys.readouterr().err
    assert code == 2
    assert "provider=unsloth: needs a CUDA GPU" in err
    assert "use provider=peft" in err and "provider.allow_cpu=true" in err
    assert not runs.exists()


def test_broken_torchvision_is_caught_before_import_unsloth(tmp_path, capsys, monkeypatch):
    fake_find_spec(monkeypatch, present={"unsloth", "unsloth_zoo", "torchvision"})
    monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` now raises
    runs = tmp_path / "runs"
    code = main(["train", f"paths.runs={runs}", *UNSLOTH, "provider.allow_cpu=true"])
    err = capsys.readouterr().err
    assert code == 2
    assert "torchvision is installed but does not load" in err and "-m pip uninstall -y torchvision" in err
    assert not runs.exists()


def test_child_errors_come_back_as_the_same_error(tmp_path):
    from ftorch.backends import child
    from ftorch.run.rundir import RunDir

    run = RunDir(tmp_path)

    def failure(record, code):
        with pytest.raises(BaseException) as info:
            child.outcome(child.Ended(code, record), where="provider=unsloth", log=run.log)
        return info.value

    record = {"status": "failed", "error": {"type": "ConfigError", "hint": None, "problems": [
        {"where": "train.lora.target_modules", "message": "no module matches", "hint": "use q_proj"}]}}
    error = failure(record, 2)
    assert isinstance(error, ConfigError) and error.exit_code == 2
    assert error.problems == [Problem("train.lora.target_modules", "no module matches", "use q_proj")]
    assert isinstance(failure({"status": "failed", "error": {**record["error"], "type": "MissingExtra"}}, 2),
                      MissingExtra)
    crashed = failure(None, -9)
    assert isinstance(crashed, BackendError) and "exited with code -9 without a result" in crashed.render()
    assert isinstance(failure({"status": "interrupted"}, 130), KeyboardInterrupt)


DPO = ["recipe=dpo-quickstart-tiny", "provider=unsloth", *TINY[1:], "eval=none"]


def dpo_plan(capsys, *overrides: str, model: tuple[str, ...] = tuple(TINY[1:])) -> dict:
    assert main(["plan", "--json", *DPO[:2], *model, *DPO[-1:], *overrides]) == 0
    return json.loads(capsys.readouterr().out)["plan"]


def test_preference_plan_shows_the_method_its_settings_and_both_memory_figures(capsys, monkeypatch):
    fake_find_spec(monkeypatch, present=set())
    before = set(sys.modules)
    plan = dpo_plan(capsys, "train.preference.beta=0.3", model=())  # the recipe's tiny model: distinct figures
    notes = "\n".join(plan["notes"])
    assert "method: dpo through trl.DPOTrainer, LoRA (patched by Unsloth on a GPU" in notes
    assert "preference settings: beta=0.3, loss_type=sigmoid" in notes
    assert "TRL's frozen copy of the new LoRA" in notes and "no second model" in notes
    assert "memory estimate:" in notes and "for a CUDA GPU with the weights Unsloth loads there" in notes
    estimates = plan["estimates"]
    assert 0 < estimates["memory_gib"] < estimates["memory_gib_with_reference_copy"]
    assert estimates["train_pairs"] == 240
    assert plan["inputs"]["method"] == "dpo" and "sft" not in plan["inputs"]
    assert plan["inputs"]["get_peft_model"]["r"] == 16  # the model and its LoRA as for SFT
    imported = {name.split(".")[0] for name in set(sys.modules) - before}
    assert not imported & {"unsloth", "torch", "trl", "peft", "transformers"}


def test_reference_free_and_precomputed_reference_say_so(capsys):
    orpo = dpo_plan(capsys, "train.method=orpo")
    assert "reference model: none (orpo is reference-free)" in orpo["notes"]
    assert "memory_gib_with_reference_copy" not in orpo["estimates"]
    precomputed = dpo_plan(capsys, "train.preference.reference=precomputed", model=())
    assert any("log-probs computed once before training" in n for n in precomputed["notes"])
    assert precomputed["estimates"]["memory_gib"] < dpo_plan(capsys, model=())["estimates"]["memory_gib"]


@pytest.mark.parametrize("overrides,expected", [
    (["train.preference.beta=0.3", "train.preference.loss_type=robust", "train.preference.label_smoothing=0.1"],
     {"beta": 0.3, "loss_type": ["robust"], "label_smoothing": 0.1, "precompute_ref_log_probs": False}),
    (["train.preference.reference=precomputed"], {"precompute_ref_log_probs": True}),
    (["train.preference.sft_weight=0.5"], {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}),
    (["train.method=kto", "train.preference.reference=precomputed"], {"precompute_ref_log_probs": True}),
    (["train.method=simpo", "train.preference.simpo_gamma=1.0", "train.preference.max_completion_length=64"],
     {"loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": 1.0, "max_completion_length": 64}),
    (["train.method=orpo", "train.preference.beta=0.2"], {"beta": 0.2, "max_completion_length": None}),
    (["train.lr=1e-3", "train.max_length=200"], {"learning_rate": 1e-3, "max_length": 200}),
    # Unsloth's get_peft_model owns checkpointing, and its kernels replace Liger's
    (["train.gradient_checkpointing=true"], {"gradient_checkpointing": False, "use_liger_kernel": False}),
])
def test_preference_translation(capsys, overrides, expected):
    inputs = dpo_plan(capsys, *overrides)["inputs"]
    args = inputs["preference"]
    assert {k: args[k] for k in expected} == expected
    assert not {"packing", "padding_free", "assistant_only_loss", "activation_checkpointing"} & set(args)


@pytest.mark.parametrize("overrides,key", [
    (["train.packing=true"], "train.packing"),
    (["train.preference.simpo_gamma=1.0"], "train.preference.simpo_gamma"),
    (["train.method=orpo", "train.preference.loss_type=ipo"], "train.preference.loss_type"),
    (["train.preference.label_smoothing=0.1"], "train.preference.label_smoothing"),
    (["train.assistant_only_loss=false"], "train.assistant_only_loss"),
    (["train.allow_truncation=true"], "train.allow_truncation"),
    (["model.adapter=/a/run"], "model.adapter"),
])
def test_preference_settings_that_do_not_apply_are_refused(capsys, overrides, key):
    assert main(["plan", *DPO, *overrides]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err


def test_unsloth_translates_for_itself(capsys, monkeypatch):
    """Its own translation, not an edit of provider=peft's: peft's translators may change (or break) freely."""
    from ftorch.backends.peft import backend as peft

    def broken(*args, **kwargs):
        raise AssertionError("provider=unsloth used provider=peft's translation")

    for name in ("_sft_args", "_lora_args", "_choose"):
        monkeypatch.setattr(peft, name, broken)
    sft = plan_json(capsys, "train.lora.r=4", "train.lora.modules_to_save=[lm_head]")["inputs"]
    assert sft["get_peft_model"] == {"r": 4, "lora_alpha": 32, "lora_dropout": 0.05,
                                     "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                        "up_proj", "down_proj"],
                                     "modules_to_save": ["lm_head"], "bias": "none", "random_state": 42,
                                     "use_gradient_checkpointing": "auto"}
    assert "task_type" not in sft["get_peft_model"]  # a LoraConfig key; get_peft_model does not take it
    assert dpo_plan(capsys)["inputs"]["preference"]["beta"] == 0.1


def test_the_trainer_settings_both_providers_share_come_from_one_place(capsys):
    """The keys peft's and unsloth's TRL configs share are hf_translate's: the same values for the same config."""
    from ftorch.backends.hf import translate as hf_translate
    from ftorch.config.compose import find_project
    from ftorch.run.lifecycle import prepare

    changed = ["train.lr=3e-4", "train.save_steps=7", "train.warmup_ratio=0.1"]
    unsloth_sft = plan_json(capsys, *changed)["inputs"]["sft"]
    assert main(["plan", "--json", *TINY, "eval=none", *changed]) == 0
    peft_sft = json.loads(capsys.readouterr().out)["plan"]["inputs"]["sft"]
    cfg = prepare(find_project(), [*TINY, "eval=none", *changed]).plan.config
    shared = hf_translate.trainer_args(cfg, cfg.train.batch_size, cfg.train.grad_accum)
    assert {k: unsloth_sft[k] for k in shared} == shared == {k: peft_sft[k] for k in shared}
    assert shared["learning_rate"] == 3e-4 and shared["save_steps"] == 7 and shared["warmup_steps"] == 0.1
