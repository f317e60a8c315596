"""provider=openai end to end: `ftorch train` in its own process, the official SDK over HTTP, against the
local stand-in whose every response is validated against OpenAI's published spec."""

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, chat, read_run, run_cli, run_dirs
from support.openai_standin import SPEC_PATH, start_standin

# The stand-in validates every response against OpenAI's published spec, found at ../shared/openai/openapi.yaml
# beside the project (or $FTORCH_OPENAI_SPEC); without it these tests cannot prove anything and are skipped.
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SPEC_PATH.is_file(), reason=f"OpenAI spec not found at {SPEC_PATH}")]
FAST = ["recipe=openai-quickstart", "provider.poll_interval_s=0.01", "provider.max_poll_interval_s=0.05"]
NO_EVAL = ["eval=none"]
QUICK_EVAL = ["eval.limit=3", "eval.few_shot=2", "eval.general_limit=3", "eval.safety_limit=3",
              "eval.max_new_tokens=16", "eval.validation_limit=3", "eval.k_shots=[1,2]"]


@pytest.fixture
def standin(monkeypatch):
    with start_standin() as handle:
        monkeypatch.setenv("OPENAI_BASE_URL", handle.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", handle.api_key)
        yield handle


def train(tmp_path, *args):
    return run_cli("train", f"paths.runs={tmp_path}", *FAST, *args)


def the_run(tmp_path):
    (run_dir,) = run_dirs(tmp_path)
    return run_dir, read_run(run_dir)


def test_full_lifecycle_with_evaluation(standin, tmp_path):
    standin.scenario.chat_reply = lambda request: '{"action": "move"}'
    result = train(tmp_path, *QUICK_EVAL)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir, record = the_run(tmp_path)
    assert record["status"] == "succeeded" and record["job_status"] == "succeeded"
    job = standin.job(record["job_id"])
    assert record["fine_tuned_model"] == job["fine_tuned_model"] and record["trained_tokens"] > 0
    assert len(standin.requests_to("POST", "/v1/fine_tuning/jobs")) == 1
    body = standin.requests_to("POST", "/v1/fine_tuning/jobs")[0].json
    assert body["method"]["supervised"]["hyperparameters"]["n_epochs"] == 3
    assert body["metadata"]["ftorch_run"].startswith("ftorch-") and body["suffix"] == "ftorch-quickstart"
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert any("Step" in e["message"] for e in events) and len({e["id"] for e in events}) == len(events)
    assert json.loads((run_dir / "checkpoints.json").read_text())
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps and all("loss" in s for s in steps if s["kind"] == "train") and (run_dir / "loss.png").is_file()
    assert "job " in result.stdout and "succeeded" in result.stdout
    # the evaluation went through chat completions: base model for base/prompted, the fine-tuned id for tuned
    models = {r.json["model"] for r in standin.requests_to("POST", "/v1/chat/completions")}
    assert models == {"gpt-4o-mini-2024-07-18", record["fine_tuned_model"]}
    # the prompting arms were swept on validation; the constrained one asked for the schema as response_format
    formats = [r.json["response_format"] for r in standin.requests_to("POST", "/v1/chat/completions")
               if "response_format" in r.json]
    assert formats and formats[0]["type"] == "json_schema" and formats[0]["json_schema"]["schema"]["required"]
    assert record["evaluation"]["prompt_arm"]
    references = [json.loads(json.loads(line)["messages"][-1]["content"])
                  for line in (ROOT / "datasets/quickstart/test.jsonl").read_text().splitlines()[:3]]
    expected = sum(r["action"] == "move" for r in references) / 3 / 5  # one field of five right
    assert record["evaluated"] is True and record["metrics"]["eval_tuned_field_accuracy"] == pytest.approx(expected)
    # the key never reaches the run directory
    for path in run_dir.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".yaml", ".log", ".md", ".csv"):
            assert standin.api_key not in path.read_text(errors="ignore"), path


def test_uploads_are_reused_across_runs(standin, tmp_path):
    for _ in range(2):
        assert train(tmp_path, *NO_EVAL).returncode == 0
    assert len(standin.requests_to("POST", "/v1/files")) == 1
    assert len(standin.requests_to("POST", "/v1/fine_tuning/jobs")) == 2


