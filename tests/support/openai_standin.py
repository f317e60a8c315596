"""A local, stateful stand-in for OpenAI's files, fine-tuning and chat-completions API, for tests.

The official `openai` SDK talks to it over real HTTP on 127.0.0.1 (`base_url=handle.base_url`), and
`openai.AzureOpenAI(azure_endpoint=handle.azure_endpoint, ...)` works too. Every response it sends,
success or error, is validated against OpenAI's published spec before it leaves; a response that fails
raises inside the server, is recorded in `handle.validation_errors`, reaches the client as a 500 that
the SDK does not retry (`x-should-retry: false`), and makes `handle.stop()` (and so the fixture) fail.
Requests are validated too: an invalid one gets the 400 the real API would send and is recorded in
`handle.request_errors`.

    with start_standin() as standin:          # or the `openai_standin` fixture below
        client = openai.OpenAI(base_url=standin.base_url, api_key=standin.api_key, max_retries=2)
        standin.scenario.running_polls = 2     # job timeline, chat replies, 403 mode: see `Scenario`
        standin.inject("rate_limit", "/v1/fine_tuning/jobs", times=1)   # faults: see `inject`
        ...
        assert len(standin.requests_to("POST", "/v1/fine_tuning/jobs")) == 1

Jobs advance one tick on each retrieve (`GET /v1/fine_tuning/jobs/{id}`), never on list: validating_files
for `validating_polls` ticks (the create response counts as the first), queued for `queued_polls`,
running for `running_polls` (each emits "Step N/M: training loss=..." events and one checkpoint), then
succeeded (fine_tuned_model `ft:<model>:org:<suffix>:<job id without ftjob->`, trained_tokens, one
result file) or failed with `Scenario.error`. Job-related scenario fields are copied when a job is created.

Deviations from the spec
------------------------
- The spec fails openapi-core's own spec check (duplicate `required` entries): it is built with
  `spec_validator_cls=None`.
- 3.0-style keywords in this 3.1 document are rewritten to their 3.1 meaning after loading:
  `{minimum: m, exclusiveMinimum: true}` -> `{exclusiveMinimum: m}` (otherwise 0.5 is rejected as < 1), and
  `nullable: true` -> `type: [T, "null"]` / `null` added to `enum` / `anyOf: [schema, {type: "null"}]`
  (otherwise `validation_file: null` or `suffix: null` are rejected; in parameters, which cannot be null
  and whose `type` openapi-core needs as a string, `nullable` is just dropped), and
  `{type: string, format: binary}` loses `type` (3.1 gives file parts no type; otherwise every multipart
  upload is rejected because openapi-core hands the validator bytes).
- The spec's 107 `discriminator`s have no `mapping`, and their values are not schema names (`role: user`
  is not `#/components/schemas/user`): they are removed, and the `oneOf` they annotate decides alone.
- `FineTuningJob.status` lacks `paused`, which pause returns: `paused` is added to that enum, only there.
- Only 200 responses are documented: error bodies (400/401/403/404/429/500) are validated against
  `components/schemas/ErrorResponse` directly.
- `GET /files/{id}/content` is documented as `application/json` with a string schema; like the real API
  it sends raw bytes as `application/octet-stream`. The bytes are decoded as UTF-8 and that string is
  validated against the documented schema. Result files hold base64 text of the CSV, as the real API
  serves them (`Scenario.result_file_base64=False` for plain CSV).
- `ListFilesResponse` requires string `first_id`/`last_id`: an empty list sends `""` for both.
- Test hooks may break the spec on purpose (`Scenario.mutate_response`); the validator then reports them.
- Azure paths (`/openai/...`, `/openai/deployments/{name}/chat/completions`) are validated as `/v1/...`;
  the `api-version` query parameter and the `api-key` header are not in the spec and are stripped or mapped
  to `Authorization` for validation.
- Not modelled: streaming, `pausing`, the `reinforcement` method's graders, file expiry, integrations.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import fnmatch
import io
import json
import math
import os
import re
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import yaml

SPEC_PATH = Path(os.environ.get("FTORCH_OPENAI_SPEC")
                 or Path(__file__).resolve().parents[3] / "shared" / "openai" / "openapi.yaml")
TRAINING_NOT_AVAILABLE = ("OpenAI is winding down the fine-tuning platform and your organization is no longer able"
                          " to create new fine-tuning training jobs.")
RESULT_CSV_HEADER = "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
FILE_PURPOSES = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}
FaultKind = Literal["rate_limit", "server_error", "drop"]


class SpecValidationError(AssertionError):
    """A response the stand-in built does not match OpenAI's spec (a bug in the stand-in or a test hook)."""


