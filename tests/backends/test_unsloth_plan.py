"""provider=unsloth before anything runs: plan without unsloth installed, the translation of train.* into
FastLanguageModel/SFTConfig arguments, and preflight refusals (exit 2, a hint, no run directory)."""

import importlib.util
import json
import sys

import pytest

from conftest import TINY
from ftorch.backends import _hf, unsloth
from ftorch.cli import main
from ftorch.errors import BackendError, ConfigError, MissingExtra, Problem

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
    ([], ("from_pretrained", "load_in_4bit"), True),
    (["provider.load_in_4bit=false"], ("from_pretrained", "load_in_4bit"), False),
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
                 "train.quantization=4bit", "provider.load_in_4bit=false", "provider.export_gguf=q9_x"])
    err = capsys.readouterr().err
    assert code == 2
    for words in ("train.num_gpus: provider=unsloth trains on one GPU", "provider=axolotl",
                  "train.fused_loss: has no effect with provider=unsloth",
                  "train.quantization: 4bit contradicts provider.load_in_4bit=false",
                  "provider.export_gguf: unknown GGUF quantization 'q9_x'", "q4_k_m"):
        assert words in err
    assert "Traceback" not in err


def test_missing_unsloth_is_exit_2_with_an_install_hint(tmp_path, capsys, monkeypatch):
    fake_find_spec(monkeypatch, present=set())
    runs = tmp_path / "runs"
    code = main(["train", f"paths.runs={runs}", *UNSLOTH])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing dependency" in err and "unsloth is not installed in this environment" in err
    assert "scripts/setup_unsloth_env.sh" in err and "pip uninstall -y torchvision" in err
    assert "Traceback" not in err
    assert not runs.exists()


def test_no_gpu_without_allow_cpu_is_exit_2_suggesting_peft(tmp_path, capsys, monkeypatch):
    fake_find_spec(monkeypatch, present={"unsloth", "unsloth_zoo"})
    monkeypatch.setattr(_hf, "cuda_available", lambda: False)
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
    from ftorch.rundir import RunDir

    run = RunDir(tmp_path)
    record = {"status": "failed", "error": {"type": "ConfigError", "hint": None, "problems": [
        {"where": "train.lora.target_modules", "message": "no module matches", "hint": "use q_proj"}]}}
    error = unsloth._child_failure(record, 2, run)
    assert isinstance(error, ConfigError) and error.exit_code == 2
    assert error.problems == [Problem("train.lora.target_modules", "no module matches", "use q_proj")]
    assert isinstance(unsloth._child_failure({"status": "failed", "error": {**record["error"], "type": "MissingExtra"}},
                                             2, run), MissingExtra)
    crashed = unsloth._child_failure(None, -9, run)
    assert isinstance(crashed, BackendError) and "exited with code -9 without a result" in crashed.render()
    assert isinstance(unsloth._child_failure({"status": "interrupted"}, 130, run), KeyboardInterrupt)