def test_wind_down_refusal_is_explained_and_not_retried(standin, tmp_path):
    standin.scenario.training_not_available = True
    result = train(tmp_path, *NO_EVAL)
    assert result.returncode == 1
    assert "winding down" in result.stderr and "provider=peft" in result.stderr and "file-" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(standin.requests_to("POST", "/v1/fine_tuning/jobs")) == 1
    _, record = the_run(tmp_path)
    assert record["status"] == "failed" and "training_not_available" in record["error"]


def test_failed_job_shows_the_error_verbatim(standin, tmp_path):
    standin.scenario.outcome = "failed"
    result = train(tmp_path, *NO_EVAL)
    assert result.returncode == 1
    assert "The job failed due to an invalid training file." in result.stderr
    _, record = the_run(tmp_path)
    assert record["status"] == "failed" and "invalid_training_file" in record["error"]


def test_faults_are_survived_without_a_second_job(standin, tmp_path):
    standin.inject("rate_limit", "/v1/fine_tuning/jobs", method="POST", times=1)
    standin.inject("server_error", "/v1/fine_tuning/jobs/*", method="GET", times=2)
    standin.inject("drop", "/v1/fine_tuning/jobs/*/events", times=1)
    result = train(tmp_path, *NO_EVAL)
    assert result.returncode == 0, result.stderr[-3000:]
    created = [r for r in standin.requests_to("POST", "/v1/fine_tuning/jobs") if r.status == 200]
    assert len(created) == 1 and len(standin.requests_to("GET", "/v1/fine_tuning/jobs")) >= 1
    assert the_run(tmp_path)[1]["status"] == "succeeded"


def test_persistent_server_errors_fail_clearly(standin, tmp_path):
    standin.inject("server_error", "/v1/fine_tuning/jobs", method="POST", times=100)
    result = train(tmp_path, *NO_EVAL, "provider.max_retries=0")
    assert result.returncode == 1 and "server error (HTTP 500)" in result.stderr
    assert [r for r in standin.requests_to("POST", "/v1/fine_tuning/jobs") if r.status == 200] == []


