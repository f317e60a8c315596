"""A run directory: its layout, an atomic run.json that always tells the truth, secret redaction."""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

STATUSES = ("running", "succeeded", "failed", "interrupted")
KEY_PACKAGES = ("ftorch", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "hydra-core", "openai",
                "unsloth", "unsloth_zoo", "optuna")
REDACTED = "***REDACTED***"
# A key (or env var) named like a secret: api_key, hf_token, OPENAI_API_KEY, client_secret, password...
# but not max_tokens / max_new_tokens (counts, not secrets).
_SECRET_NAME = re.compile(r"(^|[_-])(api[_-]?key|apikey|key|token|secret|password|passwd|credentials?|auth)$",
                          re.IGNORECASE)
_SECRET_VALUE = re.compile(r"^(sk-[A-Za-z0-9_\-]{8,}|hf_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{20,})")
_ENV_INTERP = re.compile(r"\$\{oc\.env:([^,}]+)")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temp file beside `path`, fsync, then rename over it: never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_secret(key: str, value: Any, env_name: str | None = None) -> bool:
    if isinstance(value, str) and _SECRET_VALUE.match(value):
        return True
    if env_name and _SECRET_NAME.search(env_name):
        return True
    return bool(_SECRET_NAME.search(key)) and value not in (None, "", False)


def redact(resolved: Any, raw: Any = None, key: str = "") -> Any:
    """Replace secrets in a resolved config tree. `raw` is the same tree before interpolation, so a
    value that came from ${oc.env:SOME_TOKEN} is redacted even when its key looks harmless."""
    if isinstance(resolved, dict):
        raw = raw if isinstance(raw, dict) else {}
        return {k: redact(v, raw.get(k), str(k)) for k, v in resolved.items()}
    if isinstance(resolved, list):
        raw = raw if isinstance(raw, list) and len(raw) == len(resolved) else [None] * len(resolved)
        return [redact(v, r, key) for v, r in zip(resolved, raw)]
    env = _ENV_INTERP.search(raw) if isinstance(raw, str) else None
    return REDACTED if is_secret(key, resolved, env.group(1) if env else None) else resolved


def redact_override(item: str) -> str:
    key, sep, value = item.partition("=")
    return f"{key}={REDACTED}" if sep and is_secret(key.rsplit(".", 1)[-1], value) else item


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


@dataclass
class RunDir:
    """One run's folder. All writes of run.json go through `update`, atomically."""

    path: Path

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    @property
    def adapter(self) -> Path:
        return self.path / "adapter"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def manifest(self) -> Path:
        return self.path / "data" / "manifest.json"

    def read(self) -> dict:
        return json.loads(self.run_json.read_text())

    def update(self, **fields: Any) -> dict:
        record = self.read() if self.run_json.exists() else {}
        record.update(fields)
        if record.get("status") not in STATUSES:
            raise ValueError(f"bad run status {record.get('status')!r}")
        write_json_atomic(self.run_json, record)
        return record

    def start(self, *, recipe: str | None, provider: str, project_root: Path, overrides: list[str]) -> None:
        if self.run_json.exists():
            raise FileExistsError(f"{self.path} already holds a run; ftorch never overwrites one")
        self.update(
            status="running", recipe=recipe, provider=provider, started=now(), ended=None,
            overrides=[redact_override(o) for o in overrides], git_commit=git_commit(project_root),
            host=socket.gethostname(), platform=platform.platform(), python=platform.python_version(),
            packages=package_versions(), metrics={}, error=None,
        )

    def finish(self, status: str, *, error: str | None = None, **fields: Any) -> dict:
        return self.update(status=status, ended=now(), error=error, **fields)

    def append_log(self, line: str) -> None:
        with self.log.open("a") as handle:
            handle.write(f"{now()} {line}\n")

    def write_config(self, resolved: dict, raw: dict) -> None:
        (self.path / "config.yaml").write_text(yaml.safe_dump(redact(resolved, raw), sort_keys=False))


def redact_hydra_dir(hydra_dir: Path) -> None:
    """Hydra saves the command-line overrides verbatim; a secret passed there must not stay on disk."""
    overrides = hydra_dir / "overrides.yaml"
    if overrides.exists():
        items = yaml.safe_load(overrides.read_text()) or []
        overrides.write_text(yaml.safe_dump([redact_override(i) for i in items]))
    for name in ("hydra.yaml", "config.yaml"):
        path = hydra_dir / name
        if path.exists():
            tree = yaml.safe_load(path.read_text())
            path.write_text(yaml.safe_dump(_redact_strings(tree), sort_keys=False))


def _redact_strings(tree: Any, key: str = "") -> Any:
    if isinstance(tree, dict):
        return {k: _redact_strings(v, str(k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [redact_override(v) if isinstance(v, str) and "=" in v else _redact_strings(v, key) for v in tree]
    if isinstance(tree, str) and "${" in tree:
        return tree  # an interpolation, not a value
    return REDACTED if is_secret(key, tree) else tree
