"""Side environments for providers that cannot live in ftorch's own: Axolotl pins an antlr that breaks Hydra;
`import unsloth` patches transformers, PEFT and TRL process-wide and caps their versions.

`ftorch setup axolotl|unsloth` builds `<project>/.venv-<provider>` once, through the same numbered steps: a plain
venv, the pinned torch first (pip takes the CPU file on a machine that has one, a CUDA build elsewhere), then the
provider's packages with the same pin as a constraint, so nothing can swap torch behind our back. Axolotl: when
the project has `constraints-axolotl.txt` (a `pip freeze` of a working environment, torch left out), every other
package is pinned too. Unsloth: ftorch itself is installed there too (its child process runs ftorch code), and
PyPI's torchvision is removed, because it does not load beside a CPU torch and breaks `import unsloth`. A stamp
file naming the versions makes a second call instant.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import BackendError, Problem
from .safe_io import write_text

ENVS = {"axolotl": ".venv-axolotl", "unsloth": ".venv-unsloth"}
AXOLOTL_ENV = ENVS["axolotl"]
AXOLOTL_VERSION = "0.19.0"  # the newest release that supports Python 3.11
UNSLOTH_VERSION = "2026.10.9"  # unsloth and unsloth_zoo release together; each release moves its transformers/TRL pins
TORCH_VERSION = "2.13.0"
STAMP = ".ftorch-setup.json"
LOCK = "constraints-axolotl.txt"  # optional, at the project root


def env_python(project_root: Path, provider: str) -> Path:
    """Where `ftorch setup PROVIDER` puts the environment's python."""
    return project_root / ENVS[provider] / "bin" / "python"


def axolotl_python(project_root: Path) -> Path:
    return env_python(project_root, "axolotl")


def base_python() -> str:
    """The interpreter a venv should be made from: the one behind ftorch's own venv, not the venv's shim."""
    return getattr(sys, "_base_executable", None) or sys.executable


def setup_axolotl(project_root: Path, python: str | None = None, force: bool = False) -> Path:
    """Create (or reuse) `<project_root>/.venv-axolotl` with torch and Axolotl pinned; return its python."""
    lock = project_root / LOCK
    locked = ["-c", str(lock)] if lock.is_file() else []
    wanted = {"axolotl": AXOLOTL_VERSION, "torch": TORCH_VERSION,
              "lock": hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else None}
    pins = ["-c", str(project_root / AXOLOTL_ENV / "ftorch-constraints.txt")]
    title = f"installing axolotl=={AXOLOTL_VERSION} (several GB; a few minutes)" + (
        f", other packages pinned by {LOCK}" if locked else "")
    steps = [Step(title, "install", [*pins, *locked, f"axolotl=={AXOLOTL_VERSION}"])]
    return _build("axolotl", project_root, wanted, steps, python, force)


def setup_unsloth(project_root: Path, python: str | None = None, force: bool = False) -> Path:
    """Create (or reuse) `<project_root>/.venv-unsloth` with torch, ftorch and Unsloth pinned; return its python."""
    source = ftorch_source()
    ftorch = ["-e", f"{source}[dev]"] if source else [f"ftorch[dev]=={_version()}"]
    wanted = {"unsloth": UNSLOTH_VERSION, "torch": TORCH_VERSION, "ftorch": str(source or _version()),
              "ftorch_requirements": _requirements_digest(source)}
    pins = ["-c", str(project_root / ENVS["unsloth"] / "ftorch-constraints.txt")]
    steps = [Step("installing ftorch (with its test extras) " + (f"from {source}" if source else "from the registry"),
                  "install", [*pins, *ftorch]),
             Step(f"installing unsloth=={UNSLOTH_VERSION} and unsloth_zoo", "install",
                  [*pins, f"unsloth=={UNSLOTH_VERSION}", f"unsloth_zoo=={UNSLOTH_VERSION}"]),
             Step("removing torchvision (PyPI's build breaks `import unsloth` beside a CPU torch)", "uninstall",
                  ["-y", "torchvision"]),
             Step("checking that unsloth imports", "python",
                  ["-c", "import unsloth; from unsloth import FastLanguageModel"])]
    return _build("unsloth", project_root, wanted, steps, python, force)


