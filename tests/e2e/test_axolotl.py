"""ftorch train provider=axolotl for real: a tiny LoRA through Axolotl in its own environment (CPU), and
Axolotl's schema checking the generated config. Needs the environment `ftorch setup axolotl` builds."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY, assert_preference_evaluated, read_run, run_cli, run_dirs, train_run

PYTHON = Path(os.environ.get("FTORCH_AXOLOTL_PYTHON") or ROOT / ".venv-axolotl" / "bin" / "python")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PYTHON.is_file(), reason=f"no Axolotl environment at {PYTHON}: build it with "
                       "`ftorch setup axolotl` (or set FTORCH_AXOLOTL_PYTHON)"),
]
AXOLOTL = ["provider=axolotl", *TINY, "eval=none", f"provider.python={PYTHON}"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return train_run(runs, *AXOLOTL, "train.max_steps=5", "train.save_steps=2")


def test_run_succeeds_and_saves_the_adapter(trained):
    run_dir, result = trained
    record = read_run(run_dir)
    assert record["status"] == "succeeded" and record["provider"] == "axolotl"
    assert record["metrics"]["global_step"] == 5 and record["metrics"]["final_loss"] > 0
    assert record["device"] == "cpu" and record["axolotl_version"] == "0.19.0"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (run_dir / "adapter" / name).is_file(), name
    adapter = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    config = yaml.safe_load((run_dir / "axolotl.yaml").read_text())
    assert adapter["base_model_name_or_path"] == config["base_model"] and Path(config["base_model"]).is_dir()
    assert adapter["r"] == 16 and config["output_dir"] == str(run_dir / "checkpoints")
    assert list((run_dir / "checkpoints").glob("checkpoint-*"))
    assert f"succeeded run dir: {run_dir}" in result.stdout


def test_metrics_loss_plot_and_log(trained):
    run_dir, result = trained
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5]
    assert all(r["loss"] > 0 and r["lr"] is not None for r in train)
    assert train[-1]["loss"] < train[0]["loss"]
    assert (run_dir / "loss.png").stat().st_size > 1000
    log = (run_dir / "train.log").read_text()
    assert "launch: " in log and "axolotl.cli.train" in log and "{'loss': " in log
    assert "{'loss': " in result.stdout  # streamed to the console too


@pytest.fixture(scope="module")
def rejected(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    result = run_cli("train", *AXOLOTL, f"paths.runs={runs}", "+provider.axolotl.dataloader_num_workers=lots",
                     "+provider.axolotl.lora_rr=8")
    (run_dir,) = run_dirs(runs)
    return run_dir, result


def test_a_bad_passthrough_value_is_a_config_error_under_the_ftorch_key(rejected):
    run_dir, result = rejected
    assert result.returncode == 2, result.stderr[-3000:]
    assert "config error" in result.stderr
    assert ("provider.axolotl.dataloader_num_workers: Input should be a valid integer, unable to parse string as an "
            "integer (Axolotl key 'dataloader_num_workers' in axolotl.yaml)") in result.stderr
    record = read_run(run_dir)
    assert record["status"] == "failed" and "dataloader_num_workers" in record["error"]
    assert not (run_dir / "checkpoints").exists()  # stopped before training


def test_an_unknown_passthrough_key_is_caught(rejected):
    stderr = rejected[1].stderr
    assert "provider.axolotl.lora_rr: Axolotl has no key 'lora_rr'; it would ignore it silently" in stderr
    assert "did you mean 'lora_r'?" in stderr


PRESETS = {  # every preset the translator can emit, checked by Axolotl's own schema in one child process
    "deepspeed_zero1": ["train.num_gpus=2", "provider.distributed=deepspeed_zero1"],
    "deepspeed_zero2": ["train.num_gpus=2", "provider.distributed=deepspeed_zero2"],
    "deepspeed_zero3": ["train.num_gpus=2", "provider.distributed=deepspeed_zero3"],
    "fsdp": ["train.num_gpus=4", "provider.distributed=fsdp"],
    "liger": ["provider.liger=true"],
    "qlora": ["train.quantization=4bit", "train.precision=bf16"],
    "packing": ["train.packing=true", "train.gradient_checkpointing=true"],
    "all_tokens": ["train.assistant_only_loss=false", "train.precision=fp32", "train.optimizer=adafactor",
                   "train.scheduler=constant_with_warmup"],
    "validation": [f"data.validation={ROOT / 'datasets' / 'quickstart' / 'test.jsonl'}"],
}


def schema_reports(tmp_path, base: list[str], presets: dict[str, list[str]]) -> list[dict]:
    """Axolotl's own schema verdict on the axolotl.yaml `plan` generates for each preset (one child for all)."""
    paths = []
    for name, overrides in presets.items():
        result = run_cli("plan", "--json", *base, *overrides)
        assert result.returncode == 0, result.stderr[-2000:]
        config = json.loads(result.stdout)["plan"]["inputs"]["axolotl_yaml"]
        config["base_model"] = str(ROOT / "missing-model")  # the schema does not load the model
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump(config))
    child = ROOT / "src" / "ftorch" / "backends" / "axolotl" / "child.py"
    done = subprocess.run([str(PYTHON), str(child), *map(str, paths)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_every_preset_passes_axolotls_schema(tmp_path):
    reports = schema_reports(tmp_path, AXOLOTL, PRESETS)
    assert len(reports) == len(PRESETS)
    assert [r for r in reports if not r["ok"]] == []


# --- preference training through Axolotl's rl: (the pairs rewritten for its chat-template loaders) ---------
DPO = ["recipe=dpo-quickstart-tiny", "provider=axolotl", *TINY[1:], f"provider.python={PYTHON}", "train.batch_size=4",
       "train.save_steps=2"]
QUICK_EVAL = ["eval.limit=8", "eval.few_shot=2", "eval.general=false", "eval.safety=false", "eval.drift=false",
              "eval.max_new_tokens=8"]


@pytest.fixture(scope="module")
def dpo_trained(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return train_run(runs, *DPO, "train.max_steps=4", *QUICK_EVAL)


def test_dpo_run_trains_through_axolotls_rl(dpo_trained):
    run_dir, result = dpo_trained
    record = read_run(run_dir)
    assert record["status"] == "succeeded" and record["provider"] == "axolotl" and record["method"] == "dpo"
    assert record["metrics"]["global_step"] == 4 and record["metrics"]["final_loss"] > 0
    config = yaml.safe_load((run_dir / "axolotl.yaml").read_text())
    assert config["rl"] == "dpo" and config["rl_beta"] == 0.1 and config["dpo_loss_type"] == ["sigmoid"]
    assert config["datasets"][0]["type"] == "chat_template.default"
    rows = [json.loads(line) for line in Path(config["datasets"][0]["path"]).read_text().splitlines()]
    assert len(rows) == 240 and rows[0]["chosen"][0]["role"] == "assistant" and rows[0]["prompt"][-1]["role"] == "user"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (run_dir / "adapter" / name).is_file(), name
    train = [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all(r["reward_accuracy"] is not None and r["reward_margin"] is not None for r in train)
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


def test_dpo_run_is_evaluated_with_preference_accuracy(dpo_trained):
    assert_preference_evaluated(*dpo_trained)


@pytest.mark.parametrize("method, expected", [("orpo", {"rl": "orpo", "datasets.0.type": "chat_template.argilla"}),
                                              ("simpo", {"rl": "simpo", "cpo_alpha": 0.0, "simpo_gamma": 0.5})])
def test_orpo_and_simpo_train(tmp_path, method, expected):
    result = run_cli("train", *DPO, f"paths.runs={tmp_path}", f"train.method={method}", "train.max_steps=2",
                     "eval=none")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    record = read_run(run_dir)
    assert record["status"] == "succeeded" and record["method"] == method and record["metrics"]["global_step"] == 2
    config = yaml.safe_load((run_dir / "axolotl.yaml").read_text())
    assert {key: _dig(config, key) for key in expected} == expected
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


RL_PRESETS = {  # every rl translation, checked by Axolotl's own schema in one child process
    "dpo": [],
    "dpo_rpo_robust": ["train.preference.sft_weight=0.5", "train.preference.loss_type=robust",
                       "train.preference.label_smoothing=0.1"],
    "dpo_ipo_precomputed": ["train.preference.loss_type=ipo", "train.preference.reference=precomputed"],
    "orpo": ["train.method=orpo"],
    "simpo": ["train.method=simpo", "train.preference.simpo_gamma=1.0"],
    "liger": ["provider.liger=true"],
    "validation": [f"data.validation={ROOT / 'datasets' / 'quickstart-dpo' / 'test.jsonl'}", "data.test=null"],
}


def test_every_rl_preset_passes_axolotls_schema(tmp_path):
    reports = schema_reports(tmp_path, DPO, RL_PRESETS)
    assert [r for r in reports if not r["ok"]] == [] and len(reports) == len(RL_PRESETS)


def _dig(tree, dotted):
    for part in dotted.split("."):
        tree = tree[int(part)] if isinstance(tree, list) else tree[part]
    return tree
