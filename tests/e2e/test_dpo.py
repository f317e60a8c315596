"""Preference training as a user runs it, on the tiny local model (CPU): DPO with its evaluation (preference
accuracy, rejected-behaviour rate, verdict), a kill mid-run then `ftorch resume` giving the uninterrupted run's
adapter byte for byte, SimPO started from the DPO run's adapter, and KTO."""

import json
import signal

import pytest

from conftest import TINY, assert_preference_evaluated, assert_two_process_run, read_run, run_cli, run_dirs, train_run
from support.crash import adapter_bytes, run_cli_forked

pytestmark = pytest.mark.slow
DPO = ["recipe=dpo-quickstart-tiny", *TINY[1:], "train.max_steps=4", "train.save_steps=2", "train.batch_size=4"]
QUICK_EVAL = ["eval.limit=8", "eval.few_shot=2", "eval.general=false", "eval.safety=false", "eval.drift=false",
              "eval.max_new_tokens=8"]


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return train_run(runs, *DPO, *QUICK_EVAL)


def test_dpo_run_records_like_sft(dpo_run):
    run_dir, result = dpo_run
    record = read_run(run_dir)
    assert record["status"] == "succeeded" and record["method"] == "dpo"
    assert record["metrics"]["global_step"] == 4 and record["metrics"]["final_loss"] > 0
    assert record["reload_check"]["matches_trained"] and record["reload_check"]["changes_base_output"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all("reward_accuracy" in r and "reward_margin" in r for r in train)
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not (run_dir / "adapter" / "ref").exists()  # only the trained adapter is published


def test_dpo_evaluation_reports_preference_accuracy_base_and_tuned(dpo_run):
    run_dir, result = dpo_run
    report = assert_preference_evaluated(run_dir, result)
    assert 0 <= read_run(run_dir)["metrics"]["eval_prompted_rejected_rate"] <= 1
    (report_dir,) = (run_dir / "eval").iterdir()
    assert report["preference"]["rejected_behaviour"]["patterns"]
    text = (report_dir / "report.md").read_text()
    assert "## Preference" in text and "Implicit reward" in text
    predictions = [json.loads(line) for line in (report_dir / "predictions.jsonl").read_text().splitlines()]
    assert predictions[0]["reference"].startswith("{") and "rejected_behaviour" in predictions[0]["systems"]["tuned"]
    # the prompted baseline carries the recipe's "do not" instructions in its system prompt
    assert report["task"]["systems"]["prompted"] and report["system_prompt"]
    # ... chosen among the prompting arms on pairs held out of train, as for chat data
    arms = report["prompt_arms"]
    assert arms["chosen"] in {a["name"] for a in arms["arms"]} and arms["n_validation"] == 8


def test_killed_dpo_run_resumes_to_the_same_adapter(tmp_path):
    """Both runs forked from the same server (same threads, same kernels): the adapters must match byte for byte."""
    args = ["train", f"paths.runs={tmp_path / 'whole'}", *DPO, "eval=none"]
    assert run_cli_forked(args) == 0
    (reference,) = run_dirs(tmp_path / "whole")
    args = ["train", f"paths.runs={tmp_path / 'killed'}", *DPO, "eval=none"]
    assert run_cli_forked(args, kill=("step", 3, 0.0)) == -signal.SIGKILL
    (run_dir,) = run_dirs(tmp_path / "killed")
    assert read_run(run_dir)["status"] in ("running", "died")
    assert run_cli_forked(["resume", str(run_dir)]) == 0
    record = read_run(run_dir)
    assert record["status"] == "succeeded" and record["metrics"]["global_step"] == 4
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4]
    assert adapter_bytes(run_dir) == adapter_bytes(reference)


def test_simpo_starts_from_the_dpo_adapter_and_kto_trains(dpo_run, tmp_path):
    # forked from the test server that has imported torch and TRL once: no interpreter start per run
    assert run_cli_forked(["train", f"paths.runs={tmp_path / 'simpo'}", *DPO, "train.method=simpo",
                           "train.max_steps=2", f"model.adapter={dpo_run[0]}", "eval=none"]) == 0
    (run_dir,) = run_dirs(tmp_path / "simpo")
    assert read_run(run_dir)["status"] == "succeeded"
    assert f"starting from the adapter in {dpo_run[0] / 'adapter'}" in (run_dir / "train.log").read_text()
    assert adapter_bytes(run_dir) != adapter_bytes(dpo_run[0])
    assert run_cli_forked(["train", f"paths.runs={tmp_path / 'kto'}", *DPO, "train.method=kto", "train.max_steps=2",
                           "eval=none"]) == 0
    assert read_run(run_dirs(tmp_path / "kto")[0])["metrics"]["global_step"] == 2


def test_dpo_on_two_processes_through_torchrun(tmp_path):
    """train.num_gpus=2 with a preference method: DDP (gloo on CPU), one writer, the console without a bar per
    rank from TRL's tokenization."""
    result = run_cli("train", f"paths.runs={tmp_path}", *DPO, "train.num_gpus=2", "provider.device=cpu", "eval=none")
    assert_two_process_run(tmp_path, result)
    assert "Tokenizing train dataset" not in result.stdout + result.stderr
