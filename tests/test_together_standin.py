"""The Together stand-in works with the real `together` SDK over HTTP; it checks requests and responses against
Together's spec and counts what breaks it; ftorch's client reaches it at /v1 or at the root (as Prism serves)."""

from __future__ import annotations

import json

import pytest
import together
from together.types import FileResponse, FinetuneResponse

from support.together_standin import SPEC_PATH, SpecValidationError, StandinHandle, start_standin

pytestmark = pytest.mark.skipif(not SPEC_PATH.is_file(), reason=f"Together spec not found at {SPEC_PATH}")
EXAMPLES = "".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                            {"role": "assistant", "content": f"a{i}"}]}) + "\n" for i in range(10))


@pytest.fixture
def standin():
    with start_standin() as handle:
        yield handle


def client_for(standin: StandinHandle) -> together.Together:
    return together.Together(base_url=standin.sdk_base_url, api_key=standin.api_key, max_retries=0)


def upload(client: together.Together) -> str:
    return client.post("/v1/files/upload", cast_to=FileResponse,
                       body={"purpose": "fine-tune", "file_name": "train.jsonl", "file_type": "jsonl"},
                       files={"file": ("train.jsonl", EXAMPLES.encode())},
                       options={"headers": {"Content-Type": "multipart/form-data"}}).id


def create(client: together.Together, file_id: str, **extra) -> FinetuneResponse:
    body = {"training_file": file_id, "model": "meta-llama/Llama-3.2-1B-Instruct", "n_epochs": 2,
            "training_method": {"method": "sft", "train_on_inputs": False},
            "training_type": {"type": "Lora", "lora_r": 8, "lora_alpha": 16}, "suffix": "demo", **extra}
    return client.post("/v1/fine-tunes", body=body, cast_to=FinetuneResponse)


def test_a_job_end_to_end_with_the_sdk_and_no_violation(standin):
    client = client_for(standin)
    file_id = upload(client)
    assert client.files.retrieve(file_id).bytes == len(EXAMPLES)
    estimate = client.fine_tuning.estimate_price(training_file=file_id, model="meta-llama/Llama-3.2-1B-Instruct",
                                                 n_epochs=2)
    assert estimate.estimated_total_price > 0 and estimate.allowed_to_proceed
    job = create(client, file_id)
    seen = [client.fine_tuning.retrieve(job.id).status for _ in range(7)]
    assert seen == ["queued", "running", "running", "running", "uploading", "completed", "completed"]
    assert [c.step for c in client.fine_tuning.list_checkpoints(job.id).data] == [9, 9, 6, 3]
    assert len(client.fine_tuning.list_metrics(job.id).metrics) == 9
    assert client.fine_tuning.list().data[0].suffix == "demo"
    assert client.fine_tuning.list_events(job.id).data[-1].type == "job_complete"
    assert standin.violations() == [] and standin.responses_validated >= 15


def test_an_invalid_request_is_answered_400_and_counted(standin):
    client = client_for(standin)
    with pytest.raises(together.BadRequestError):
        create(client, upload(client), n_epochs="three")
    assert len(standin.request_errors) == 1 and "n_epochs" in standin.request_errors[0]
    standin.request_errors.clear()


def test_cosine_scheduler_args_are_a_spec_violation(standin):
    """The spec's oneOf of cosine and linear args matches cosine args twice: why ftorch sends none."""
    client = client_for(standin)
    with pytest.raises(together.BadRequestError):
        create(client, upload(client), lr_scheduler={"lr_scheduler_type": "cosine",
                                                     "lr_scheduler_args": {"min_lr_ratio": 0.0, "num_cycles": 0.5}})
    assert standin.request_errors
    standin.request_errors.clear()


def test_a_response_that_breaks_the_spec_is_caught():
    handle = start_standin()
    handle.scenario.mutate_response = lambda method, path, body: {**body, "data": "nope"} \
        if path == "/fine-tunes" and method == "GET" else body
    client = client_for(handle)
    with pytest.raises(together.InternalServerError):
        client.fine_tuning.list()
    with pytest.raises(SpecValidationError):
        handle.stop()


def test_unsupported_model_and_faults(standin):
    client = client_for(standin)
    file_id = upload(client)
    with pytest.raises(together.BadRequestError):
        create(client, file_id, model="acme/nope")
    standin.inject(429, "/fine-tunes", method="POST")
    with pytest.raises(together.RateLimitError):
        create(client, file_id)
    standin.inject(402, "/fine-tunes", method="POST")
    with pytest.raises(together.APIStatusError) as raised:
        create(client, file_id)
    assert raised.value.status_code == 402
    assert standin.violations() == []


@pytest.mark.parametrize("suffix", ["/v1", ""])
def test_ftorch_client_reaches_the_api_root_with_or_without_v1(standin, monkeypatch, suffix):
    from ftorch.config.providers import TogetherProvider
    from ftorch.together_sdk import make_client

    monkeypatch.setenv("TOGETHER_API_KEY", standin.api_key)
    client = make_client(TogetherProvider(base_url=f"http://127.0.0.1:{standin.port}{suffix}", max_retries=0))
    assert client.fine_tuning.list().data == []
    assert standin.requests[-1].raw_path == f"{suffix}/fine-tunes"