# ---------------------------------------------------------------- spec loading (once per process)
_SPEC_LOCK = threading.Lock()
_SPEC: dict[str, Any] = {}


def _rewrite_30_keywords(node: Any, add_null: bool = True) -> Any:
    """Give 3.0-style keywords their 3.1 meaning (see "Deviations from the spec")."""
    if isinstance(node, list):
        return [_rewrite_30_keywords(item, add_null) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _rewrite_30_keywords(value, add_null and key != "parameters") for key, value in node.items()}
    if node.get("exclusiveMinimum") is True and "minimum" in node:
        node["exclusiveMinimum"] = node.pop("minimum")
    if node.get("type") == "string" and node.get("format") == "binary":  # 3.1 puts file parts in no type
        del node["type"]
    if isinstance(node.get("discriminator"), dict) and "mapping" not in node["discriminator"]:
        del node["discriminator"]  # implicit mapping would look up `#/components/schemas/<role>`; oneOf decides
    if node.pop("nullable", False) is True and add_null:
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
            if "enum" in node and None not in node["enum"]:
                node["enum"] = [*node["enum"], None]
        elif "$ref" in node or any(key in node for key in ("anyOf", "oneOf", "allOf")):
            node = {"anyOf": [node, {"type": "null"}]}
    return node


def load_spec() -> tuple[Any, Any]:
    """(openapi-core `OpenAPI`, ErrorResponse schema validator), built once per process (~1 s)."""
    with _SPEC_LOCK:
        if not _SPEC:
            from openapi_core import Config, OpenAPI
            from openapi_core.validation.schemas import oas31_schema_validators_factory

            if not SPEC_PATH.is_file():
                raise FileNotFoundError(f"OpenAI spec not found at {SPEC_PATH} (set FTORCH_OPENAI_SPEC)")
            with SPEC_PATH.open("rb") as stream:
                spec = _rewrite_30_keywords(yaml.load(stream, Loader=yaml.CSafeLoader))
            status = spec["components"]["schemas"]["FineTuningJob"]["properties"]["status"]
            status["enum"].append("paused")
            api = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
            error_schema = api.spec / "components" / "schemas" / "ErrorResponse"
            _SPEC["api"] = api
            _SPEC["error"] = oas31_schema_validators_factory.create(api.spec, error_schema)
        return _SPEC["api"], _SPEC["error"]


def _describe(exc: BaseException) -> str:
    causes = [exc, *(c for c in (exc.__cause__, exc.__context__) if c is not None)]
    details = [f"{e.json_path}: {e.message}" for c in causes for e in getattr(c, "schema_errors", ()) or ()]
    return f"{type(exc).__name__}: {'; '.join(details) if details else exc}"


# ---------------------------------------------------------------- configuration and records
def _default_reply(request: dict[str, Any]) -> str:
    return "This is the stand-in's reply."


@dataclasses.dataclass
class Scenario:
    """What the stand-in does; tests change fields on `handle.scenario` at any time."""

    api_key: str = "sk-standin-test-key"
    organization_id: str = "org-standin"
    organization_name: str = "org"  # the second field of fine-tuned model names
    validating_polls: int = 1
    queued_polls: int = 1
    running_polls: int = 3
    total_steps: int = 9
    outcome: Literal["succeeded", "failed"] = "succeeded"
    fail_stage: Literal["validating_files", "running"] = "running"
    error: dict[str, Any] = dataclasses.field(default_factory=lambda: {
        "code": "invalid_training_file", "param": "training_file",
        "message": "The job failed due to an invalid training file. Each line must be a JSON object."})
    trained_tokens: int | None = None  # default: training file bytes // 4 * epochs
    result_file_base64: bool = True
    training_not_available: bool = False  # job creation -> 403 training_not_available; uploads still work
    models: set[str] | None = None  # base models accepted for fine-tuning; None accepts any
    chat_reply: Callable[[dict[str, Any]], str] = _default_reply
    # Test hook: (method, /v1 path, body copy) -> body, applied before validation (to prove it catches bugs).
    mutate_response: Callable[[str, str, Any], Any] | None = None
    retry_after_ms: int = 1
    # /moderations: which inputs are flagged (default: none)
    moderation_flags: Callable[[str], bool] = lambda text: False


