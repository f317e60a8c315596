"""A local, stateful stand-in for Together AI's files, fine-tuning and chat-completions API, for tests.

The official `together` SDK talks to it over real HTTP on 127.0.0.1 (`Together(base_url=handle.sdk_base_url)`;
ftorch's `provider.base_url` is `handle.base_url`, the spec's `.../v1` root). Paths are served both under `/v1`
(where the SDK sends them) and at the root (where Prism serves the spec). Every request and every response,
success or error, is validated against Together's published spec (`../shared/together/openapi.yaml`) with
openapi-core: an invalid request is answered 400 and recorded in `handle.request_errors`; an invalid response
is recorded in `handle.validation_errors`, sent as a 500 the SDK does not retry, and makes `handle.stop()` (and
so the fixture) fail. `handle.violations()` counts both.

    with start_standin() as standin:
        client = together.Together(base_url=standin.sdk_base_url, api_key=standin.api_key, max_retries=0)
        standin.scenario.running_polls = 2         # the job's timeline and the downloaded adapter: `Scenario`
        standin.inject(429, "/fine-tunes", times=1)  # faults by status: see `inject`

Jobs advance one tick on each retrieve (`GET /fine-tunes/{id}`), never on list: pending, queued, running for
`running_polls` ticks (each logs a `checkpoint_save` event, a checkpoint and train/loss metrics), uploading,
then completed (or `error`, with a `job_error` event). `GET /finetune/download?ft_id=...&checkpoint=adapter`
sends `Scenario.adapter_dir` (a PEFT adapter folder) as a gzip'd tar, as the real API sends an archive.

Deviations from the spec
------------------------
- The SDK's own upload goes to `POST /v1/files` (not in the spec) then a signed URL: ftorch uses the spec's
  `POST /files/upload` (multipart with the file's bytes), which is what is served here.
- `nullable: true` (a 3.0 keyword) is rewritten to its 3.1 meaning after loading, and `format: binary` file
  parts lose `type: string` (openapi-core hands the validator bytes).
- `discriminator`s without a `mapping` are removed: openapi-core would resolve a value such as
  `response_format.type: json_schema` to `#/components/schemas/json_schema`, which does not exist; the
  `anyOf`/`oneOf` they annotate decides alone (as in Prism).
- `FinetuneEventLevels` lists `null` among strings; events send `info`/`error`.
- Error statuses a path does not document (402, 429 and 5xx on most paths) are validated against
  `components/schemas/ErrorData` directly; `/finetune/download` documents no body for its 400/404.
- `/files/{id}/content`, `/finetune/download` (binary) responses are not schema-checked beyond their status.
- `FinetuneResponse.id` has `format: uuid`, while the real API's ids start with `ft-`: the stand-in's job ids
  are plain uuids, which both response schemas accept.
- The spec's `lr_scheduler_args` is a `oneOf` of cosine and linear args that cosine args satisfy both of, so
  a request with cosine args is invalid by the spec; ftorch sends cosine without args (the server defaults).
- `GET /fine-tunes/{id}/metrics` takes its filters as a GET body in the spec; nothing is sent, all is returned.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import hashlib
import io
import json
import os
import re
import tarfile
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import yaml

SPEC_PATH = Path(os.environ.get("FTORCH_TOGETHER_SPEC")
                 or Path(__file__).resolve().parents[3] / "shared" / "together" / "openapi.yaml")
SUPPORTED_MODELS = ["meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", "meta-llama/Llama-3.2-1B-Instruct",
                    "Qwen/Qwen2.5-7B-Instruct"]
TERMINAL = ("completed", "cancelled", "error")


class SpecValidationError(AssertionError):
    """A response the stand-in built does not match Together's spec (a bug in the stand-in or a test hook)."""


_SPEC_LOCK = threading.Lock()
_SPEC: dict[str, Any] = {}


