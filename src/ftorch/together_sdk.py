"""The together SDK, set up from ftorch's config: the client (pointed at the spec's API root), Together's error
shapes turned into messages a person can act on (in one place), uploads never repeated for the same bytes, and
the list of models Together fine-tunes (online, else a cached copy)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .config.providers import TogetherProvider
from .errors import BackendError, ConfigError, MissingExtra, Problem

DEFAULT_API = "https://api.together.ai/v1"
BILLING_HINT = "add credits or raise the account's limit on api.together.ai (Settings -> Billing)"


def api_root(cfg: TogetherProvider) -> str:
    """The URL the spec's paths hang from (its `servers` entry): provider.base_url, $TOGETHER_BASE_URL, Together."""
    return (cfg.base_url or os.environ.get("TOGETHER_BASE_URL") or DEFAULT_API).rstrip("/")


def make_client(cfg: TogetherProvider):
    """A `together.Together` for provider.*; its requests (which carry /v1/...) go to api_root's paths, so a
    mock that serves the spec at its root (Prism) works as well as the real API."""
    try:
        import httpx
        import together
    except ImportError:
        raise MissingExtra(Problem("provider=together", "the together SDK is not installed",
                                   "pip install 'ftorch[together]'")) from None
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise ConfigError(Problem(f"${cfg.api_key_env}", "API key missing: the variable is not set",
                                  f"export {cfg.api_key_env}=... (ftorch never stores it)"))
    root = httpx.URL(api_root(cfg))
    prefix = root.path.rstrip("/")

    def to_root(request: httpx.Request) -> None:
        path = request.url.path
        if path.startswith("/v1/") and prefix != "/v1":
            request.url = request.url.copy_with(path=prefix + path[3:])

    http = together.DefaultHttpxClient(event_hooks={"request": [to_root]})
    return together.Together(api_key=key, base_url=str(root.copy_with(path="/")).rstrip("/"), http_client=http,
                             max_retries=cfg.max_retries, timeout=cfg.timeout_s)


def error_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return str(getattr(exc, "message", None) or exc)


@contextmanager
def api_errors(action: str, job_id: str | None = None) -> Iterator[None]:
    """SDK exceptions -> BackendError/ConfigError with what happened and what to do. 429 and 5xx arrive here
    only after the SDK's own retries (provider.max_retries, with backoff and Retry-After)."""
    import together

    kept = f" The job {job_id} is kept: `ftorch resume RUN_DIR` reattaches to it." if job_id else ""
    try:
        yield
    except together.AuthenticationError as exc:
        raise ConfigError(Problem(action, f"API key missing or invalid (HTTP 401): {error_message(exc)}",
                                  "check the key in the variable named by provider.api_key_env")) from None
    except together.NotFoundError as exc:
        raise BackendError(Problem(action, f"not found (HTTP 404): {error_message(exc)}",
                                   "check the model id (provider.model) or the job id in run.json")) from None
    except together.RateLimitError as exc:
        raise BackendError(Problem(action, f"rate limited (HTTP 429) after the SDK's retries with backoff: "
                                   f"{error_message(exc)}.{kept}", "wait and run it again, or raise "
                                   "provider.max_retries")) from None
    except together.InternalServerError as exc:
        raise BackendError(Problem(action, f"Together's server failed (HTTP {exc.status_code}) after the SDK's "
                                   f"retries: {error_message(exc)}.{kept}", "try again later")) from None
    except together.BadRequestError as exc:
        raise BackendError(Problem(action, f"rejected by the API (HTTP 400): {error_message(exc)}")) from None
    except together.APIStatusError as exc:
        if exc.status_code == 402:
            raise BackendError(Problem(action, f"payment required (HTTP 402): {error_message(exc)}. Nothing was "
                                       f"trained.{kept}", BILLING_HINT)) from None
        raise BackendError(Problem(action, f"HTTP {exc.status_code}: {error_message(exc)}.{kept}")) from None
    except (together.APIConnectionError, together.APITimeoutError) as exc:
        raise BackendError(Problem(action, f"cannot reach the API: {exc}.{kept}",
                                   "check provider.base_url and the network")) from None


def upload(client, path: Path, record, as_name: str) -> dict:
    """The file id for these bytes (the spec's POST /files/upload): reused while the API still has the file."""
    import together
    from together.types import FileResponse

    from .data.manifest import sha256_file

    digest = sha256_file(path)
    known = record.get(digest)
    if known:
        try:
            found = client.files.retrieve(known)
            if found.bytes == path.stat().st_size:
                return {"path": str(path), "sha256": digest, "file_id": known, "reused": True}
        except together.NotFoundError:
            pass
    with api_errors(f"upload {path.name}"), path.open("rb") as handle:
        created = client.post("/v1/files/upload", cast_to=FileResponse,
                              body={"purpose": "fine-tune", "file_name": as_name, "file_type": "jsonl"},
                              files={"file": (as_name, handle)},
                              options={"headers": {"Content-Type": "multipart/form-data"}})
    record.put(digest, created.id)
    return {"path": str(path), "sha256": digest, "file_id": created.id, "reused": False}


def endpoint_of(client) -> str:
    return str(client.base_url).rstrip("/")


# ---------------------------------------------------------------- models Together fine-tunes
def models_cache() -> Path:
    from .cache import cache_root

    return cache_root() / "together_models.json"


def shipped_models(prices: Path) -> list[str]:
    import yaml

    return list((yaml.safe_load(prices.read_text()) or {}).get("fine_tunable_models", []))


def _saved() -> dict[str, Any]:
    try:
        data = json.loads(models_cache().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def known_models(prices: Path, root: str) -> tuple[list[str], str]:
    """(model ids, where the list came from): the copy saved the last time this API root was asked, else the
    shipped one in the price table. Never online (plan is offline)."""
    entry = _saved().get(root)
    if isinstance(entry, dict) and isinstance(entry.get("models"), list):
        return list(entry["models"]), f"the list fetched from {root} on {entry.get('fetched')}"
    return shipped_models(prices), f"the copy shipped in {prices.name}"


def fetch_models(client, root: str) -> list[str]:
    """GET /fine-tunes/models/supported, saved (per API root) for the next offline plan."""
    from .run.rundir import write_json_atomic

    with api_errors("list the models Together fine-tunes"):
        raw = client.get("/v1/fine-tunes/models/supported", cast_to=object)
    models = [str(m) for m in raw.get("models", [])] if isinstance(raw, dict) else []
    write_json_atomic(models_cache(), {**_saved(), root: {"models": models, "fetched": time.strftime("%Y-%m-%d")}})
    return models


def unsupported(model: str, models: list[str], source: str) -> Problem:
    close = [m for m in models if model.split("/")[-1].lower()[:8] in m.lower()][:3]
    return Problem("provider.model", f"Together does not fine-tune {model} (per {source})",
                   "use one of: " + ", ".join(close or models[:6]) + (" ..." if len(models) > 6 else ""))