@dataclasses.dataclass
class RecordedRequest:
    method: str
    path: str  # normalized to /v1/...
    raw_path: str
    query: dict[str, str]  # includes Azure's api-version
    azure: bool
    idempotency_key: str | None  # the `Idempotency-Key` header (the SDK sends none unless told to)
    retry_count: int  # the SDK's `x-stainless-retry-count`
    json: Any = None
    form: dict[str, Any] | None = None  # multipart fields; files as {"filename", "bytes"}
    status: int | None = None  # None when the connection was dropped
    fault: str | None = None


@dataclasses.dataclass
class _Fault:
    kind: FaultKind
    path: str
    method: str
    remaining: int
    status: int


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _Drop(Exception):
    pass


def _metrics(step: int, with_valid: bool) -> dict[str, float]:
    metrics = {"train_loss": round(2.0 * 0.8 ** step, 4),
               "train_mean_token_accuracy": round(min(0.99, 0.5 + 0.05 * step), 4)}
    if with_valid:
        metrics.update(valid_loss=round(2.2 * 0.8 ** step, 4),
                       valid_mean_token_accuracy=round(min(0.98, 0.45 + 0.05 * step), 4))
    return metrics


def _page(items: list[dict[str, Any]], query: dict[str, str], default_limit: int) -> dict[str, Any]:
    """Cursor page over items already in response order; `after` is the last id of the previous page."""
    ids = [item["id"] for item in items]
    start = (ids.index(query["after"]) + 1 if query["after"] in ids else len(ids)) if "after" in query else 0
    limit = int(query.get("limit", default_limit))
    return {"object": "list", "data": items[start:start + limit], "has_more": start + limit < len(items)}


# ---------------------------------------------------------------- state and endpoints
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(f"^/v1{pattern}$"), name) for method, pattern, name in [
        ("POST", "/files", "create_file"), ("GET", "/files", "list_files"),
        ("GET", r"/files/(?P<id>[^/]+)", "retrieve_file"), ("DELETE", r"/files/(?P<id>[^/]+)", "delete_file"),
        ("GET", r"/files/(?P<id>[^/]+)/content", "file_content"),
        ("POST", "/fine_tuning/jobs", "create_job"), ("GET", "/fine_tuning/jobs", "list_jobs"),
        ("GET", r"/fine_tuning/jobs/(?P<id>[^/]+)", "retrieve_job"),
        ("POST", r"/fine_tuning/jobs/(?P<id>[^/]+)/(?P<action>cancel|pause|resume)", "job_action"),
        ("GET", r"/fine_tuning/jobs/(?P<id>[^/]+)/events", "list_events"),
        ("GET", r"/fine_tuning/jobs/(?P<id>[^/]+)/checkpoints", "list_checkpoints"),
        ("POST", "/chat/completions", "chat_completion"), ("POST", "/moderations", "moderation")]]


