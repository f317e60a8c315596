"""provider=together end to end: `ftorch train` in its own process, the official together SDK over HTTP, against
the local stand-in whose every request and response is validated against Together's published spec."""

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, read_run, run_cli, run_dirs
from support.together_standin import SPEC_PATH, start_standin

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SPEC_PATH.is_file(), reason=f"Together spec not found at {SPEC_PATH}")]
FAST = ["recipe=together-quickstart", "provider.poll_interval_s=0.01", "provider.max_poll_interval_s=0.05"]
NO_EVAL = ["eval=none", "provider.download_adapter=false"]
QUICK_EVAL = ["eval.limit=3", "eval.few_shot=2", "eval.general_limit=2", "eval.safety_limit=2",
              "eval.max_new_tokens=8", "eval.validation_limit=2", "eval.k_shots=[1]"]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    """A real LoRA adapter on the recipe's tiny base (what Together would send for a model of that shape), with
    non-zero B matrices so that it changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ftorch.config.compose import find_project
    from ftorch.run.lifecycle import prepare
    from ftorch.tiny import ensure_tiny_model

    cfg = prepare(find_project(), ["recipe=together-quickstart"]).plan.config
    base = AutoModelForCausalLM.from_pretrained(ensure_tiny_model(cfg.model.tiny))
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    out = tmp_path_factory.mktemp("together_adapter")
    model.save_pretrained(out)
    return out


@pytest.fixture
def standin(monkeypatch, adapter_dir):
    with start_standin() as handle:
        handle.scenario.adapter_dir = adapter_dir
        monkeypatch.setenv("TOGETHER_BASE_URL", handle.base_url)
        monkeypatch.setenv("TOGETHER_API_KEY", handle.api_key)
        yield handle
        assert handle.violations() == []


def train(tmp_path, *args, timeout=600):
    return run_cli("train", f"paths.runs={tmp_path / 'runs'}", *FAST, *args, timeout=timeout)


def the_run(tmp_path):
    (run_dir,) = run_dirs(tmp_path / "runs")
    return run_dir, read_run(run_dir)


def creates(standin):
    return standin.requests_to("POST", "/fine-tunes")


def test_full_lifecycle_downloads_the_adapter_and_evaluates_it_here(standin, tmp_path):
    result = train(tmp_path, *QUICK_EVAL)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir, record = the_run(tmp_path)
    assert record["status"] == "succeeded" and record["job_status"] == "completed"
    # upload (the spec's /files/upload), estimate, then exactly one create, with the run's key in its suffix
    assert len(standin.requests_to("POST", "/files/upload")) == 1
    order = [r.path for r in standin.requests if r.method == "POST"]
    assert order.index("/fine-tunes/estimate-price") < order.index("/fine-tunes")
    (create,) = creates(standin)
    body = create.json
    assert body["model"] == "meta-llama/Llama-3.2-1B-Instruct" and body["n_epochs"] == 3
    assert body["training_method"] == {"method": "sft", "train_on_inputs": False}
    assert body["training_type"]["type"] == "Lora" and body["training_type"]["lora_r"] == 16
    assert body["suffix"].startswith("quickstart-") and body["learning_rate"] == 2e-4
    assert record["price_estimate"]["estimated_total_price"] > 0
    # events, metrics and checkpoints followed into the run folder
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events].count("checkpoint_save") == 3 and events[-1]["type"] == "job_complete"
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if s["kind"] == "train"] == list(range(1, 10))
    assert json.loads((run_dir / "checkpoints.json").read_text())[-1]["checkpoint_type"] == "Final Adapter"
    # the adapter came down, was verified, and the evaluation ran here on it (no chat completions sent)
    assert (run_dir / "adapter" / "adapter_config.json").is_file() and record["adapter_sha256"]
    assert standin.requests_to("POST", "/chat/completions") == []
    assert record["evaluated"] is True and "eval_tuned_field_accuracy" in record["metrics"]
    for path in run_dir.rglob("*"):  # the key never reaches the run directory
        if path.is_file() and path.suffix in (".json", ".jsonl", ".yaml", ".log", ".md", ".csv"):
            assert standin.api_key not in path.read_text(errors="ignore"), path
    # and the run is a local one for export
    exported = run_cli("export", str(run_dir), "--to", "merged")
    assert exported.returncode == 0, exported.stderr[-3000:]


def test_evaluation_through_chat_completions_without_the_adapter(standin, tmp_path):
    standin.scenario.chat_reply = lambda request: '{"action": "move"}'
    result = train(tmp_path, *QUICK_EVAL, "provider.download_adapter=false", "eval.drift=false")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir, record = the_run(tmp_path)
    models = {r.json["model"] for r in standin.requests_to("POST", "/chat/completions")}
    assert models == {"meta-llama/Llama-3.2-1B-Instruct", record["fine_tuned_model"]}
    assert record["evaluated"] is True and not (run_dir / "adapter").exists()
    # cost per call from the price table, for the base model and the tuned one alike
    reports = [json.loads(p.read_text()) for p in run_dir.rglob("*.json") if "usd_per_1k_calls" in p.read_text()]
    assert reports, "no evaluation report with a cost per call"
    text = json.dumps(reports[0])
    assert text.count("usd_per_1k_calls") >= 3


def test_uploads_are_reused_across_runs(standin, tmp_path):
    for _ in range(2):
        result = train(tmp_path, *NO_EVAL)
        assert result.returncode == 0, result.stderr[-3000:]
    assert len(standin.requests_to("POST", "/files/upload")) == 1 and len(creates(standin)) == 2


def test_budget_is_checked_against_the_estimate_before_the_job(standin, tmp_path):
    standin.scenario.price_per_1m_tokens = 1e6
    result = train(tmp_path, *NO_EVAL)
    assert result.returncode == 2 and "provider.max_cost_usd" in result.stderr
    assert creates(standin) == []


def test_unsupported_model_is_refused_at_plan(standin, tmp_path):
    result = run_cli("plan", *FAST, "provider.model=acme/not-a-model")
    assert result.returncode == 2 and "provider.model" in result.stderr and "does not fine-tune" in result.stderr
    assert standin.requests == []


@pytest.mark.parametrize("status, words", [(401, "HTTP 401"), (402, "payment required (HTTP 402)"),
                                           (404, "HTTP 404")])
def test_error_codes_are_explained(standin, tmp_path, status, words):
    standin.inject(status, "/fine-tunes", method="POST", times=5)
    result = train(tmp_path, *NO_EVAL, "provider.max_retries=0")
    assert result.returncode != 0 and words in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    if status == 402:
        assert "Billing" in result.stderr


def test_429_and_5xx_are_retried_and_one_job_is_made(standin, tmp_path):
    standin.inject(429, "/fine-tunes/estimate-price", times=1)
    standin.inject(503, "/fine-tunes", method="POST", times=1)
    standin.inject(500, "/fine-tunes/*", method="GET", times=2)
    result = train(tmp_path, *NO_EVAL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len([r for r in creates(standin) if r.status == 200]) == 1
    assert read_run(the_run(tmp_path)[0])["status"] == "succeeded"


def test_persistent_server_errors_fail_clearly(standin, tmp_path):
    standin.inject(500, "/fine-tunes/estimate-price", times=50)
    result = train(tmp_path, *NO_EVAL)
    assert result.returncode != 0 and "server failed (HTTP 500)" in result.stderr and "Traceback" not in result.stderr


def test_failed_job_shows_the_error(standin, tmp_path):
    standin.scenario.outcome = "error"
    result = train(tmp_path, *NO_EVAL)
    assert result.returncode != 0 and standin.scenario.error_message in result.stderr


def _wait_running(standin):
    deadline = time.time() + 120
    while time.time() < deadline and not any(j["status"] == "running" for j in standin.jobs()):
        time.sleep(0.05)


def _start(tmp_path, *args):
    return subprocess.Popen([sys.executable, "-m", "ftorch", "train", f"paths.runs={tmp_path / 'runs'}", *FAST,
                             *NO_EVAL, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_interrupt_leaves_the_job_running_and_resume_reattaches(standin, tmp_path):
    standin.scenario.running_polls = 40
    process = _start(tmp_path)
    _wait_running(standin)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-3000:]
    assert "keeps running" in out and "ftorch resume" in out
    run_dir, record = the_run(tmp_path)
    assert record["status"] == "interrupted" and standin.job(record["job_id"])["status"] == "running"
    result = run_cli("resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reattaching to job" in result.stdout and read_run(run_dir)["status"] == "succeeded"
    assert len(creates(standin)) == 1
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no step written twice across the two processes


def test_cancel_command(standin, tmp_path):
    standin.scenario.running_polls = 1000
    process = _start(tmp_path)
    _wait_running(standin)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    run_dir, record = the_run(tmp_path)
    result = run_cli("cancel", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert standin.job(record["job_id"])["status"] == "cancelled"
    assert read_run(run_dir)["status"] == "failed" and "cancelled" in read_run(run_dir)["error"]


def test_a_crash_between_create_and_record_never_makes_a_second_job(standin, tmp_path):
    """The job is created, then the process dies before run.json holds its id: resume finds it by its suffix."""
    standin.scenario.running_polls = 2
    process = _start(tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline and not standin.jobs():
        time.sleep(0.01)
    process.kill()  # SIGKILL: no handler runs
    process.communicate(timeout=60)
    run_dir, _ = the_run(tmp_path)
    record = json.loads((run_dir / "run.json").read_text())
    record.pop("job_id", None)  # as if the kill came between the create and the record
    (run_dir / "run.json").write_text(json.dumps(record))
    result = run_cli("resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(creates(standin)) == 1 and read_run(run_dir)["job_id"] == standin.jobs()[0]["id"]


def test_pull_downloads_the_adapter_of_a_finished_run(standin, tmp_path):
    result = train(tmp_path, *NO_EVAL)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir, _ = the_run(tmp_path)
    assert not (run_dir / "adapter").exists()
    before = run_cli("export", str(run_dir), "--to", "merged")  # nothing to export yet: it says how to get it
    assert before.returncode == 2 and f"ftorch pull {run_dir}" in before.stderr, before.stderr[-2000:]
    pulled = run_cli("pull", str(run_dir))
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    assert (run_dir / "adapter" / "adapter_config.json").is_file() and read_run(run_dir)["adapter_sha256"]
    assert len(standin.requests_to("GET", "/finetune/download")) == 1


def test_an_adapter_that_does_not_fit_the_local_base_is_refused(standin, tmp_path):
    result = train(tmp_path, *NO_EVAL, "model.tiny.hidden_size=64", "model.tiny.intermediate_size=128",
                   "model.tiny.num_heads=2")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir, _ = the_run(tmp_path)
    pulled = run_cli("pull", str(run_dir))
    assert pulled.returncode != 0 and "does not fit the local base" in pulled.stderr, pulled.stderr[-2000:]
    assert not (run_dir / "adapter").exists()


def test_weights_only_evaluation_without_the_adapter_names_download_adapter(standin, tmp_path):
    result = run_cli("plan", *FAST, "provider.download_adapter=false")
    assert result.returncode == 2 and "eval.drift" in result.stderr
    assert "provider.download_adapter=true" in result.stderr


def test_dpo_uploads_pairs_in_together_shape(standin, tmp_path):
    result = train(tmp_path, *NO_EVAL, "data=quickstart-dpo", "train=dpo", "train.preference.beta=0.2")
    assert result.returncode == 0, result.stderr[-3000:]
    (create,) = creates(standin)
    assert create.json["training_method"] == {"method": "dpo", "dpo_beta": 0.2}
    lines = standin.file_bytes(create.json["training_file"]).decode().splitlines()
    pair = json.loads(lines[0])
    assert set(pair) == {"input", "preferred_output", "non_preferred_output"}
    assert pair["input"]["messages"][-1]["role"] == "user" and pair["preferred_output"][0]["role"] == "assistant"
