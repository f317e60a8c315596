"""The openai SDK, set up from ftorch's config: the client (OpenAI or Azure OpenAI), SDK errors turned into
messages a person can act on (in one place), and uploads that are never repeated for the same bytes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from .config.providers import OpenAIProvider
from .errors import BackendError, ConfigError, MissingExtra, Problem

LOCAL_PROVIDERS = "provider=peft (any machine), provider=unsloth or provider=axolotl (GPU)"
# OpenAI's self-serve fine-tuning wind-down (deprecations page, section dated 2026-05-07; the end date for new jobs
# is from secondary reports, see ../shared/STACK.md)
WIND_DOWN_ANNOUNCED = date(2026, 5, 7)
NEW_JOBS_END = date(2027, 1, 6)
ALTERNATIVES = ("provider=together (hosted, the same recipe: set provider.model to a Together model), Azure OpenAI "
                f"(provider.api=azure, where it still trains), or locally {LOCAL_PROVIDERS}")


def wind_down(api: str, today: date | None = None, *, new_job: bool = True) -> str:
    """The wind-down as `plan` states it for a new OpenAI job; after NEW_JOBS_END a ConfigError for api=openai
    (Azure OpenAI is not part of it). `today` is injectable for tests. Evaluating existing runs never asks, and a
    resumed run (new_job=False) reattaches to the job it recorded, if it has one."""
    today = today or date.today()
    if api == "openai" and today > NEW_JOBS_END and not new_job:
        return (f"OpenAI ended self-serve fine-tuning: no new jobs after {NEW_JOBS_END.isoformat()}; this resume "
                "follows the job the run recorded (a run without one is refused by OpenAI)")
    if api == "openai" and today > NEW_JOBS_END:
        raise ConfigError(Problem("provider=openai", f"OpenAI ended self-serve fine-tuning: no new jobs after "
                                  f"{NEW_JOBS_END.isoformat()} (announced {WIND_DOWN_ANNOUNCED.isoformat()})",
                                  f"use {ALTERNATIVES}; models you already fine-tuned stay usable for inference "
                                  "and `ftorch eval`"))
    if api != "openai":
        return "Azure OpenAI's fine-tuning is not part of OpenAI's self-serve wind-down"
    return (f"OpenAI is winding down self-serve fine-tuning (users told {WIND_DOWN_ANNOUNCED.isoformat()}): new jobs "
            f"end {NEW_JOBS_END.isoformat()} ({(NEW_JOBS_END - today).days} days left), and organisations already cut "
            f"off get HTTP 403 training_not_available. For new jobs use {ALTERNATIVES}")


def sdk_and_key(where: str, api_key_env: str, missing: str, hint: str):
    """The openai module and the key from `api_key_env`, or the error that says what to install or set."""
    try:
        import openai
    except ImportError:
        raise MissingExtra(Problem(where, "the openai SDK is not installed", "pip install 'ftorch[openai]'")) from None
    key = os.environ.get(api_key_env)
    if not key:
        raise ConfigError(Problem(f"${api_key_env}", missing, hint))
    return openai, key


def make_client(cfg: OpenAIProvider):
    openai, key = sdk_and_key("provider=openai", cfg.api_key_env, "API key missing: the variable is not set",
                              f"export {cfg.api_key_env}=... (ftorch never stores it)")
    common = {"api_key": key, "max_retries": cfg.max_retries, "timeout": cfg.timeout_s}
    if cfg.api == "azure":
        return openai.AzureOpenAI(azure_endpoint=cfg.azure_endpoint, api_version=cfg.api_version, **common)
    base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL")
    return openai.OpenAI(base_url=base_url, organization=cfg.organization, project=cfg.project, **common)


@contextmanager
def api_errors(action: str, job_id: str | None = None) -> Iterator[None]:
    """SDK exceptions -> BackendError/ConfigError with what happened and what to do."""
    import openai

    kept = f" The job {job_id} is kept: `ftorch resume RUN_DIR` reattaches to it." if job_id else ""
    try:
        yield
    except openai.AuthenticationError as exc:
        raise ConfigError(Problem(action, f"API key missing or invalid (HTTP 401): {error_message(exc)}",
                                  "check the key in the variable named by provider.api_key_env")) from None
    except openai.PermissionDeniedError as exc:
        if getattr(exc, "code", None) == "training_not_available":
            raise  # the caller words this one: it knows the uploaded files
        raise BackendError(Problem(action, f"permission denied (HTTP 403): {error_message(exc)}")) from None
    except openai.BadRequestError as exc:
        raise BackendError(Problem(action, f"rejected by the API (HTTP 400): {error_message(exc)}")) from None
    except openai.NotFoundError as exc:
        raise BackendError(Problem(action, f"not found (HTTP 404): {error_message(exc)}")) from None
    except openai.RateLimitError as exc:
        raise BackendError(Problem(action, f"rate limited (HTTP 429) after the SDK's retries: {error_message(exc)}."
                                   + kept)) from None
    except openai.InternalServerError as exc:
        raise BackendError(Problem(action, f"server error (HTTP {exc.status_code}) after the SDK's retries: "
                                   f"{error_message(exc)}." + kept)) from None
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        raise BackendError(Problem(action, f"cannot reach the API: {exc}." + kept)) from None


def error_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc)


class UploadRecord:
    """sha256 of uploaded bytes -> file id, per API endpoint, kept under ~/.cache/ftorch/openai_files.json and
    checked against the API before reuse (a deleted or failed file is uploaded again)."""

    def __init__(self, path: Path, endpoint: str):
        self.path, self.endpoint = path, endpoint

    def _load(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def get(self, digest: str) -> str | None:
        return self._load().get(self.endpoint, {}).get(digest)

    def put(self, digest: str, file_id: str) -> None:
        from .run.rundir import write_json_atomic

        data = self._load()
        data.setdefault(self.endpoint, {})[digest] = file_id
        write_json_atomic(self.path, data)


def upload(client, path: Path, record: UploadRecord) -> dict:
    """The file id for these bytes: reused when the API still has them, uploaded otherwise."""
    import openai

    from .data.manifest import sha256_file

    digest = sha256_file(path)
    known = record.get(digest)
    if known:
        try:
            found = client.files.retrieve(known)
            if found.status != "error" and found.bytes == path.stat().st_size:
                return {"path": str(path), "sha256": digest, "file_id": known, "reused": True}
        except openai.NotFoundError:
            pass
    with api_errors(f"upload {path.name}"), path.open("rb") as handle:
        created = client.files.create(file=(path.name, handle), purpose="fine-tune")
    record.put(digest, created.id)
    return {"path": str(path), "sha256": digest, "file_id": created.id, "reused": False}


def endpoint_of(client) -> str:
    return str(client.base_url).rstrip("/")