def test_wrong_key_and_missing_key(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    result = train(tmp_path, *NO_EVAL)
    assert result.returncode == 2 and "API key missing or invalid (HTTP 401)" in result.stderr
    monkeypatch.delenv("OPENAI_API_KEY")
    runs = tmp_path / "no-key"
    result = run_cli("train", f"paths.runs={runs}", *FAST, *NO_EVAL)
    assert result.returncode == 2 and "$OPENAI_API_KEY: API key missing" in result.stderr
    assert not runs.exists()


def test_budget_guard_refuses_before_anything_is_sent(standin, tmp_path):
    result = train(tmp_path, *NO_EVAL, "provider.max_cost_usd=0.01")
    assert result.returncode == 2 and "above the limit of $0.01" in result.stderr
    assert standin.requests == [] and list(tmp_path.iterdir()) == []


def test_interrupt_leaves_the_job_running_and_resume_reattaches(standin, tmp_path):
    standin.scenario.running_polls = 40
    process = subprocess.Popen([sys.executable, "-m", "ftorch", "train", f"paths.runs={tmp_path}", *FAST[:1],
                                "provider.poll_interval_s=0.05", "provider.max_poll_interval_s=0.05", *NO_EVAL],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not any(j["status"] == "running" for j in _jobs(standin)):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-3000:]
    assert "keeps running" in out and "ftorch resume" in out
    run_dir, record = the_run(tmp_path)
    assert record["status"] == "interrupted" and standin.job(record["job_id"])["status"] == "running"
    result = run_cli("resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reattaching to job" in result.stdout
    assert read_run(run_dir)["status"] == "succeeded"
    assert len(standin.requests_to("POST", "/v1/fine_tuning/jobs")) == 1


def test_cancel_command(standin, tmp_path):
    standin.scenario.running_polls = 1000
    process = subprocess.Popen([sys.executable, "-m", "ftorch", "train", f"paths.runs={tmp_path}", *FAST, *NO_EVAL],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not any(j["status"] == "running" for j in _jobs(standin)):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    run_dir, record = the_run(tmp_path)
    result = run_cli("cancel", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    assert standin.job(record["job_id"])["status"] == "cancelled"
    assert read_run(run_dir)["status"] == "failed" and "cancelled" in read_run(run_dir)["error"]


def test_azure_openai_runs_the_same_recipe(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", standin.api_key)
    result = train(tmp_path, *NO_EVAL, "provider.api=azure", f"provider.azure_endpoint={standin.azure_endpoint}",
                   "provider.api_version=2025-04-01-preview", "provider.api_key_env=AZURE_OPENAI_API_KEY")
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(r.azure for r in standin.requests) and the_run(tmp_path)[1]["status"] == "succeeded"


def test_dpo_with_preference_pairs(standin, tmp_path, chat_jsonl):
    pairs = [{"input": {"messages": [{"role": "user", "content": f"Question {i}?"}]},
              "preferred_output": [{"role": "assistant", "content": f"Short answer {i}."}],
              "non_preferred_output": [{"role": "assistant", "content": f"A rambling answer {i}..."}]}
             for i in range(12)]
    data = chat_jsonl(pairs, "pairs.jsonl")
    result = train(tmp_path, *NO_EVAL, f"data.train={data}", "data.test=null", "data.format=preference",
                   "train.method=dpo", "provider.beta=0.2", "model.name=gpt-4.1-mini-2025-04-14")
    assert result.returncode == 0, result.stderr[-3000:]
    body = standin.requests_to("POST", "/v1/fine_tuning/jobs")[0].json
    assert body["method"] == {"type": "dpo", "dpo": {"hyperparameters": {
        "n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": "auto", "beta": 0.2}}}


def _jobs(standin):
    return [standin.job(job_id) for job_id in {_job_id(r) for r in standin.requests if _job_id(r)}]


def _job_id(request):
    parts = request.path.split("/")
    return parts[4] if len(parts) > 4 and parts[3] == "jobs" and parts[4].startswith("ftjob-") else None


def test_plan_shows_the_request_without_network(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = run_cli("plan", "recipe=openai-quickstart")
    assert result.returncode == 0 and "supervised" in result.stdout and "cost estimate" in result.stdout
    assert chat("a", "b")  # conftest helper stays importable here


def test_bad_request_shows_the_servers_message(standin, tmp_path):
    standin.scenario.models = {"gpt-4.1-mini-2025-04-14"}
    result = train(tmp_path, *NO_EVAL)
    assert result.returncode == 1 and "rejected by the API (HTTP 400)" in result.stderr
    assert "gpt-4o-mini-2024-07-18" in result.stderr and "Traceback" not in result.stderr
    assert the_run(tmp_path)[1]["status"] == "failed"


def test_llm_judge_and_moderation_grade_a_local_run(standin, tmp_path):
    """provider=peft, graded through the SDK: the judge's 1-5 verdicts become the 'judge' metric, and the
    moderation endpoint decides which red-team answers are harmful."""
    from conftest import TINY

    standin.scenario.chat_reply = lambda request: (  # the pairwise judge's or the rubric judge's last line
        "Both meet the criteria.\nVERDICT: TIE" if "Answer B:" in request["messages"][-1]["content"]
        else "It mostly meets the rubric.\nGRADE: 4")
    standin.scenario.moderation_flags = lambda text: len(text) % 2 == 0  # deterministic, some flagged
    result = run_cli("train", f"paths.runs={tmp_path}", *TINY, "train.max_steps=30", "eval.limit=3",
                     "eval.few_shot=1", "eval.general=false", "eval.drift=false", "eval.safety_limit=4",
                     "eval.max_new_tokens=16", "eval.judge.model=gpt-4.1-mini-2025-04-14",
                     "eval.metrics=[exact_match,normalized_match,judge]", "eval.headline=exact_match",
                     "eval.safety_grader=openai_moderation")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir, record = the_run(tmp_path)
    (folder,) = list((run_dir / "eval").iterdir())
    report = json.loads((folder / "report.json").read_text())
    assert all(report["task"]["systems"][s]["judge"]["mean"] == pytest.approx(0.75) for s in ("base", "tuned"))
    assert report["judge"]["unreadable_verdicts"] == 0
    judged = standin.requests_to("POST", "/v1/chat/completions")  # 3 systems x 3 answers, 3 prompts x 2 orders
    assert len(judged) == 3 * 3 + 3 * 2 and all(r.json["model"] == "gpt-4.1-mini-2025-04-14" for r in judged)
    pairwise = report["judged"]
    assert pairwise["state"] == "uncalibrated" and pairwise["ties"] == 3 and pairwise["usage"]["calls"] == 15
    graded = report["safety"]["tuned"]["graded_by"]
    assert graded["grader"] + graded["refusal_detector"] == report["safety"]["tuned"]["n_redteam"]
    assert len(standin.requests_to("POST", "/v1/moderations")) > 0
    assert len(standin.requests_to("POST", "/v1/moderations")) == sum(
        report["safety"][s]["graded_by"]["grader"] for s in ("base", "tuned"))
