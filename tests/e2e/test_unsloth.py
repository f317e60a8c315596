"""provider=unsloth for real: a tiny LoRA run through Unsloth's CPU fallback (provider.allow_cpu=true), as a
user runs it. Needs an interpreter where `import unsloth` works:

    ftorch setup unsloth
    .venv-unsloth/bin/python -m pytest tests/e2e/test_unsloth.py
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, TINY, assert_preference_evaluated, read_run, run_cli, train_run

pytestmark = pytest.mark.slow
RUN = ["provider=unsloth", "provider.allow_cpu=true", *TINY, "train.max_steps=5", "train.save_steps=3", "eval=none"]


@pytest.fixture(scope="module")
def unsloth_works():
    """Checked in a child process: importing unsloth here would patch transformers for the whole test session."""
    if importlib.util.find_spec("unsloth") is None:
        pytest.skip(f"unsloth is not installed in {sys.executable}; create .venv-unsloth with "
                    "`ftorch setup unsloth` and run .venv-unsloth/bin/python -m pytest tests/e2e/test_unsloth.py")
    probe = subprocess.run([sys.executable, "-c", "import unsloth"], capture_output=True, text=True, timeout=600,
                           env=os.environ.copy())
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"`import unsloth` fails in {sys.executable}: {last}")


@pytest.fixture(scope="module")
def trained(unsloth_works, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return train_run(runs, *RUN)


def test_run_succeeds_on_unsloths_cpu_path(trained):
    run_dir, result = trained
    record = read_run(run_dir)
    assert record["status"] == "succeeded" and record["provider"] == "unsloth"
    assert record["metrics"]["global_step"] == 5 and record["metrics"]["final_loss"] > 0
    assert record["device"] == "cpu" and record["load_in_4bit"] is False and record["weights_dtype"] == "float32"
    assert record["unsloth"]["unsloth"] and "Unsloth" in result.stdout + result.stderr
    assert 0 < record["trainable_params"] < record["total_params"]
    assert "unsloth" not in sys.modules  # the test process itself stayed unpatched


def test_adapter_is_saved_and_reloads(trained):
    run_dir = trained[0]
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/tokenizer.json",
                 "adapter/chat_template.jinja"):
        assert (run_dir / name).is_file(), name
    record = read_run(run_dir)
    for check in ("reload_check", "peft_reload_check"):  # through Unsloth (child), through plain PEFT (parent)
        assert record[check]["matches_trained"] and record[check]["changes_base_output"], check
    config = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 16


def test_metrics_plot_and_no_stray_files(trained):
    run_dir = trained[0]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4, 5]
    assert all(r["loss"] > 0 for r in rows if r["kind"] == "train")
    assert (run_dir / "loss.png").stat().st_size > 0
    assert "trainable parameters" in (run_dir / "train.log").read_text()
    assert not (ROOT / "unsloth_compiled_cache").exists()


def test_resume_continues_from_the_last_checkpoint(trained, tmp_path):
    """A run stopped after its step-3 checkpoint: resume reaches step 5 from there, not from 0."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained[0], run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "checkpoint-5")
    shutil.rmtree(run_dir / "adapter")
    record = read_run(run_dir)
    record.update(status="interrupted", metrics={})
    (run_dir / "run.json").write_text(json.dumps(record))
    result = run_cli("resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-4000:]
    record = read_run(run_dir)
    assert record["status"] == "succeeded" and record["metrics"]["global_step"] == 5
    assert "resuming from" in (run_dir / "train.log").read_text() and "checkpoint-3" in record["resume_from"]
    assert record["reload_check"]["matches_trained"]


DPO = ["recipe=dpo-quickstart-tiny", "provider=unsloth", "provider.allow_cpu=true", *TINY[1:], "train.max_steps=3",
       "train.save_steps=3", "train.batch_size=4"]
QUICK_EVAL = ["eval.limit=8", "eval.few_shot=2", "eval.general=false", "eval.safety=false", "eval.drift=false",
              "eval.max_new_tokens=8"]


@pytest.fixture(scope="module")
def dpo_trained(unsloth_works, tmp_path_factory):
    runs = tmp_path_factory.mktemp("dpo")
    return train_run(runs, *DPO, *QUICK_EVAL)


def test_dpo_trains_through_unsloth_and_records_like_sft(dpo_trained):
    run_dir, result = dpo_trained
    record = read_run(run_dir)
    assert record["status"] == "succeeded" and record["provider"] == "unsloth" and record["method"] == "dpo"
    assert record["device"] == "cpu" and record["unsloth"]["trl"]
    assert record["metrics"]["global_step"] == 3 and record["metrics"]["final_loss"] > 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all("reward_accuracy" in r and "reward_margin" in r for r in train)
    assert "method dpo through trl.DPOTrainer" in (run_dir / "train.log").read_text()
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "adapter" / "ref").exists()  # TRL's frozen reference copy is not published
    for check in ("reload_check", "peft_reload_check"):  # through Unsloth (child), through plain PEFT (parent)
        assert record[check]["matches_trained"] and record[check]["changes_base_output"], check
    assert "unsloth" not in sys.modules


def test_dpo_run_is_evaluated_with_preference_accuracy(dpo_trained):
    assert_preference_evaluated(*dpo_trained)