def rewrite_nullable(node: Any, in_parameters: bool = False) -> Any:
    """3.0 keywords in this 3.1 document given their 3.1 meaning (see "Deviations from the spec")."""
    if isinstance(node, list):
        return [rewrite_nullable(item, in_parameters) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: rewrite_nullable(value, in_parameters or key == "parameters") for key, value in node.items()}
    if node.get("format") == "binary" and node.get("type") == "string":
        del node["type"]
    if isinstance(node.get("discriminator"), dict) and "mapping" not in node["discriminator"]:
        del node["discriminator"]  # implicit mapping would look up `#/components/schemas/<type>`; anyOf decides
    if node.pop("nullable", False) is True and not in_parameters:
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        else:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


def load_spec() -> tuple[Any, Any]:
    """(openapi-core `OpenAPI`, ErrorData schema validator), built once per process."""
    with _SPEC_LOCK:
        if not _SPEC:
            from openapi_core import Config, OpenAPI
            from openapi_core.validation.schemas import oas31_schema_validators_factory

            if not SPEC_PATH.is_file():
                raise FileNotFoundError(f"Together spec not found at {SPEC_PATH} (set FTORCH_TOGETHER_SPEC)")
            with SPEC_PATH.open("rb") as stream:
                spec = rewrite_nullable(yaml.load(stream, Loader=yaml.CSafeLoader))
            api = OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None))
            _SPEC["api"] = api
            _SPEC["error"] = oas31_schema_validators_factory.create(
                api.spec, api.spec / "components" / "schemas" / "ErrorData")
        return _SPEC["api"], _SPEC["error"]


def _describe(exc: BaseException) -> str:
    causes = [exc, *(c for c in (exc.__cause__, exc.__context__) if c is not None)]
    details = [f"{e.json_path}: {e.message}" for c in causes for e in getattr(c, "schema_errors", ()) or ()]
    return f"{type(exc).__name__}: {'; '.join(details) if details else exc}"


def _default_reply(request: dict[str, Any]) -> str:
    return "This is the stand-in's reply."


@dataclasses.dataclass
class Scenario:
    """What the stand-in does; tests change fields on `handle.scenario` at any time."""

    api_key: str = "together-standin-test-key"
    user_id: str = "standin-user"
    pending_polls: int = 1
    queued_polls: int = 1
    running_polls: int = 3
    total_steps: int = 9
    outcome: Literal["completed", "error"] = "completed"
    error_message: str = "Training failed: the training file has no valid examples."
    price_per_1m_tokens: float = 0.48  # the estimate: tokens of the training file (bytes // 4) x epochs
    user_limit: float = 100.0  # the account's credit: allowed_to_proceed is false above it
    supported: list[str] = dataclasses.field(default_factory=lambda: list(SUPPORTED_MODELS))
    adapter_dir: Path | None = None  # what /finetune/download?checkpoint=adapter sends (a PEFT adapter folder)
    chat_reply: Any = _default_reply  # (request body) -> reply text
    mutate_response: Any = None  # test hook: (method, path, body) -> body, before validation
    retry_after_s: str = "0"