@dataclass(frozen=True)
class Step:
    title: str
    kind: Literal["install", "uninstall", "python"]  # pip install / pip uninstall / the env's python
    args: list[str]


def ftorch_source() -> Path | None:
    """The source checkout ftorch runs from (an editable install), or None for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "src" / "ftorch").is_dir() else None


def _requirements_digest(source: Path | None) -> str | None:
    """For an install from a checkout: a digest of its pyproject.toml, so that an environment made before a
    dependency was added (or changed) is brought up to date instead of reused."""
    if source is None:
        return None
    return hashlib.sha256((source / "pyproject.toml").read_bytes()).hexdigest()[:16]


def _version() -> str:
    from . import __version__

    return __version__


def _build(provider: str, project_root: Path, wanted: Mapping[str, str | None], steps: list[Step],
           python: str | None, force: bool) -> Path:
    """The shared steps (venv, pip, torch), then the provider's. Idempotent: a stamp written after a complete
    install, naming the versions, lets a later call return at once; `force` deletes the folder first. Raises
    BackendError naming the step that failed."""
    env = project_root / ENVS[provider]
    target = env_python(project_root, provider)
    stamp = env / STAMP
    command = f"ftorch setup {provider}"
    total = 3 + len(steps)
    if force and env.exists():
        _say(f"removing {env} (--force)")
        shutil.rmtree(env)
    if not force and stamp.is_file() and target.exists() and _stamp_matches(stamp, wanted):
        _say(f"{provider.capitalize()} environment already set up: {env}")
        return target

    started = time.perf_counter()
    if not target.exists():
        _step(command, 1, total, f"creating the environment {env}", [python or base_python(), "-m", "venv", str(env)])
    else:
        _say(f"[1/{total}] reusing {env} (unfinished, or its pins changed)")
    pip = [str(target), "-m", "pip"]
    _step(command, 2, total, "updating pip", [*pip, "install", "--progress-bar", "on", "--upgrade", "pip"])
    write_text(env / "ftorch-constraints.txt", f"torch=={TORCH_VERSION}\n")
    _step(command, 3, total, f"installing torch=={TORCH_VERSION} (the CPU build where one lies on this machine)",
          [*pip, "install", "--progress-bar", "on", f"torch=={TORCH_VERSION}"])
    for number, step in enumerate(steps, start=4):
        head = {"install": [*pip, "install", "--progress-bar", "on"], "uninstall": [*pip, "uninstall"],
                "python": [str(target)]}[step.kind]
        _step(command, number, total, step.title, [*head, *step.args])
    write_text(stamp, json.dumps({**wanted, "seconds": round(time.perf_counter() - started, 1)}) + "\n")
    _say(f"{provider.capitalize()} environment ready in {time.perf_counter() - started:.0f} s: {target}")
    return target


def _stamp_matches(stamp: Path, wanted: Mapping[str, str | None]) -> bool:
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return all(recorded.get(key) == value for key, value in wanted.items())


def _step(command: str, number: int, total: int, title: str, argv: list[str]) -> None:
    _say(f"[{number}/{total}] {title}")
    try:
        code = subprocess.call(argv)  # output goes straight to the terminal: pip's own progress
    except OSError as exc:
        raise BackendError(Problem(command, f"cannot run {argv[0]}: {exc}",
                                   "give another interpreter (Python 3.11) to make the environment with")) from None
    if code != 0:
        raise BackendError(Problem(command, f"step {number} ({title}) failed with exit code {code}",
                                   f"see pip's output above; run `{command} --force` to start again "
                                   "from an empty environment"))


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
