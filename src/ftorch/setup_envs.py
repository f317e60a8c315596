"""Side environments for providers that cannot live in ftorch's own (Axolotl pins an antlr that breaks Hydra).

`ftorch setup axolotl` builds `<project>/.venv-axolotl` once: a plain venv, the pinned torch first (pip takes
the CPU file on a machine that has one, a CUDA build elsewhere), then Axolotl with the same pin as a constraint,
so nothing can swap torch behind our back. When the project has `constraints-axolotl.txt` (a `pip freeze` of a
working environment, torch left out), every other package is pinned too, so a new upstream release cannot
break a build. A stamp file makes a second call instant.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .errors import BackendError, Problem

AXOLOTL_ENV = ".venv-axolotl"
AXOLOTL_VERSION = "0.19.0"  # the newest release that supports Python 3.11
TORCH_VERSION = "2.13.0"
STAMP = ".ftorch-setup.json"
LOCK = "constraints-axolotl.txt"  # optional, at the project root
SETUP_COMMAND = "ftorch setup axolotl"


def axolotl_python(project_root: Path) -> Path:
    """Where `setup_axolotl` puts the environment's python."""
    return project_root / AXOLOTL_ENV / "bin" / "python"


def base_python() -> str:
    """The interpreter a venv should be made from: the one behind ftorch's own venv, not the venv's shim."""
    return getattr(sys, "_base_executable", None) or sys.executable


def setup_axolotl(project_root: Path, python: str | None = None, force: bool = False) -> Path:
    """Create (or reuse) `<project_root>/.venv-axolotl` with torch and Axolotl pinned; return its python.

    Idempotent: a stamp written after a complete install, naming the versions, lets a later call return at
    once. `force=True` deletes the folder and builds it again. Raises BackendError when a step fails."""
    env = project_root / AXOLOTL_ENV
    target = axolotl_python(project_root)
    lock = project_root / LOCK
    wanted = {"axolotl": AXOLOTL_VERSION, "torch": TORCH_VERSION,
              "lock": hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None}
    stamp = env / STAMP
    if force and env.exists():
        _say(f"removing {env} (--force)")
        shutil.rmtree(env)
    if not force and stamp.is_file() and target.exists() and _stamp_matches(stamp, wanted):
        _say(f"Axolotl environment already set up: {env}")
        return target

    started = time.perf_counter()
    if not target.exists():
        _step(1, f"creating the environment {env}", [python or base_python(), "-m", "venv", str(env)])
    else:
        _say(f"[1/4] reusing {env} (unfinished, or its pins changed)")
    pip = [str(target), "-m", "pip", "install", "--progress-bar", "on"]
    _step(2, "updating pip", [*pip, "--upgrade", "pip"])
    constraints = env / "ftorch-constraints.txt"
    constraints.write_text(f"torch=={TORCH_VERSION}\n")
    _step(3, f"installing torch=={TORCH_VERSION} (the CPU build where one lies on this machine)",
          [*pip, f"torch=={TORCH_VERSION}"])
    locked = ["-c", str(lock)] if lock.is_file() else []
    _step(4, f"installing axolotl=={AXOLOTL_VERSION} (several GB; a few minutes)"
          + (f", other packages pinned by {LOCK}" if locked else ""),
          [*pip, "-c", str(constraints), *locked, f"axolotl=={AXOLOTL_VERSION}"])
    stamp.write_text(json.dumps({**wanted, "seconds": round(time.perf_counter() - started, 1)}) + "\n")
    _say(f"Axolotl environment ready in {time.perf_counter() - started:.0f} s: {target}")
    return target


def _stamp_matches(stamp: Path, wanted: dict[str, str | None]) -> bool:
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return all(recorded.get(key) == value for key, value in wanted.items())


def _step(number: int, title: str, command: list[str]) -> None:
    _say(f"[{number}/4] {title}")
    try:
        code = subprocess.call(command)  # output goes straight to the terminal: pip's own progress
    except OSError as exc:
        raise BackendError(Problem(SETUP_COMMAND, f"cannot run {command[0]}: {exc}",
                                   "give another interpreter (Python 3.11) to make the environment with")) from None
    if code != 0:
        raise BackendError(Problem(SETUP_COMMAND, f"step {number} ({title}) failed with exit code {code}",
                                   f"see pip's output above; run `{SETUP_COMMAND} --force` to start again "
                                   "from an empty environment"))


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