@dataclasses.dataclass
class RecordedRequest:
    method: str
    path: str  # without the /v1 prefix: /fine-tunes, /files/upload
    query: dict[str, str]
    json: Any = None
    form: dict[str, Any] | None = None
    status: int | None = None
    raw_path: str = ""  # as sent: /v1/fine-tunes (the SDK) or /fine-tunes (a client of Prism's shape)


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}
        self.body = {"error": {"message": message, "type": type_, "param": None, "code": code}}


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(f"^{pattern}$"), name) for method, pattern, name in [
        ("POST", "/files/upload", "upload_file"), ("GET", "/files", "list_files"),
        ("GET", r"/files/(?P<id>[^/]+)", "retrieve_file"),
        ("POST", "/fine-tunes", "create_job"), ("GET", "/fine-tunes", "list_jobs"),
        ("POST", "/fine-tunes/estimate-price", "estimate_price"),
        ("GET", "/fine-tunes/models/supported", "supported"), ("GET", "/fine-tunes/models/limits", "limits"),
        ("GET", r"/fine-tunes/(?P<id>[^/]+)", "retrieve_job"),
        ("POST", r"/fine-tunes/(?P<id>[^/]+)/cancel", "cancel_job"),
        ("GET", r"/fine-tunes/(?P<id>[^/]+)/events", "list_events"),
        ("GET", r"/fine-tunes/(?P<id>[^/]+)/checkpoints", "list_checkpoints"),
        ("GET", r"/fine-tunes/(?P<id>[^/]+)/metrics", "list_metrics"),
        ("GET", "/finetune/download", "download"), ("POST", "/chat/completions", "chat_completion")]]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _State:
    """In-memory files and jobs; `op_*` methods serve the routes above (called under `lock`)."""

    def __init__(self) -> None:
        self.scenario = Scenario()
        self.lock = threading.RLock()
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.counter = 0
        self.clock = datetime(2026, 12, 1, tzinfo=UTC)

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter:08d}"

    def now(self) -> str:
        self.clock += timedelta(seconds=1)
        return _iso(self.clock)

    # ------------------------------------------------------------ files
    def op_upload_file(self, form: dict[str, Any], files: dict[str, tuple[str, bytes]], **_: Any) -> Any:
        content = files["file"][1]
        self.counter += 1
        file = {"id": f"file-{hashlib.sha256(str(self.counter).encode()).hexdigest()[:32]}", "object": "file",
                "created_at": int(self.clock.timestamp()), "filename": form["file_name"], "bytes": len(content),
                "purpose": form["purpose"], "Processed": True, "FileType": form.get("file_type") or "jsonl"}
        self.files[file["id"]], self.contents[file["id"]] = file, content
        return file

    def file(self, file_id: str) -> dict[str, Any]:
        if file_id not in self.files:
            raise ApiError(404, f"File {file_id} not found", code="file_not_found")
        return self.files[file_id]

    def op_list_files(self, **_: Any) -> Any:
        return {"data": list(self.files.values())}

    def op_retrieve_file(self, id: str, **_: Any) -> Any:
        return self.file(id)

    # ------------------------------------------------------------ jobs
    def check_model(self, model: str | None) -> None:
        if model not in self.scenario.supported:
            raise ApiError(400, f"Model {model} is not supported for fine-tuning.", code="model_not_supported")

    def tokens(self, body: dict[str, Any]) -> int:
        return max(1, self.file(body["training_file"])["bytes"] // 4) * int(body.get("n_epochs") or 1)

    def op_estimate_price(self, req: RecordedRequest, **_: Any) -> Any:
        body, sc = req.json, self.scenario
        tokens = self.tokens(body)
        price = round(tokens / 1e6 * sc.price_per_1m_tokens, 6)
        return {"estimated_total_price": price, "allowed_to_proceed": price <= sc.user_limit,
                "user_limit": sc.user_limit, "estimated_train_token_count": tokens, "estimated_eval_token_count": 0}

    def op_supported(self, **_: Any) -> Any:
        return {"models": list(self.scenario.supported)}

    def op_limits(self, req: RecordedRequest, **_: Any) -> Any:
        model = req.query.get("model_name")
        if model not in self.scenario.supported:
            raise ApiError(404, f"Model {model} is not available for fine-tuning.", code="model_not_found")
        batch = {"max_batch_size": 32, "max_batch_size_dpo": 16, "min_batch_size": 1}
        return {"model_name": model, "full_training": batch,
                "lora_training": {**batch, "max_rank": 64, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
                                  "default_rank": 16},
                "max_num_epochs": 20, "max_num_evals": 10, "max_learning_rate": 1.0, "min_learning_rate": 1e-8,
                "supports_vision": False, "supports_tools": False, "supports_reasoning": False,
                "merge_output_lora": False}

    def op_create_job(self, req: RecordedRequest, **_: Any) -> Any:
        body, sc = req.json, self.scenario
        self.check_model(body["model"])
        for key in ("training_file", "validation_file"):
            if body.get(key):
                self.file(body[key])
        estimate = self.op_estimate_price(req)
        if not estimate["allowed_to_proceed"]:
            raise ApiError(402, f"The estimated price ${estimate['estimated_total_price']:.2f} exceeds your credit "
                           "limit. Add credits under Settings -> Billing.", code="insufficient_balance")
        self.counter += 1
        job_id = str(uuid.UUID(int=self.counter))  # FinetuneResponse.id is a uuid (see the docstring)
        suffix = body.get("suffix") or ""
        job = {"id": job_id, "status": "pending", "created_at": self.now(), "updated_at": self.now(),
               "user_id": sc.user_id, "model": body["model"], "training_file": body["training_file"],
               "model_output_name": f"{sc.user_id}/{body['model'].split('/')[-1]}-{suffix}-{job_id[-6:]}",
               "n_epochs": int(body.get("n_epochs") or 1), "n_checkpoints": int(body.get("n_checkpoints") or 1),
               "n_evals": int(body.get("n_evals") or 0), "batch_size": body.get("batch_size", "max"),
               "learning_rate": body.get("learning_rate", 1e-5), "warmup_ratio": body.get("warmup_ratio", 0.0),
               "max_grad_norm": body.get("max_grad_norm", 1.0), "weight_decay": body.get("weight_decay", 0.0),
               "training_method": body.get("training_method") or {"method": "sft", "train_on_inputs": "auto"},
               "token_count": self.tokens(body), "total_price": 0, "events": []}
        for key in ("suffix", "validation_file", "wandb_name", "lr_scheduler", "training_type", "random_seed",
                    "from_checkpoint", "packing", "max_seq_length"):
            if body.get(key) not in (None, ""):
                job[key] = body[key]
        if job["batch_size"] == "max":
            job["batch_size"] = 8
        self.jobs[job_id] = {"job": job, "scenario": copy.copy(sc), "tick": 0, "step": 0, "events": [],
                             "checkpoints": [], "metrics": [], "price": estimate["estimated_total_price"]}
        self.event(job_id, "job_pending", "Fine-tune request created")
        return self.truncated(job)

    @staticmethod
    def truncated(job: dict[str, Any]) -> dict[str, Any]:
        keep = ("id", "status", "created_at", "updated_at", "started_at", "user_id", "total_price", "token_count",
                "training_file", "validation_file", "model", "model_output_name", "suffix", "n_epochs", "n_evals",
                "n_checkpoints", "batch_size", "training_type", "training_method", "learning_rate", "lr_scheduler",
                "warmup_ratio", "max_grad_norm", "weight_decay", "random_seed", "from_checkpoint", "packing",
                "max_seq_length")
        return {key: job[key] for key in keep if key in job}

    def record(self, job_id: str) -> dict[str, Any]:
        if job_id not in self.jobs:
            raise ApiError(404, f"Fine-tune job {job_id} not found", code="not_found")
        return self.jobs[job_id]

    def event(self, job_id: str, type_: str, message: str, level: str = "info", step: int = 0,
              checkpoint: str = "") -> None:
        rec = self.jobs[job_id]
        rec["events"].append({
            "object": "fine-tune-event", "created_at": self.now(), "level": level, "message": message, "type": type_,
            "param_count": 4_700_000, "token_count": rec["job"]["token_count"],
            "total_steps": rec["scenario"].total_steps, "wandb_url": "", "step": step, "checkpoint_path": checkpoint,
            "model_path": "", "training_offset": 0,
            "hash": hashlib.sha256(f"{job_id}{len(rec['events'])}".encode()).hexdigest()[:16]})

    def advance(self, job_id: str) -> None:
        rec = self.record(job_id)
        job, sc = rec["job"], rec["scenario"]
        if job["status"] in TERMINAL or job["status"] == "cancel_requested":
            return
        rec["tick"] += 1
        tick = rec["tick"]
        queued_from = sc.pending_polls
        running_from = queued_from + sc.queued_polls
        if tick >= queued_from and job["status"] == "pending":
            job["status"] = "queued"
        if tick >= running_from and job["status"] == "queued":
            job.update(status="running", started_at=self.now())
            self.event(job_id, "training_start", "Training started")
        job["updated_at"] = self.now()
        if job["status"] not in ("running", "uploading"):
            return
        poll = tick - running_from + 1
        if poll > sc.running_polls:
            if sc.outcome == "error":
                job["status"] = "error"
                self.event(job_id, "job_error", sc.error_message, level="error")
            elif job["status"] == "running":
                job["status"] = "uploading"
                self.event(job_id, "model_uploading", "Uploading the model")
            else:
                job.update(status="completed", total_price=int(rec["price"] * 1e9) // 10**9)
                self.event(job_id, "job_complete", "Fine-tuning job completed")
            return
        target = -(-poll * sc.total_steps // max(1, sc.running_polls))
        for step in range(rec["step"] + 1, target + 1):
            rec["metrics"].append({"train/loss": round(2.0 * 0.8 ** step, 4), "train/global_step": step,
                                   "train/learning_rate": 1e-5})
        if target > rec["step"]:
            rec["step"] = target
            path = f"s3://standin/{job_id}/checkpoint-{target}"
            rec["checkpoints"].append({"step": target, "path": path, "created_at": self.now(),
                                       "checkpoint_type": "Intermediate"})
            self.event(job_id, "checkpoint_save", f"Checkpoint saved at step {target}", step=target,
                       checkpoint=path)

    def op_list_jobs(self, **_: Any) -> Any:
        return {"data": [self.truncated(r["job"]) for r in reversed(self.jobs.values())]}

    def op_retrieve_job(self, id: str, **_: Any) -> Any:
        self.advance(id)
        rec = self.record(id)
        return {k: v for k, v in {**rec["job"], "events": rec["events"]}.items()
                if k not in ("suffix", "total_price", "random_seed", "packing", "max_seq_length")}

    def op_cancel_job(self, id: str, **_: Any) -> Any:
        rec = self.record(id)
        if rec["job"]["status"] in TERMINAL:
            raise ApiError(400, f"Job {id} is {rec['job']['status']} and cannot be cancelled.")
        rec["job"]["status"] = "cancelled"
        self.event(id, "job_stopped", "Job cancelled by the user")
        return self.truncated(rec["job"])

    def op_list_events(self, id: str, **_: Any) -> Any:
        return {"data": self.record(id)["events"]}

    def op_list_checkpoints(self, id: str, **_: Any) -> Any:
        rec = self.record(id)
        final = [{"step": rec["step"], "path": f"s3://standin/{id}/final", "created_at": rec["job"]["updated_at"],
                  "checkpoint_type": "Final Adapter"}] if rec["job"]["status"] == "completed" else []
        return {"data": (rec["checkpoints"] + final)[::-1]}

    def op_list_metrics(self, id: str, **_: Any) -> Any:
        return {"metrics": self.record(id)["metrics"]}

    def op_download(self, req: RecordedRequest, **_: Any) -> Any:
        rec = self.record(req.query.get("ft_id", ""))
        if rec["job"]["status"] != "completed":
            raise ApiError(400, f"Job {rec['job']['id']} is {rec['job']['status']}: nothing to download yet.")
        folder = rec["scenario"].adapter_dir
        if folder is None:
            raise ApiError(404, "No adapter stored for this job (Scenario.adapter_dir is unset).")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for path in sorted(Path(folder).iterdir()):
                archive.add(path, arcname=path.name)
        return buffer.getvalue()

    # ------------------------------------------------------------ chat
    def op_chat_completion(self, req: RecordedRequest, **_: Any) -> Any:
        body, model = req.json, req.json["model"]
        tuned = {r["job"]["model_output_name"] for r in self.jobs.values() if r["job"]["status"] == "completed"}
        if model not in tuned and model not in self.scenario.supported:
            raise ApiError(404, f"Unable to access model {model}.", code="model_not_available")
        reply = self.scenario.chat_reply(body)
        prompt = sum(len(str(m.get("content") or "").split()) + 3 for m in body["messages"]) + 3
        return {"id": self.new_id("chat-standin-"), "object": "chat.completion", "created": 1_765_000_000,
                "model": model, "prompt": [],
                "choices": [{"index": 0, "finish_reason": "stop", "seed": 0,
                             "message": {"role": "assistant", "content": reply}}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": len(reply.split()),
                          "total_tokens": prompt + len(reply.split())}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.standin.handle(self)

    do_POST = do_DELETE = do_PUT = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: StandinHandle


@dataclasses.dataclass
class _Fault:
    status: int
    path: str
    method: str
    remaining: int


class StandinHandle:
    """A running stand-in (see the module docstring); `start_standin()` makes one."""

    def __init__(self) -> None:
        self.api, self.error_validator = load_spec()
        self._state = _State()
        self.requests: list[RecordedRequest] = []
        self.validation_errors: list[str] = []
        self.request_errors: list[str] = []
        self.responses_validated = 0
        self._faults: list[_Fault] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self
        self.port = self._server.server_address[1]
        self.sdk_base_url = f"http://127.0.0.1:{self.port}"  # the SDK adds /v1 itself
        self.base_url = f"http://127.0.0.1:{self.port}/v1"  # the spec's server URL: ftorch's provider.base_url
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"together-standin-{self.port}", daemon=True)
        self._thread.start()

    @property
    def scenario(self) -> Scenario:
        return self._state.scenario

    @property
    def api_key(self) -> str:
        return self._state.scenario.api_key

    def inject(self, status: int, path: str = "*", *, method: str = "*", times: int = 1) -> None:
        """The next `times` requests whose path (without /v1) matches the glob get `status` with an ErrorData
        body (429 and 5xx carry `retry-after: 0`); faults come before the key check and never tick a job."""
        with self._state.lock:
            self._faults.append(_Fault(status, path, method.upper(), times))

    def requests_to(self, method: str, path: str = "*") -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method.upper() and fnmatch.fnmatchcase(r.path, path)]

    def violations(self) -> list[str]:
        return [*self.request_errors, *self.validation_errors]

    def job(self, job_id: str) -> dict[str, Any]:
        with self._state.lock:
            return copy.deepcopy(self._state.record(job_id)["job"])

    def file_bytes(self, file_id: str) -> bytes:
        with self._state.lock:
            return self._state.contents[file_id]

    def jobs(self) -> list[dict[str, Any]]:
        with self._state.lock:
            return [copy.deepcopy(r["job"]) for r in self._state.jobs.values()]

    def finish_job(self, job_id: str) -> None:
        """Run a job's timeline to its end (as if time passed), without a client polling."""
        with self._state.lock:
            for _ in range(100):
                if self._state.record(job_id)["job"]["status"] in TERMINAL:
                    return
                self._state.advance(job_id)

    def stop(self, check: bool = True) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if check and self.violations():
            raise SpecValidationError("Together stand-in saw spec violations:\n" + "\n".join(self.violations()))

    def __enter__(self) -> StandinHandle:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.stop(check=exc_type is None)

    # ------------------------------------------------------------ request handling
    def handle(self, http: _Handler) -> None:
        url = urlsplit(http.path)
        path = url.path[3:] if url.path.startswith("/v1/") else url.path
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        body = http.rfile.read(int(http.headers.get("Content-Length") or 0))
        ctype = http.headers.get("Content-Type", "")
        req = RecordedRequest(http.command, path, query, raw_path=url.path)
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
        auth = (http.headers.get("Authorization") or "").removeprefix("Bearer ")
        try:
            with self._state.lock:
                status, result = 200, copy.deepcopy(self._dispatch(req, auth, ctype, body, form, files))
                headers: dict[str, str] = {}
        except ApiError as error:
            status, result, headers = error.status, error.body, error.headers
        if self.scenario.mutate_response is not None:
            result = self.scenario.mutate_response(req.method, req.path, result)
        binary = isinstance(result, bytes)
        payload = result if binary else json.dumps(result).encode()
        try:
            self._validate(req, status, payload, binary)
        except SpecValidationError as error:
            self.validation_errors.append(str(error))
            status, headers, binary = 500, {"x-should-retry": "false"}, False
            payload = json.dumps({"error": {"message": str(error), "type": "standin_spec_violation"}}).encode()
        req.status = status
        http.send_response(status)
        for name, value in {"Content-Type": "application/octet-stream" if binary else "application/json",
                            "Content-Length": str(len(payload)), **headers}.items():
            http.send_header(name, value)
        http.end_headers()
        http.wfile.write(payload)

    def _route(self, req: RecordedRequest) -> tuple[str, dict[str, str]] | None:
        for method, pattern, name in _ROUTES:
            match = pattern.match(req.path)
            if match and method == req.method:
                return name, match.groupdict()
        return None

    def _dispatch(self, req: RecordedRequest, auth: str, ctype: str, body: bytes, form: dict[str, Any],
                  files: dict[str, tuple[str, bytes]]) -> Any:
        for fault in self._faults:
            if fault.remaining > 0 and fnmatch.fnmatchcase(req.path, fault.path) and fault.method in ("*", req.method):
                fault.remaining -= 1
                retry = {"retry-after": self.scenario.retry_after_s} if fault.status in (429, 500, 502, 503) else {}
                messages = {401: ("Invalid API key provided.", "invalid_api_key"),
                            402: ("Insufficient balance: add credits under Settings -> Billing.", "payment_required"),
                            404: ("Not found.", "not_found"), 429: ("Rate limit exceeded.", "rate_limit_exceeded")}
                message, code = messages.get(fault.status, ("Internal server error.", "server_error"))
                raise ApiError(fault.status, message, type_=code, code=code, headers=retry)
        if auth != self.scenario.api_key:
            raise ApiError(401, "Invalid API key provided. You can find your API key at api.together.ai/settings.",
                           type_="invalid_api_key", code="invalid_api_key")
        route = self._route(req)
        if route is None:
            raise ApiError(404, f"Unknown path {req.method} {req.path}")
        self._validate_request(req, ctype, body)
        name, params = route
        return getattr(self._state, f"op_{name}")(req=req, form=form, files=files, **params)

    # ------------------------------------------------------------ validation
    def _mock_request(self, req: RecordedRequest, ctype: str = "application/json", body: bytes = b"") -> Any:
        from openapi_core.testing import MockRequest

        return MockRequest("https://api.together.ai", req.method, "/v1" + req.path, args=req.query, data=body,
                           headers={"Authorization": "Bearer standin", "Content-Type": ctype}, content_type=ctype)

    def _validate_request(self, req: RecordedRequest, ctype: str, body: bytes) -> None:
        try:
            self.api.validate_request(self._mock_request(req, ctype or "application/json", body))
        except Exception as exc:  # openapi-core raises several unrelated classes
            self.request_errors.append(f"{req.method} {req.path}: {_describe(exc)}")
            raise ApiError(400, f"Invalid request: {_describe(exc)}") from exc

    def _validate(self, req: RecordedRequest, status: int, payload: bytes, binary: bool) -> None:
        from openapi_core.testing import MockResponse

        self.responses_validated += 1
        try:
            if status != 200:
                if req.path == "/finetune/download":
                    return  # its 400/404 document no body
                return self.error_validator.validate(json.loads(payload))
            if binary:
                return
            self.api.validate_response(self._mock_request(req), MockResponse(payload, status_code=status))
        except Exception as exc:
            raise SpecValidationError(f"{req.method} {req.path} -> {status}: {_describe(exc)}") from exc


def start_standin() -> StandinHandle:
    """Start a stand-in on a free loopback port; use it as a context manager or call `.stop()`."""
    return StandinHandle()
