"""The OpenAI stand-in works with the real `openai` SDK over HTTP, and its responses follow OpenAI's spec."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import openai
import pytest

from support.openai_standin import (
    SPEC_PATH,
    TRAINING_NOT_AVAILABLE,
    SpecValidationError,
    StandinHandle,
    start_standin,
)

pytestmark = pytest.mark.skipif(not SPEC_PATH.is_file(), reason=f"OpenAI spec not found at {SPEC_PATH}")

EXAMPLES = "".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                            {"role": "assistant", "content": f"a{i}"}]}) + "\n" for i in range(10))


def client_for(standin: StandinHandle, max_retries: int = 0, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=standin.base_url, api_key=standin.api_key, max_retries=max_retries, **kwargs)


def upload(client: openai.OpenAI, name: str = "train.jsonl") -> str:
    return client.files.create(file=(name, EXAMPLES.encode()), purpose="fine-tune").id


def poll(client: openai.OpenAI, job_id: str, limit: int = 20) -> list[str]:
    seen = []
    for _ in range(limit):
        job = client.fine_tuning.jobs.retrieve(job_id)
        seen.append(job.status)
        if job.status in ("succeeded", "failed", "cancelled"):
            return seen
    raise AssertionError(f"job never finished: {seen}")


def test_supervised_job_end_to_end(openai_standin: StandinHandle) -> None:
    client = client_for(openai_standin)
    training, validation = upload(client), upload(client, "valid.jsonl")
    assert client.files.retrieve(training).filename == "train.jsonl"
    assert {f.id for f in client.files.list(purpose="fine-tune")} == {training, validation}
    assert client.files.content(training).read() == EXAMPLES.encode()

    job = client.fine_tuning.jobs.create(
        model="gpt-4.1-mini-2025-04-14", training_file=training, validation_file=validation, suffix="demo", seed=7,
        method={"type": "supervised",
                "supervised": {"hyperparameters": {"n_epochs": 2, "learning_rate_multiplier": 0.5}}},
        metadata={"run": "r1"})
    assert job.status == "validating_files" and job.seed == 7
    assert poll(client, job.id) == ["queued", "running", "running", "running", "succeeded"]

    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.fine_tuned_model == f"ft:gpt-4.1-mini-2025-04-14:org:demo:{job.id.removeprefix('ftjob-')}"
    assert done.trained_tokens and done.finished_at and done.error is None
    assert done.hyperparameters.n_epochs == 2 and done.hyperparameters.batch_size == 1  # auto resolved
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"run": "r1"})] == [job.id]
    assert list(client.fine_tuning.jobs.list(metadata={"run": "other"})) == []

    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    messages = [e.message for e in events]
    assert messages[0] == "The job has successfully completed"  # newest first
    assert "Step 9/9: training loss=0.2684" in messages and messages[-1].startswith("Validating training file")
    first = client.fine_tuning.jobs.list_events(job.id, limit=3)
    assert first.has_more and len(first.data) == 3
    following = client.fine_tuning.jobs.list_events(job.id, after=first.data[-1].id, limit=3).data
    assert [e.id for e in following] == [e.id for e in events[3:6]]
    assert len(list(client.fine_tuning.jobs.list_events(job.id, limit=4))) == len(events)  # auto-pagination

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [9, 6, 3]
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-9"
    assert checkpoints[0].metrics.valid_loss is not None

    result = client.files.retrieve(done.result_files[0])
    assert result.purpose == "fine-tune-results"
    csv = base64.b64decode(client.files.content(result.id).read()).decode()
    lines = csv.splitlines()
    assert lines[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy" and len(lines) == 10
    assert len(openai_standin.requests_to("POST", "/v1/fine_tuning/jobs")) == 1
    assert openai_standin.requests_to("POST", "/v1/fine_tuning/jobs")[0].json["suffix"] == "demo"
    assert openai_standin.requests_to("POST", "/v1/files")[0].form == {
        "purpose": "fine-tune", "file": {"filename": "train.jsonl", "bytes": len(EXAMPLES)}}
    assert openai_standin.responses_validated == len(openai_standin.requests)  # every response was checked


def test_dpo_job_and_plain_csv(openai_standin: StandinHandle) -> None:
    openai_standin.scenario.result_file_base64 = False
    openai_standin.scenario.running_polls = 1
    client = client_for(openai_standin)
    job = client.fine_tuning.jobs.create(model="gpt-4.1-2025-04-14", training_file=upload(client),
                                         method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}})
    assert poll(client, job.id)[-1] == "succeeded"
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.method.dpo.hyperparameters.beta == 0.1 and done.hyperparameters.n_epochs == 3
    csv = client.files.content(done.result_files[0]).read().decode()
    assert csv.splitlines()[1] == "1,1.6,0.55,,"


def test_cancel(openai_standin: StandinHandle) -> None:
    client = client_for(openai_standin)
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=upload(client),
                                         validation_file=None, suffix=None)  # explicit nulls are spec-valid
    client.fine_tuning.jobs.retrieve(job.id)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)


def test_pause_and_resume(openai_standin: StandinHandle) -> None:
    client = client_for(openai_standin)
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=upload(client))
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.pause(job.id)  # not running yet
    assert [client.fine_tuning.jobs.retrieve(job.id).status for _ in range(2)] == ["queued", "running"]
    assert client.fine_tuning.jobs.pause(job.id).status == "paused"
    assert client.fine_tuning.jobs.retrieve(job.id).status == "paused"  # frozen while paused
    assert client.fine_tuning.jobs.resume(job.id).status == "running"
    assert poll(client, job.id)[-1] == "succeeded"
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=50)]
    assert "Fine-tuning job paused" in messages and "Fine-tuning job resumed" in messages


@pytest.mark.parametrize("stage", ["validating_files", "running"])
def test_failed_job_carries_error(openai_standin: StandinHandle, stage: str) -> None:
    openai_standin.scenario.outcome = "failed"
    openai_standin.scenario.fail_stage = stage
    openai_standin.scenario.error = {"code": "invalid_n_examples", "param": "training_file",
                                     "message": "Training file has 3 example(s), but must have at least 10 examples"}
    client = client_for(openai_standin)
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=upload(client))
    statuses = poll(client, job.id)
    assert statuses[-1] == "failed" and ("running" in statuses) == (stage == "running")
    failed = client.fine_tuning.jobs.retrieve(job.id)
    assert failed.error.code == "invalid_n_examples" and failed.error.param == "training_file"
    assert failed.fine_tuned_model is None and failed.result_files == []


def test_unknown_ids_and_bad_requests(openai_standin: StandinHandle) -> None:
    client = client_for(openai_standin)
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-nope")
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file="file-nope")
    assert caught.value.body["param"] == "training_file"
    with pytest.raises(openai.BadRequestError, match="Invalid request"):  # spec-invalid: n_epochs > 50
        client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=upload(client), method={
            "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 99}}})
    assert len(openai_standin.request_errors) == 1 and "n_epochs" in openai_standin.request_errors[0]


def test_rate_limit_then_success(openai_standin: StandinHandle) -> None:
    openai_standin.inject("rate_limit", "/v1/fine_tuning/jobs", method="POST", times=2)
    client = client_for(openai_standin, max_retries=2)
    training = upload(client)
    started = time.monotonic()
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=training)
    assert time.monotonic() - started < 1.0  # retry-after-ms: 1 was honoured
    attempts = openai_standin.requests_to("POST", "/v1/fine_tuning/jobs")
    assert [(r.status, r.fault, r.retry_count) for r in attempts] == [
        (429, "rate_limit", 0), (429, "rate_limit", 1), (200, None, 2)]
    assert len(client.fine_tuning.jobs.list().data) == 1 and job.id


def test_rate_limit_exhausts_retries(openai_standin: StandinHandle) -> None:
    openai_standin.inject("rate_limit", "/v1/files", times=5)
    with pytest.raises(openai.RateLimitError) as caught:
        upload(client_for(openai_standin, max_retries=1))
    assert caught.value.code == "rate_limit_exceeded" and len(openai_standin.requests) == 2


def test_idempotency_key_is_recorded_across_retries(openai_standin: StandinHandle) -> None:
    openai_standin.inject("server_error", "/v1/fine_tuning/jobs", method="POST")
    client = client_for(openai_standin, max_retries=1)
    client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=upload(client),
                                   extra_headers={"Idempotency-Key": "ftorch-run-1"})
    attempts = openai_standin.requests_to("POST", "/v1/fine_tuning/jobs")
    assert [(r.idempotency_key, r.status) for r in attempts] == [("ftorch-run-1", 500), ("ftorch-run-1", 200)]
    assert openai_standin.requests_to("POST", "/v1/files")[0].idempotency_key is None  # the SDK sends none itself


def test_server_error_is_retried(openai_standin: StandinHandle) -> None:
    openai_standin.inject("server_error", "/v1/fine_tuning/jobs/*", times=1)
    client = client_for(openai_standin, max_retries=2)
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=upload(client))
    assert client.fine_tuning.jobs.retrieve(job.id).status == "queued"  # the failed attempt did not tick
    with pytest.raises(openai.InternalServerError):
        openai_standin.inject("server_error", "/v1/fine_tuning/jobs/*", status=503, times=3)
        client.fine_tuning.jobs.retrieve(job.id)
    assert [r.status for r in openai_standin.requests_to("GET")] == [500, 200, 503, 503, 503]


def test_dropped_connection_is_retried(openai_standin: StandinHandle) -> None:
    openai_standin.inject("drop", "/v1/files", method="POST")
    client = client_for(openai_standin, max_retries=1)
    file_id = upload(client)
    attempts = openai_standin.requests_to("POST", "/v1/files")
    assert [(r.status, r.fault) for r in attempts] == [(None, "drop"), (200, None)]
    assert [f.id for f in client.files.list()] == [file_id]  # exactly one file was stored
    openai_standin.inject("drop", "/v1/files")
    with pytest.raises(openai.APIConnectionError):
        client_for(openai_standin).files.list()


def test_wrong_key_is_401(openai_standin: StandinHandle) -> None:
    client = openai.OpenAI(base_url=openai_standin.base_url, api_key="sk-wrong-key-1234", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.files.list()
    assert caught.value.code == "invalid_api_key" and "1234" in caught.value.message


def test_training_not_available_is_403(openai_standin: StandinHandle) -> None:
    openai_standin.scenario.training_not_available = True
    client = client_for(openai_standin, max_retries=2)
    file_id = upload(client)  # uploads still work
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=file_id)
    error = caught.value
    assert error.status_code == 403 and error.code == "training_not_available"
    assert error.body["type"] == "invalid_request_error" and error.body["message"] == TRAINING_NOT_AVAILABLE
    assert len(openai_standin.requests_to("POST", "/v1/fine_tuning/jobs")) == 1  # the SDK does not retry 403
    assert client.files.retrieve(file_id).status == "processed"


def test_chat_completion(openai_standin: StandinHandle) -> None:
    client = client_for(openai_standin)
    reply = client.chat.completions.create(model="gpt-4o-mini-2024-07-18",
                                           messages=[{"role": "user", "content": "Say hi"}], temperature=0)
    assert reply.choices[0].message.content == "This is the stand-in's reply."
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0

    openai_standin.scenario.chat_reply = lambda request: request["messages"][-1]["content"].upper()
    reply = client.chat.completions.create(model="gpt-4o-mini-2024-07-18", n=2,
                                           messages=[{"role": "system", "content": "echo"},
                                                     {"role": "user", "content": "shout this"}])
    assert [c.message.content for c in reply.choices] == ["SHOUT THIS", "SHOUT THIS"]
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="ft:gpt-4o-mini:org::unknown",
                                       messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "model_not_found"


def test_azure_client_flow(openai_standin: StandinHandle) -> None:
    azure = openai.AzureOpenAI(azure_endpoint=openai_standin.azure_endpoint, api_version="2025-04-01-preview",
                               api_key=openai_standin.api_key, max_retries=0)
    file_id = azure.files.create(file=("train.jsonl", EXAMPLES.encode()), purpose="fine-tune").id
    job = azure.fine_tuning.jobs.create(model="gpt-4.1-mini-2025-04-14", training_file=file_id)
    statuses = [azure.fine_tuning.jobs.retrieve(job.id).status for _ in range(5)]
    assert statuses[-1] == "succeeded"
    assert azure.fine_tuning.jobs.list_events(job.id).data
    reply = azure.chat.completions.create(model="my-deployment", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    raw = [(r.method, r.raw_path, r.azure) for r in openai_standin.requests[:3]]
    assert raw == [("POST", "/openai/files", True), ("POST", "/openai/fine_tuning/jobs", True),
                   ("GET", f"/openai/fine_tuning/jobs/{job.id}", True)]
    assert openai_standin.requests[-1].raw_path == "/openai/deployments/my-deployment/chat/completions"
    assert all(r.status == 200 and r.query["api-version"] == "2025-04-01-preview" for r in openai_standin.requests)

    wrong = openai.AzureOpenAI(azure_endpoint=openai_standin.azure_endpoint, api_version="2025-04-01-preview",
                               api_key="bad", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.files.list()


def test_malformed_response_is_caught() -> None:
    standin = start_standin()
    try:
        def drop_status(method: str, path: str, body: object) -> object:
            if method == "GET" and isinstance(body, dict) and body.get("object") == "fine_tuning.job":
                return {k: v for k, v in body.items() if k != "status"}
            return body

        standin.scenario.mutate_response = drop_status
        client = client_for(standin, max_retries=2)
        job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=upload(client))
        with pytest.raises(openai.InternalServerError, match="status"):
            client.fine_tuning.jobs.retrieve(job.id)
        assert len(standin.requests_to("GET")) == 1  # x-should-retry: false stopped the SDK's retries
        assert len(standin.validation_errors) == 1 and "'status' is a required property" in standin.validation_errors[0]
    finally:
        with pytest.raises(SpecValidationError, match="failed OpenAI spec validation"):
            standin.stop()


def test_bad_error_body_is_caught() -> None:
    with pytest.raises(SpecValidationError), start_standin() as standin:
        standin.scenario.mutate_response = lambda method, path, body: {"error": {"message": "no type"}}
        with pytest.raises(openai.InternalServerError):
            client_for(standin).fine_tuning.jobs.retrieve("ftjob-nope")


def test_spec_is_loaded_once() -> None:
    started = time.monotonic()
    with start_standin(), start_standin():
        pass
    assert time.monotonic() - started < 0.5
