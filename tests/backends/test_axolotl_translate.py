"""provider=axolotl without Axolotl: the translation of a RunConfig into axolotl.yaml, the plan, preflight's
refusal when the environment is missing, the mapping of Axolotl's errors back to ftorch keys, the parsing of
the child's output, stopping a child, and the environment setup's steps (subprocesses faked)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftorch.backends.axolotl import backend as axolotl
from ftorch.backends.axolotl import config as axolotl_config
from ftorch.cli import main
from ftorch.config.schema import DataConfig, LoraSettings, ModelConfig, PreferenceSettings, TrainConfig
from ftorch.errors import ConfigError
from ftorch.run.rundir import RunDir

from conftest import TINY

AXOLOTL = ["provider=axolotl", *TINY, "eval=none"]


def plan_json(capsys, *overrides: str) -> dict:
    assert main(["plan", "--json", *AXOLOTL, *overrides]) == 0
    return json.loads(capsys.readouterr().out)["plan"]


def dig(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree[int(part)] if isinstance(tree, list) else tree[part]
    return tree


@pytest.mark.parametrize("overrides,expected", [
    ([], {"adapter": "lora", "load_in_4bit": False, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
          "chat_template": "tokenizer_default", "train_on_inputs": False, "datasets.0.type": "chat_template",
          "datasets.0.field_messages": "messages", "datasets.0.roles_to_train": ["assistant"],
          "datasets.0.message_property_mappings": {"role": "role", "content": "content"},
          "datasets.0.train_on_eos": "turn", "output_dir": "<run dir>/checkpoints", "val_set_size": 0.0,
          "eval_strategy": "no", "bf16": "auto", "fp16": False, "save_strategy": "steps"}),
    (["train.lora.r=4", "train.lora.alpha=8", "train.lora.dropout=0.0", "train.lora.target_modules=[q_proj]",
      "train.lora.modules_to_save=[lm_head]"],
     {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "lora_target_modules": ["q_proj"],
      "lora_modules_to_save": ["lm_head"]}),
    (["train.quantization=4bit"], {"adapter": "qlora", "load_in_4bit": True}),
    (["train.packing=true"], {"sample_packing": True, "pad_to_sequence_len": True, "attn_implementation": "sdpa"}),
    (["train.max_length=333", "train.batch_size=3", "train.grad_accum=5", "train.epochs=2", "train.max_steps=7",
      "train.lr=0.001", "train.optimizer=adafactor", "train.scheduler=constant_with_warmup", "train.warmup_ratio=0.2",
      "train.weight_decay=0.1", "train.max_grad_norm=0.5", "train.seed=3", "train.gradient_checkpointing=true",
      "train.logging_steps=2", "train.save_steps=9", "train.save_total_limit=1"],
     {"sequence_len": 333, "micro_batch_size": 3, "eval_batch_size": 3, "gradient_accumulation_steps": 5,
      "num_epochs": 2.0, "max_steps": 7, "learning_rate": 0.001, "optimizer": "adafactor",
      "lr_scheduler": "constant_with_warmup", "warmup_ratio": 0.2, "weight_decay": 0.1, "max_grad_norm": 0.5,
      "seed": 3, "gradient_checkpointing": True, "logging_steps": 2, "save_steps": 9, "save_total_limit": 1}),
    (["train.assistant_only_loss=false"], {"train_on_inputs": True, "datasets.0.train_on_eos": "all",
                                           "datasets.0.roles_to_train": ["system", "user", "assistant", "tool"]}),
    (["train.precision=bf16"], {"bf16": True, "fp16": False}),
    (["train.precision=fp16"], {"bf16": False, "fp16": True}),
    (["train.precision=fp32", "model.dtype=bfloat16"], {"bf16": False, "fp16": False, "bfloat16": True}),
    (["train.num_gpus=2", "provider.distributed=deepspeed_zero2"], {"deepspeed.zero_optimization.stage": 2}),
    (["train.num_gpus=2", "provider.distributed=deepspeed_zero3"], {"deepspeed.zero_optimization.stage": 3}),
    (["train.num_gpus=8", "provider.distributed=fsdp"], {"fsdp_version": 2,
                                                          "fsdp_config.auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}),
    (["provider.liger=true"], {"plugins": ["axolotl.integrations.liger.LigerPlugin"], "liger_rms_norm": True,
                               "liger_glu_activation": True, "liger_fused_linear_cross_entropy": True}),
    (["provider.liger=true", "train.fused_loss=off"], {"liger_fused_linear_cross_entropy": False}),
    (["+provider.axolotl.lora_mlp_kernel=true", "train.lr=0.1"], {"learning_rate": 0.1, "lora_mlp_kernel": True}),
])
def test_translation(capsys, overrides, expected):
    config = plan_json(capsys, *overrides)["inputs"]["axolotl_yaml"]
    assert {key: dig(config, key) for key in expected} == expected


@pytest.mark.parametrize("overrides,absent", [
    ([], ["max_steps", "deepspeed", "fsdp_config", "plugins", "test_datasets",
          "revision_of_model", "resume_from_checkpoint", "lora_mlp_kernel"]),
    (["provider.distributed=deepspeed_zero1"], ["deepspeed"]),  # one GPU: the preset has no effect
    (["train.num_gpus=2"], ["deepspeed", "fsdp_version"]),  # several GPUs, no preset: plain DDP
])
def test_keys_left_out(capsys, overrides, absent):
    config = plan_json(capsys, *overrides)["inputs"]["axolotl_yaml"]
    assert not set(absent) & set(config)


def test_launch_command_uses_accelerate_for_several_gpus(capsys):
    assert plan_json(capsys)["inputs"]["launch"] == ["<python>", "-m", "axolotl.cli.train", "axolotl.yaml"]
    launch = plan_json(capsys, "train.num_gpus=4")["inputs"]["launch"]
    assert launch[:5] == ["<python>", "-m", "accelerate.commands.launch", "--num_processes", "4"]


def test_validation_split_becomes_test_datasets(chat_jsonl, capsys):
    from conftest import chat

    val = chat_jsonl([chat(f"q{i}", f"a{i}") for i in range(12)], name="val.jsonl")
    config = plan_json(capsys, f"data.validation={val}")["inputs"]["axolotl_yaml"]
    assert config["test_datasets"][0]["path"] == str(val.resolve())
    assert config["test_datasets"][0]["type"] == "chat_template" and config["eval_strategy"] == "epoch"
    assert config["val_set_size"] == 0.0


def test_run_time_arguments(tmp_path):
    from ftorch.config.providers import AxolotlProvider
    from ftorch.config.schema import RunConfig

    cfg = RunConfig(provider=AxolotlProvider(), model=ModelConfig(name="m"), data=DataConfig(train="t.jsonl"))
    out = axolotl_config.translate(cfg, str(tmp_path / "checkpoints"), {"train": "/d/t.jsonl"}, base_model="/models/m",
                                  device="cpu", resume_from="/r/checkpoint-4")
    assert out["base_model"] == "/models/m" and out["resume_from_checkpoint"] == "/r/checkpoint-4"
    assert out["dataset_prepared_path"] == str(tmp_path / "axolotl_prepared")
    assert all(out[f"lora_{k}_kernel"] is False for k in ("mlp", "qkv", "o", "embedding"))  # they need CUDA
    assert "lora_mlp_kernel" not in axolotl_config.translate(cfg, "o", {"train": "t"}, device="cuda")


def test_every_setting_is_mapped_or_listed_as_ignored():
    used = set(axolotl_config.SOURCES.values()) | set(axolotl_config.IGNORED)
    fields = {f"train.{n}" for n in TrainConfig.model_fields if n not in ("lora", "preference")}
    fields |= {f"train.lora.{n}" for n in LoraSettings.model_fields}
    fields |= {f"train.preference.{n}" for n in PreferenceSettings.model_fields}
    fields |= {f"model.{n}" for n in ModelConfig.model_fields if n != "tiny"}  # tiny: model_path builds it
    fields |= {f"data.{n}" for n in DataConfig.model_fields}
    assert fields - used == set()


def test_plan_lists_ignored_fields_and_is_pure(tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("plan must not start a process")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    before = set(sys.modules)
    notes = "\n".join(plan_json(capsys, "provider.distributed=fsdp", "+provider.axolotl.lora_mlp_kernel=true")["notes"])
    assert "ignored: train.method" in notes and "ignored: data.test" in notes and "ignored: train.num_gpus" in notes
    assert "ignored: provider.distributed=fsdp: train.num_gpus=1" in notes
    assert "passthrough: provider.axolotl.lora_mlp_kernel" in notes
    assert not {n.split(".")[0] for n in set(sys.modules) - before} & {"axolotl", "torch", "transformers"}


def test_plan_shows_the_generated_yaml(tmp_path, capsys):
    assert main(["plan", f"paths.runs={tmp_path}", *AXOLOTL]) == 0
    out = capsys.readouterr().out
    assert "backend input (axolotl)" in out and "axolotl_yaml:" in out
    for line in ("type: chat_template", "adapter: lora", "chat_template: tokenizer_default", "lora_r: 16"):
        assert line in out
    assert list(tmp_path.iterdir()) == []


def test_fused_loss_on_without_liger_is_refused(capsys):
    assert main(["plan", *AXOLOTL, "train.fused_loss=on"]) == 2
    err = capsys.readouterr().err
    assert "train.fused_loss: train.fused_loss=on has no effect with provider=axolotl" in err
    assert "provider.liger=true" in err


def test_missing_environment_exits_2_with_the_setup_command(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FTORCH_AXOLOTL_PYTHON", raising=False)
    monkeypatch.setattr(axolotl, "default_python", lambda: tmp_path / ".venv-axolotl" / "bin" / "python")
    runs = tmp_path / "runs"
    assert main(["train", *AXOLOTL, f"paths.runs={runs}"]) == 2
    err = capsys.readouterr().err
    assert "missing dependency" in err
    assert f"the Axolotl environment is missing ({tmp_path / '.venv-axolotl'})" in err
    assert "set it up once with: ftorch setup axolotl" in err
    assert not runs.exists()  # refused before a run directory was made


def test_missing_provider_python_names_the_setting(tmp_path, capsys):
    assert main(["train", *AXOLOTL, f"paths.runs={tmp_path}", "provider.python=/nowhere/bin/python"]) == 2
    err = capsys.readouterr().err
    assert "provider.python: no Python interpreter at /nowhere/bin/python" in err


@pytest.mark.parametrize("key,expected", [
    ("learning_rate", "train.lr"),
    ("micro_batch_size", "train.batch_size"),
    ("datasets.0.roles_to_train", "train.assistant_only_loss"),
    ("datasets.0.type", "data.train"),
    ("test_datasets.0.path", "data.validation"),
    ("deepspeed.zero_optimization", "provider.distributed"),
    ("liger_rope", "provider.liger"),
    ("lora_target_modules", "train.lora.target_modules"),
    ("wandb_project", "provider.axolotl.wandb_project"),  # set through the passthrough below
    ("special_tokens", "axolotl.yaml:special_tokens"),
    ("", "axolotl.yaml"),
])
def test_axolotl_errors_map_back_to_ftorch_keys(key, expected):
    assert axolotl_config.ftorch_key(key, {"wandb_project": "x"}) == expected


def test_validate_turns_the_child_report_into_one_config_error(tmp_path, monkeypatch):
    report = {"ok": False, "errors": [{"key": "learning_rate", "message": "Input should be a valid number"}],
              "unknown_keys": ["lora_rr"], "suggestions": {"lora_rr": "lora_r"}}
    done = subprocess.CompletedProcess([], 0, stdout="noise\n" + json.dumps(report) + "\n", stderr="")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: done)
    with pytest.raises(ConfigError) as info:
        axolotl.validate("python", tmp_path / "axolotl.yaml", {"lora_rr": 8})
    text = info.value.render()
    assert "train.lr: Input should be a valid number (Axolotl key 'learning_rate' in axolotl.yaml)" in text
    assert "provider.axolotl.lora_rr: Axolotl has no key 'lora_rr'; it would ignore it silently" in text
    assert "did you mean 'lora_r'?" in text


LOGS = ("\r 20%|##        | 1/5 [00:00<00:00,  7.18it/s]\r          \r{'loss': '6.765', 'grad_norm': '2.606', "
        "'learning_rate': '0.01', 'ppl': '867.3', 'tokens/train_per_sec_per_gpu': '8573', 'tokens/total': 1536, "
        "'epoch': '0.03333'}\n[INFO] saving\n{'loss': '5.5', 'learning_rate': '0.005', 'epoch': '0.06'}\n"
        "{'eval_loss': '5.1', 'eval_runtime': '0.7', 'epoch': '0.06'}\n"
        "{'train_runtime': '11.33', 'train_loss': '5.41', 'epoch': '0.06'}\n 100%|####| 5/5\r 100%|####| 5/5 done")


def test_child_output_becomes_metrics_rows_and_a_clean_log(tmp_path, capsys):
    run = RunDir(tmp_path)
    with run.log.open("a") as log:
        output = axolotl._Output(run, log, logging_steps=2, start_step=10)
        data = LOGS.encode()
        for start in range(0, len(data), 7):  # arbitrary chunk boundaries
            output.feed(data[start:start + 7])
        output.feed(b"", final=True)
    assert capsys.readouterr().out == LOGS
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in rows] == [("train", 12), ("train", 14), ("eval", 14), ("summary", 14)]
    assert rows[0]["loss"] == 6.765 and rows[0]["lr"] == 0.01 and rows[0]["tokens_per_s"] == 8573.0
    assert rows[0]["tokens"] == 1536 and rows[2]["eval_loss"] == 5.1 and rows[3]["train_runtime"] == 11.33
    lines = run.log.read_text().splitlines()
    assert lines[0].startswith("{'loss': '6.765'") and lines[1] == "[INFO] saving"
    assert lines[-1] == "100%|####| 5/5 done" and list(output.tail)[-1] == lines[-1]


STUBBORN = ("import signal, sys, time\nsignal.signal(signal.SIGINT, lambda *a: print('ignoring SIGINT', flush=True))\n"
            "print('ready', flush=True)\ntime.sleep(60)\n")


def test_a_child_that_ignores_sigint_is_terminated(tmp_path, monkeypatch, capsys):
    from ftorch.backends import child as supervision

    monkeypatch.setattr(supervision, "STOP_POLICY", ((signal.SIGINT, 0.5), (signal.SIGTERM, 5.0),
                                                     (signal.SIGKILL, 5.0)))
    run = RunDir(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
    assert child.stdout.readline() == b"ready\n"
    started = time.monotonic()
    with run.log.open("a") as log:
        supervision.stop(child, run, "axolotl", axolotl._Output(run, log, 1, 0).feed)
    assert child.poll() == -signal.SIGTERM and time.monotonic() - started < 5
    text = run.log.read_text()
    assert "with SIGINT" in text and "ignoring SIGINT" in text and "with SIGTERM" in text and "SIGKILL" not in text
    child.stdout.close()


def test_stream_returns_the_exit_code_and_last_lines(tmp_path, capsys):
    run = RunDir(tmp_path)
    script = "print(\"{'loss': '1.5', 'learning_rate': '0.1', 'epoch': '1'}\"); print('boom'); raise SystemExit(3)"
    ended, tail = axolotl.stream([sys.executable, "-c", script], {}, run, logging_steps=1, start_step=0)
    code = ended.code
    assert code == 3 and tail[-1] == "boom"
    assert json.loads(run.metrics.read_text())["loss"] == 1.5


def test_setup_runs_the_pinned_steps_once(tmp_path, monkeypatch, capsys):
    from ftorch import setup_envs

    commands: list[list[str]] = []

    def fake_call(command):
        commands.append(command)
        if command[1:3] == ["-m", "venv"]:
            python = Path(command[3]) / "bin" / "python"
            python.parent.mkdir(parents=True)
            python.write_text("")
        return 0

    monkeypatch.setattr(subprocess, "call", fake_call)
    python = setup_envs.setup_axolotl(tmp_path, python="/usr/bin/python3.11")
    assert python == tmp_path / ".venv-axolotl" / "bin" / "python"
    assert commands[0] == ["/usr/bin/python3.11", "-m", "venv", str(tmp_path / ".venv-axolotl")]
    assert commands[2][-1] == "torch==2.13.0"
    assert commands[3][-3:] == ["-c", str(tmp_path / ".venv-axolotl" / "ftorch-constraints.txt"), "axolotl==0.19.0"]
    assert (tmp_path / ".venv-axolotl" / "ftorch-constraints.txt").read_text() == "torch==2.13.0\n"
    assert setup_envs.setup_axolotl(tmp_path) == python and len(commands) == 4  # the stamp: nothing to do
    assert "already set up" in capsys.readouterr().err


def test_setup_failure_says_which_step(tmp_path, monkeypatch):
    from ftorch import setup_envs
    from ftorch.errors import BackendError

    monkeypatch.setattr(subprocess, "call", lambda command: 1)
    with pytest.raises(BackendError) as info:
        setup_envs.setup_axolotl(tmp_path)
    assert "step 1 (creating the environment" in info.value.render() and "--force" in info.value.render()


def test_setup_pins_everything_with_the_projects_lock_file(tmp_path, monkeypatch, capsys):
    from ftorch import setup_envs

    commands: list[list[str]] = []

    def fake_call(command):
        commands.append(command)
        if command[1:3] == ["-m", "venv"]:
            (Path(command[3]) / "bin").mkdir(parents=True)
            (Path(command[3]) / "bin" / "python").write_text("")
        return 0

    monkeypatch.setattr(subprocess, "call", fake_call)
    lock = tmp_path / "constraints-axolotl.txt"
    lock.write_text("peft==0.20.0\n")
    setup_envs.setup_axolotl(tmp_path)
    assert commands[-1][-3:] == ["-c", str(lock), "axolotl==0.19.0"]
    lock.write_text("peft==0.20.1\n")  # a changed lock is a reason to install again (into the same venv)
    setup_envs.setup_axolotl(tmp_path)
    assert len(commands) == 7 and "(unfinished, or its pins changed)" in capsys.readouterr().err


@pytest.mark.parametrize("passthrough, ftorch_key", [("learning_rate=1e-3", "train.lr"),
                                                     ("lora_r=64", "train.lora.r"),
                                                     ("deepspeed=x.json", "provider.distributed")])
def test_a_passthrough_of_a_mapped_key_is_refused(capsys, passthrough, ftorch_key):
    """train.lr=5e-5 +provider.axolotl.learning_rate=1e-3 used to train at 1e-3, silently."""
    assert main(["plan", *AXOLOTL, "train.lr=5e-5", f"+provider.axolotl.{passthrough}"]) == 2
    err = capsys.readouterr().err
    key = passthrough.partition("=")[0]
    assert f"provider.axolotl.{key}: ftorch sets Axolotl's '{key}' from {ftorch_key}" in err
    assert f"set {ftorch_key} instead" in err and "Traceback" not in err


# --- preference training: train.method and train.preference.* -> Axolotl's rl: keys -------------------------
DPO = ["recipe=dpo-quickstart-tiny", "provider=axolotl", *TINY[1:], "eval=none"]


def dpo_yaml(capsys, *overrides: str) -> dict:
    assert main(["plan", "--json", *DPO, *overrides]) == 0
    return json.loads(capsys.readouterr().out)["plan"]["inputs"]["axolotl_yaml"]


def dpo_refused(capsys, *overrides: str) -> str:
    assert main(["plan", *DPO, *overrides]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("overrides,expected", [
    ([], {"rl": "dpo", "rl_beta": 0.1, "dpo_loss_type": ["sigmoid"], "sample_packing": False,
          "datasets.0.type": "chat_template.default", "datasets.0.field_messages": "prompt",
          "datasets.0.field_chosen": "chosen", "datasets.0.field_rejected": "rejected",
          "datasets.0.path": "<run dir>/axolotl_data/train.jsonl", "chat_template": "tokenizer_default",
          "learning_rate": 0.005, "max_steps": 8, "warmup_ratio": 0.03}),
    (["train.preference.beta=0.3", "train.preference.loss_type=hinge"], {"rl_beta": 0.3, "dpo_loss_type": ["hinge"]}),
    (["train.preference.loss_type=robust", "train.preference.label_smoothing=0.2"],
     {"dpo_loss_type": ["robust"], "dpo_label_smoothing": 0.2}),
    (["train.preference.sft_weight=0.5"], {"dpo_loss_type": ["sigmoid", "sft"], "dpo_loss_weights": [1.0, 0.5]}),
    (["train.preference.reference=precomputed"], {"precompute_ref_log_probs": True}),
    (["train.method=orpo", "train.preference.beta=0.2"], {"rl": "orpo", "rl_beta": 0.2,
                                                          "datasets.0.type": "chat_template.argilla"}),
    (["train.method=simpo", "train.preference.simpo_gamma=1.0", "train.warmup_ratio=0.25"],
     {"rl": "simpo", "simpo_gamma": 1.0, "cpo_alpha": 0.0, "warmup_steps": 2}),  # ceil(0.25 * 8 steps)
    (["provider.liger=true"], {"liger_rms_norm": True, "liger_fused_linear_cross_entropy": False}),
])
def test_preference_translation(capsys, overrides, expected):
    config = dpo_yaml(capsys, *overrides)
    assert {key: dig(config, key) for key in expected} == expected


@pytest.mark.parametrize("overrides,absent", [
    ([], ["train_on_inputs", "dpo_loss_weights", "dpo_label_smoothing", "precompute_ref_log_probs", "cpo_alpha",
          "simpo_gamma", "warmup_steps", "test_datasets", "pad_to_sequence_len"]),
    (["train.method=simpo"], ["warmup_ratio", "dpo_loss_type"]),
    (["train.method=orpo"], ["dpo_loss_type", "simpo_gamma"]),
])
def test_preference_keys_left_out(capsys, overrides, absent):
    assert not set(absent) & set(dpo_yaml(capsys, *overrides))


def test_sft_has_no_rl_keys(capsys):
    assert not {"rl", "rl_beta", "dpo_loss_type"} & set(plan_json(capsys)["inputs"]["axolotl_yaml"])


def test_preference_validation_split_is_rewritten_too(capsys):
    from ftorch.config.compose import find_project

    val = find_project().root / "datasets" / "quickstart-dpo" / "test.jsonl"
    config = dpo_yaml(capsys, f"data.validation={val}", "data.test=null")
    assert config["test_datasets"][0]["path"] == "<run dir>/axolotl_data/validation.jsonl"
    assert config["test_datasets"][0]["type"] == "chat_template.default" and config["eval_strategy"] == "epoch"


# every train.preference.* setting, away from its default on the method it applies to: mapped or refused
PREFERENCE_CASES = [("dpo", "beta=0.3"), ("dpo", "loss_type=ipo"), ("dpo", "reference=precomputed"),
                    ("dpo", "sft_weight=0.5"), ("simpo", "simpo_gamma=1.0"), ("orpo", "max_completion_length=64"),
                    ("simpo", "max_completion_length=64"), ("orpo", "beta=0.3"), ("simpo", "beta=0.3")]


@pytest.mark.parametrize("method, setting", PREFERENCE_CASES)
def test_every_preference_setting_is_mapped_or_refused(capsys, method, setting):
    reference = dpo_yaml(capsys, f"train.method={method}")
    key = "train.preference." + setting.partition("=")[0]
    if main(["plan", "--json", *DPO, f"train.method={method}", f"{key}={setting.partition('=')[2]}"]) == 0:
        assert json.loads(capsys.readouterr().out)["plan"]["inputs"]["axolotl_yaml"] != reference
    else:
        assert key in capsys.readouterr().err


def test_label_smoothing_is_mapped_with_the_robust_loss(capsys):
    assert dpo_yaml(capsys, "train.preference.loss_type=robust",
                    "train.preference.label_smoothing=0.1")["dpo_label_smoothing"] == 0.1


@pytest.mark.parametrize("overrides,expected", [
    (["train.method=kto"], ["train.method: train.method=kto is not translated for provider=axolotl",
                            "use provider=peft for kto"]),
    (["train.packing=true"], ["train.packing: preference pairs are not packed"]),
    (["train.fused_loss=on"], ["train.fused_loss: train.fused_loss=on is SFT's fused cross-entropy"]),
    (["train.method=orpo", "train.preference.max_completion_length=64"],
     ["train.preference.max_completion_length=64 has no effect with provider=axolotl"]),
    (["train.assistant_only_loss=false"], ["train.assistant_only_loss: preference training scores the answers"]),
    (["train.preference.simpo_gamma=1.0"], ["train.preference.simpo_gamma: does not apply to train.method=dpo"]),
    (["+provider.axolotl.rl_beta=0.5"], ["provider.axolotl.rl_beta: ftorch sets Axolotl's 'rl_beta' from "
                                         "train.preference.beta"]),
    (["+provider.axolotl.trl={beta: 0.5}"], ["provider.axolotl.trl.beta: ftorch sets Axolotl's 'trl.beta' from "
                                             "train.preference.beta"]),
    (["+provider.axolotl.dpo_loss_type=[ipo]"], ["set train.preference.loss_type instead"]),
    (["+provider.axolotl.rl=kto"], ["provider.axolotl.rl: ftorch sets Axolotl's 'rl' from train.method"]),
])
def test_preference_refusals_name_the_key(capsys, overrides, expected):
    err = dpo_refused(capsys, *overrides)
    assert all(text in err for text in expected), err


def test_preference_plan_notes_and_purity(capsys, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no process")))
    before = set(sys.modules)
    assert main(["plan", "--json", *DPO, "train.method=orpo"]) == 0
    notes = "\n".join(json.loads(capsys.readouterr().out)["plan"]["notes"])
    assert "method: orpo through Axolotl's rl: orpo" in notes and "chat_template.argilla" in notes
    assert "reference model: none (orpo is reference-free)" in notes
    assert "ignored: train.method" not in notes
    assert not {n.split(".")[0] for n in set(sys.modules) - before} & {"axolotl", "torch", "transformers", "trl"}


def _split(tmp_path, examples):
    from ftorch.data.checks import ChatFile

    return ChatFile(path=tmp_path / "pairs.jsonl", examples=examples, lines=list(range(1, len(examples) + 1)),
                    issues=[])


def _pair(*prompt, chosen="yes", rejected="no"):
    return {"input": {"messages": [{"role": r, "content": c} for r, c in prompt]},
            "preferred_output": [{"role": "assistant", "content": chosen}],
            "non_preferred_output": [{"role": "assistant", "content": rejected}]}


def test_rl_rows_per_loader(tmp_path):
    multi = _pair(("system", "be brief"), ("user", "a?"), ("assistant", "A"), ("user", "b?"))
    (dpo,) = axolotl_config.rl_rows("dpo", _split(tmp_path, [multi]))
    assert [m["role"] for m in dpo["prompt"]] == ["system", "user", "assistant", "user"]
    assert dpo["chosen"] == [{"role": "assistant", "content": "yes"}]
    (orpo,) = axolotl_config.rl_rows("orpo", _split(tmp_path, [multi]))
    assert orpo["system"] == "be brief"
    assert [m["content"] for m in orpo["chosen"]] == ["a?", "A", "b?", "yes"]
    assert [m["content"] for m in orpo["rejected"]] == ["a?", "A", "b?", "no"]
    (plain,) = axolotl_config.rl_rows("orpo", _split(tmp_path, [_pair(("user", "q"))]))
    assert "system" not in plain and [m["role"] for m in plain["chosen"]] == ["user", "assistant"]


def test_rl_rows_a_loader_cannot_read_are_data_errors_with_their_line(tmp_path):
    from ftorch.errors import DataError

    pairs = [_pair(("user", "ok")), _pair(("developer", "rules"), ("user", "q")), _pair(("user", "a"), ("user", "b"))]
    with pytest.raises(DataError) as info:
        axolotl_config.rl_rows("orpo", _split(tmp_path, pairs))
    text = info.value.render()
    assert f"{tmp_path / 'pairs.jsonl'}:2: a prompt role provider=axolotl cannot pass" in text and "developer" in text
    assert f"{tmp_path / 'pairs.jsonl'}:3: Axolotl's ORPO loader" in text and ":1:" not in text
    assert len(axolotl_config.rl_rows("dpo", _split(tmp_path, [pairs[2]]))) == 1  # dpo's loader reads any order


def test_write_rl_data_writes_the_rows_in_the_run_dir(tmp_path):
    splits = {"train": _split(tmp_path, [_pair(("user", "q"))] * 3), "test": _split(tmp_path, [_pair(("user", "t"))])}
    paths = axolotl_config.write_rl_data("dpo", splits, tmp_path / "run")
    assert paths == {"train": str(tmp_path / "run" / "axolotl_data" / "train.jsonl")}  # test stays ftorch's
    rows = [json.loads(line) for line in Path(paths["train"]).read_text().splitlines()]
    assert len(rows) == 3 and rows[0]["prompt"] == [{"role": "user", "content": "q"}]


@pytest.mark.parametrize("key,expected", [("rl_beta", "train.preference.beta"), ("trl.beta", "train.preference.beta"),
                                          ("dpo_loss_weights", "train.preference.sft_weight"),
                                          ("warmup_steps", "train.warmup_ratio"), ("rl", "train.method")])
def test_rl_errors_map_back_to_ftorch_keys(key, expected):
    assert axolotl_config.ftorch_key(key, {}) == expected
