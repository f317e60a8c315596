"""A run directory: its layout, an atomic run.json that always tells the truth, secret redaction."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from .secrets import REDACTED, is_secret, redact, redact_hydra_dir, redact_override, scrub, scrub_text_tree
from .secrets import _redact_strings  # noqa: F401  (the former home of these; kept importable from here)

__all__ = ["REDACTED", "RunDir", "is_secret", "redact", "redact_hydra_dir", "redact_override", "write_json_atomic"]

STATUSES = ("running", "succeeded", "failed", "interrupted")
KEY_PACKAGES = ("ftorch", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "hydra-core", "openai",
                "unsloth", "unsloth_zoo", "optuna")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temp file beside `path`, fsync, then rename over it: never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(scrub_text_tree(data), handle, indent=2, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
            handle.write(f"{now()} {scrub(line)}\n")

    def write_config(self, resolved: dict, raw: dict) -> None:
        (self.path / "config.yaml").write_text(yaml.safe_dump(redact(resolved, raw), sort_keys=False))