class _State:
    """In-memory files and jobs; `op_*` methods serve the routes above (called under `lock`)."""

    def __init__(self) -> None:
        self.scenario = Scenario()
        self.lock = threading.RLock()
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}  # id -> {job, scenario, tick, step, events, checkpoints}
        self.counter, self.clock = 0, 1_760_000_000

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter:06d}"

    def now(self) -> int:
        self.clock += 1
        return self.clock

    # ------------------------------------------------------------ files
    def add_file(self, filename: str, content: bytes, purpose: str) -> dict[str, Any]:
        file = {"id": self.new_id("file-standin"), "object": "file", "bytes": len(content), "created_at": self.now(),
                "filename": filename, "purpose": purpose, "status": "processed"}
        self.files[file["id"]], self.contents[file["id"]] = file, content
        return file

    def file(self, file_id: str, param: str | None = None) -> dict[str, Any]:
        if file_id not in self.files:
            raise ApiError(404 if param is None else 400, f"No such File object: {file_id}", param=param or "id",
                           code=None if param is None else "invalid_file")
        return self.files[file_id]

    def op_create_file(self, form: dict[str, Any], files: dict[str, tuple[str, bytes]], **_: Any) -> Any:
        if "file" not in files or form.get("purpose") not in FILE_PURPOSES:
            raise ApiError(400, "'file' and a valid 'purpose' are required.", param="purpose")
        return self.add_file(*files["file"], form["purpose"])

    def op_list_files(self, req: RecordedRequest, **_: Any) -> Any:
        items = [f for f in self.files.values() if req.query.get("purpose") in (None, f["purpose"])]
        page = _page(items if req.query.get("order") == "asc" else items[::-1], req.query, 10_000)
        ids = [f["id"] for f in page["data"]] or [""]
        return {**page, "first_id": ids[0], "last_id": ids[-1]}

    def op_retrieve_file(self, id: str, **_: Any) -> Any:
        return self.file(id)

    def op_delete_file(self, id: str, **_: Any) -> Any:
        self.file(id)
        del self.files[id], self.contents[id]
        return {"id": id, "object": "file", "deleted": True}

    def op_file_content(self, id: str, **_: Any) -> Any:
        self.file(id)
        return self.contents[id]

    # ------------------------------------------------------------ jobs
    def op_create_job(self, req: RecordedRequest, **_: Any) -> Any:
        body, scenario = req.json, self.scenario
        if scenario.training_not_available:
            raise ApiError(403, TRAINING_NOT_AVAILABLE, code="training_not_available")
        if scenario.models is not None and body["model"] not in scenario.models:
            raise ApiError(400, f"Model {body['model']} is not available for fine-tuning or does not exist.",
                           code="model_not_available", param="model")
        for param in ("training_file", "validation_file"):
            if body.get(param) is not None and self.file(body[param], param)["purpose"] != "fine-tune":
                raise ApiError(400, f"File {body[param]} does not have purpose 'fine-tune'.", param=param)
        method = copy.deepcopy(body.get("method") or {"type": "supervised", "supervised": {}})
        legacy = dict(body.get("hyperparameters") or {})  # the deprecated top-level form
        hyper = method.setdefault(method["type"], {}).setdefault("hyperparameters", legacy)
        for key in ("batch_size", "learning_rate_multiplier", "n_epochs", "beta")[:4 if method["type"] == "dpo" else 3]:
            hyper.setdefault(key, "auto")
        job_id = self.new_id("ftjob-standin")
        job = {"object": "fine_tuning.job", "id": job_id, "model": body["model"], "created_at": self.now(),
               "finished_at": None, "fine_tuned_model": None, "organization_id": scenario.organization_id,
               "result_files": [], "status": "validating_files", "validation_file": body.get("validation_file"),
               "training_file": body["training_file"], "trained_tokens": None, "error": None,
               "hyperparameters": {k: v for k, v in hyper.items() if k != "beta"}, "method": method,
               "seed": body.get("seed", 42), "estimated_finish": None, "integrations": [],
               "metadata": body.get("metadata"), "user_provided_suffix": body.get("suffix")}
        name = f"ft:{job['model']}:{scenario.organization_name}:{body.get('suffix') or ''}:{job_id[6:]}"
        self.jobs[job_id] = {"job": job, "scenario": copy.copy(scenario), "tick": 0, "step": 0, "name": name,
                             "events": [], "checkpoints": []}
        self.event(job_id, f"Validating training file: {job['training_file']}")
        return job

    def record(self, job_id: str) -> dict[str, Any]:
        if job_id not in self.jobs:
            raise ApiError(404, f"Could not find fine-tune job: {job_id}", param="fine_tuning_job_id",
                           code="fine_tune_not_found")
        return self.jobs[job_id]

    def event(self, job_id: str, message: str, level: str = "info", data: dict[str, Any] | None = None) -> None:
        event = {"object": "fine_tuning.job.event", "id": self.new_id("ftevent-standin"), "created_at": self.now(),
                 "level": level, "message": message, "type": "metrics" if data else "message"}
        self.jobs[job_id]["events"].append({**event, "data": data} if data else event)

    def advance(self, job_id: str) -> None:
        """One tick of a job's timeline (each retrieve makes one)."""
        rec = self.record(job_id)
        job, sc = rec["job"], rec["scenario"]
        if job["status"] in ("succeeded", "failed", "cancelled", "paused"):
            return
        rec["tick"] += 1
        tick, queued_from = rec["tick"], max(1, sc.validating_polls)
        running_from = queued_from + sc.queued_polls
        if tick >= queued_from and sc.outcome == "failed" and sc.fail_stage == "validating_files":
            return self.finish(job_id, "failed")
        if tick >= queued_from and job["status"] == "validating_files":
            job["status"] = "queued"
            self.event(job_id, "Files validated, moving job to queued state")
        if tick >= running_from and job["status"] == "queued":
            job["status"] = "running"
            resolved = {"batch_size": 1, "learning_rate_multiplier": 1.8, "n_epochs": 3, "beta": 0.1}
            hyper = job["method"][job["method"]["type"]]["hyperparameters"]
            hyper.update({k: resolved[k] for k, v in hyper.items() if v == "auto" and k in resolved})
            job["hyperparameters"] = {k: v for k, v in hyper.items() if k != "beta"}
            self.event(job_id, "Fine-tuning job started")
        if job["status"] != "running":
            return
        poll, with_valid = tick - running_from + 1, job["validation_file"] is not None
        if poll > sc.running_polls:
            return self.finish(job_id, sc.outcome)
        target = math.ceil(poll * sc.total_steps / max(1, sc.running_polls))
        for step in range(rec["step"] + 1, target + 1):
            metrics = _metrics(step, with_valid)
            self.event(job_id, f"Step {step}/{sc.total_steps}: training loss={metrics['train_loss']:.4f}",
                       data={"step": step, "total_steps": sc.total_steps, **metrics})
        if target > rec["step"]:
            rec["step"] = target
            rec["checkpoints"].append({
                "object": "fine_tuning.job.checkpoint", "id": self.new_id("ftckpt-standin"),
                "created_at": self.now(), "fine_tuning_job_id": job_id, "step_number": target,
                "fine_tuned_model_checkpoint": f"{rec['name']}:ckpt-step-{target}",
                "metrics": {"step": target, **_metrics(target, with_valid)}})

    def finish(self, job_id: str, status: str) -> None:
        rec = self.jobs[job_id]
        job, sc = rec["job"], rec["scenario"]
        job.update(status=status, finished_at=self.now())
        if status == "failed":
            job["error"] = {"code": sc.error["code"], "message": sc.error["message"], "param": sc.error.get("param")}
            return self.event(job_id, job["error"]["message"], level="error")
        if status == "cancelled":
            return self.event(job_id, "Fine-tuning job cancelled")
        epochs = job["hyperparameters"]["n_epochs"] if isinstance(job["hyperparameters"]["n_epochs"], int) else 3
        rows = [RESULT_CSV_HEADER]
        for step in range(1, sc.total_steps + 1):
            m = _metrics(step, job["validation_file"] is not None)
            rows.append(f"{step},{m['train_loss']},{m['train_mean_token_accuracy']},{m.get('valid_loss', '')},"
                        f"{m.get('valid_mean_token_accuracy', '')}")
        csv = ("\n".join(rows) + "\n").encode()
        result = self.add_file("step_metrics.csv", base64.b64encode(csv) if sc.result_file_base64 else csv,
                               "fine-tune-results")
        tokens = sc.trained_tokens or max(1, self.files[job["training_file"]]["bytes"] // 4) * epochs
        job.update(fine_tuned_model=rec["name"], result_files=[result["id"]], trained_tokens=tokens)
        self.event(job_id, f"New fine-tuned model created: {rec['name']}")
        self.event(job_id, "The job has successfully completed")

    def op_list_jobs(self, req: RecordedRequest, **_: Any) -> Any:
        wanted = {k[9:-1]: v for k, v in req.query.items() if k.startswith("metadata[")}
        jobs = [r["job"] for r in reversed(self.jobs.values())
                if all((r["job"]["metadata"] or {}).get(k) == v for k, v in wanted.items())]
        return _page(jobs, req.query, 20)

    def op_retrieve_job(self, id: str, **_: Any) -> Any:
        self.advance(id)
        return self.record(id)["job"]

    def op_job_action(self, id: str, action: str, **_: Any) -> Any:
        job = self.record(id)["job"]
        allowed = {"cancel": ("validating_files", "queued", "running", "paused"), "pause": ("running",),
                   "resume": ("paused",)}[action]
        if job["status"] not in allowed:
            raise ApiError(400, f"Cannot {action} job {id} with status {job['status']}.", param="fine_tuning_job_id")
        if action == "cancel":
            self.finish(id, "cancelled")
        else:
            job["status"] = "paused" if action == "pause" else "running"
            self.event(id, f"Fine-tuning job {'paused' if action == 'pause' else 'resumed'}")
        return job

    def op_list_events(self, id: str, req: RecordedRequest, **_: Any) -> Any:
        return _page(self.record(id)["events"][::-1], req.query, 20)  # newest first, like the real API

    def op_list_checkpoints(self, id: str, req: RecordedRequest, **_: Any) -> Any:
        page = _page(self.record(id)["checkpoints"][::-1], req.query, 10)
        ids = [c["id"] for c in page["data"]] or [None]
        return {**page, "first_id": ids[0], "last_id": ids[-1]}

    # ------------------------------------------------------------ chat
    def op_moderation(self, req: RecordedRequest, **_: Any) -> Any:
        given = req.json["input"]
        texts = [given] if isinstance(given, str) else [t if isinstance(t, str) else t.get("text", "") for t in given]
        categories = ["hate", "hate/threatening", "harassment", "harassment/threatening", "illicit",
                      "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions", "sexual",
                      "sexual/minors", "violence", "violence/graphic"]
        results = []
        for text in texts:
            flagged = bool(self.scenario.moderation_flags(text))
            results.append({"flagged": flagged,
                            "categories": {c: flagged and c == "violence" for c in categories},
                            "category_scores": {c: 0.9 if flagged and c == "violence" else 0.001 for c in categories},
                            "category_applied_input_types": {c: ["text"] for c in categories}})
        return {"id": self.new_id("modr-"), "model": req.json.get("model") or "omni-moderation-latest",
                "results": results}

    def op_chat_completion(self, req: RecordedRequest, **_: Any) -> Any:
        body, model = req.json, req.json["model"]
        if body.get("stream"):
            raise ApiError(400, "The stand-in does not support streaming.", param="stream")
        if model.startswith("ft:") and not any(r["job"]["fine_tuned_model"] == model for r in self.jobs.values()):
            raise ApiError(404, f"The model `{model}` does not exist or you do not have access to it.",
                           code="model_not_found")
        reply = self.scenario.chat_reply(body)
        prompt = sum(len(str(m.get("content") or "").split()) + 3 for m in body["messages"]) + 3
        message = {"role": "assistant", "content": reply, "refusal": None, "annotations": []}
        return {"id": self.new_id("chatcmpl-standin"), "object": "chat.completion", "created": self.now(),
                "model": model, "service_tier": "default",
                "choices": [{"index": i, "finish_reason": "stop", "logprobs": None, "message": message}
                            for i in range(int(body.get("n") or 1))],
                "usage": {"prompt_tokens": prompt, "completion_tokens": len(reply.split()),
                          "total_tokens": prompt + len(reply.split())}}


# ---------------------------------------------------------------- HTTP plumbing
def _normalize(raw_path: str) -> tuple[str, bool]:
    """Map OpenAI and Azure OpenAI URL shapes onto `/v1/...`; returns (path, is_azure)."""
    if not raw_path.startswith("/openai/"):
        return raw_path, False
    rest = re.sub(r"^/deployments/[^/]+(?=/(chat/)?completions$|/embeddings$)", "", raw_path[len("/openai"):])
    return "/v1" + rest, True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self.server.standin.handle(self)

    do_POST = do_DELETE = do_GET

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        self.rfile.readline()
        return b"".join(chunks)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: StandinHandle


class StandinHandle:
    """A running stand-in (see the module docstring); `start_standin()` makes one."""

    def __init__(self) -> None:
        self.api, self.error_validator = load_spec()
        self._state = _State()
        self.requests: list[RecordedRequest] = []
        self.validation_errors: list[str] = []  # responses that broke the spec (stop() raises on any)
        self.request_errors: list[str] = []  # requests that broke the spec (answered 400)
        self.responses_validated = 0
        self._faults: list[_Fault] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.azure_endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"openai-standin-{self.port}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ test-facing API
    @property
    def scenario(self) -> Scenario:
        return self._state.scenario

    @property
    def api_key(self) -> str:
        return self._state.scenario.api_key

    def inject(self, kind: FaultKind, path: str = "*", *, method: str = "*", times: int = 1,
               status: int | None = None) -> None:
        """The next `times` requests whose /v1 path matches the glob `path` (and `method`) fail with `kind`:
        rate_limit -> 429, server_error -> 500 (or `status`), drop -> socket closed with no response.
        Faults come before the key check and never reach the endpoints (a failed retrieve does not tick)."""
        code = status or {"rate_limit": 429, "server_error": 500, "drop": 0}[kind]
        with self._state.lock:
            self._faults.append(_Fault(kind, path, method.upper(), times, code))

    def requests_to(self, method: str, path: str = "*") -> list[RecordedRequest]:
        """Recorded requests by method and /v1 path glob, e.g. `requests_to("POST", "/v1/fine_tuning/jobs")`."""
        return [r for r in self.requests if r.method == method.upper() and fnmatch.fnmatchcase(r.path, path)]

    def job(self, job_id: str) -> dict[str, Any]:
        """A copy of a job as the API would show it now (does not advance it)."""
        with self._state.lock:
            return copy.deepcopy(self._state.record(job_id)["job"])

    def file_bytes(self, file_id: str) -> bytes:
        with self._state.lock:
            return self._state.contents[file_id]

    def stop(self, check: bool = True) -> None:
        """Stop serving; with `check`, raise SpecValidationError if any response failed validation."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if check and self.validation_errors:
            raise SpecValidationError("stand-in responses failed OpenAI spec validation:\n" +
                                      "\n".join(self.validation_errors))

    def __enter__(self) -> StandinHandle:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.stop(check=exc_type is None)

    # ------------------------------------------------------------ request handling
    def handle(self, http: _Handler) -> None:
        url = urlsplit(http.path)
        path, azure = _normalize(url.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        body, ctype = http.read_body(), http.headers.get("Content-Type", "")
        req = RecordedRequest(http.command, path, url.path, query, azure, http.headers.get("Idempotency-Key"),
                              int(http.headers.get("x-stainless-retry-count") or 0))
        form: dict[str, Any] = {}
        files: dict[str, tuple[str, bytes]] = {}
        if ctype.startswith("multipart/form-data"):
            from werkzeug.formparser import parse_form_data

            environ = {"wsgi.input": io.BytesIO(body), "CONTENT_TYPE": ctype, "CONTENT_LENGTH": str(len(body)),
                       "REQUEST_METHOD": "POST"}
            _, parsed_form, parsed_files = parse_form_data(environ)
            form = dict(parsed_form)
            files = {name: (f.filename or name, f.read()) for name, f in parsed_files.items()}
            req.form = {**form, **{n: {"filename": fn, "bytes": len(data)} for n, (fn, data) in files.items()}}
        elif body:
            try:
                req.json = json.loads(body)
            except ValueError:
                req.json = body.decode("utf-8", "replace")
        self.requests.append(req)
        bearer = (http.headers.get("Authorization") or "").removeprefix("Bearer ")
        auth = (http.headers.get("api-key") or bearer) if azure else bearer
        try:
            with self._state.lock:
                status, result, headers = 200, copy.deepcopy(self._dispatch(req, auth, ctype, body, form, files)), {}
        except _Drop:
            req.fault = "drop"
            http.close_connection = True
            http.connection.shutdown(socket.SHUT_RDWR)
            return
        except ApiError as error:
            status, result, headers = error.status, error.body, error.headers
        if self.scenario.mutate_response is not None:
            result = self.scenario.mutate_response(req.method, req.path, result)
        binary = isinstance(result, bytes)
        payload = result if binary else json.dumps(result).encode()
        try:
            self._validate(req, status, payload, binary)
        except SpecValidationError as error:  # raised in the server: recorded, sent as a 500 not to retry
            self.validation_errors.append(str(error))
            status, headers, binary = 500, {"x-should-retry": "false"}, False
            payload = json.dumps({"error": {"message": str(error), "type": "standin_spec_violation",
                                            "param": None, "code": None}}).encode()
        req.status = status
        http.send_response(status)
        for name, value in {"Content-Type": "application/octet-stream" if binary else "application/json",
                            "Content-Length": str(len(payload)), "x-request-id": f"req_standin{len(self.requests)}",
                            **headers}.items():
            http.send_header(name, value)
        http.end_headers()
        http.wfile.write(payload)

    def _dispatch(self, req: RecordedRequest, auth: str | None, ctype: str, body: bytes,
                  form: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> Any:
        for fault in self._faults:
            if fault.remaining > 0 and fnmatch.fnmatchcase(req.path, fault.path) and fault.method in ("*", req.method):
                fault.remaining -= 1
                req.fault = fault.kind
                if fault.kind == "drop":
                    raise _Drop()
                retry = {"retry-after-ms": str(self.scenario.retry_after_ms), "retry-after": "0"}
                if fault.kind == "rate_limit":
                    raise ApiError(fault.status, "Rate limit reached for requests. Please try again shortly.",
                                   type_="requests", code="rate_limit_exceeded", headers=retry)
                raise ApiError(fault.status, "The server had an error while processing your request. Sorry about "
                               "that!", type_="server_error", headers=retry)
        if auth != self.scenario.api_key:
            shown = (auth or "")[:3] + "*" * max(0, len(auth or "") - 7) + (auth or "")[-4:]
            raise ApiError(401, f"Incorrect API key provided: {shown}. You can find your API key at "
                                "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
        for method, pattern, name in _ROUTES:
            match = pattern.match(req.path)
            if match and method == req.method:
                self._validate_request(req, ctype, body)
                return getattr(self._state, f"op_{name}")(req=req, form=form, files=files, **match.groupdict())
        raise ApiError(404, f"Invalid URL ({req.method} {req.path})")

    # ------------------------------------------------------------ validation
    def _mock_request(self, req: RecordedRequest, ctype: str = "application/json", body: bytes = b"") -> Any:
        from openapi_core.testing import MockRequest

        args = {k: v for k, v in req.query.items() if not (req.azure and k == "api-version")}
        return MockRequest("https://api.openai.com", req.method, req.path, args=args, data=body,
                           headers={"Authorization": "Bearer standin", "Content-Type": ctype}, content_type=ctype)

    def _validate_request(self, req: RecordedRequest, ctype: str, body: bytes) -> None:
        try:
            self.api.validate_request(self._mock_request(req, ctype or "application/json", body))
        except Exception as exc:  # openapi-core raises several unrelated classes
            self.request_errors.append(f"{req.method} {req.path}: {_describe(exc)}")
            raise ApiError(400, f"Invalid request: {_describe(exc)}") from exc

    def _validate(self, req: RecordedRequest, status: int, payload: bytes, binary: bool) -> None:
        from openapi_core.testing import MockResponse

        with self._state.lock:
            self.responses_validated += 1
        try:
            if status != 200:
                return self.error_validator.validate(json.loads(payload))
            if binary:  # documented as a JSON string: validate the bytes as one
                payload = json.dumps(payload.decode("utf-8", "replace")).encode()
            self.api.validate_response(self._mock_request(req), MockResponse(payload, status_code=status))
        except Exception as exc:
            raise SpecValidationError(f"{req.method} {req.path} -> {status}: {_describe(exc)}") from exc


def start_standin() -> StandinHandle:
    """Start a stand-in on a free loopback port; use it as a context manager or call `.stop()`."""
    return StandinHandle()
