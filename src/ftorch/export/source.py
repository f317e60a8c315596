"""The run an export starts from: its record and config, the base model's local folder (the tiny model and a
converted GGUF resolve as training resolved them) and the adapter. Every reason it cannot be exported is an
ExportError naming the run dir."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..config.schema import RunConfig
from ..errors import EXIT_USER, FtorchError, Problem
from ..run.record import RunRecord
from ..run.rundir import RunDir
from ..safe_io import ensure_dir


class ExportError(FtorchError):
    """A run that cannot be exported as asked (missing, unfinished, no adapter, unsupported model): exit 2."""

    exit_code = EXIT_USER
    title = "export error"


class NoSuchRun(ExportError):
    """A path that is not a run directory, given to export, chat or serve: exit 2."""

    title = "no such run"


class RunNotReady(ExportError):
    """A run whose training has not finished (or left no adapter): nothing to export, chat with or serve yet."""

    title = "run not ready"


class VerificationFailed(FtorchError):
    """The export loads but does not answer like base + adapter within the thresholds."""

    exit_code = 1
    title = "export verification failed"


@dataclass
class Source:
    run: RunDir
    record: RunRecord
    cfg: RunConfig

    @property
    def provider(self) -> str:
        return self.cfg.provider.name

    @property
    def hosted(self) -> bool:
        """The provider keeps the weights (called by record.fine_tuned_model); nothing here to export or serve."""
        return hosted(self.provider)

    @property
    def adapter(self) -> Path:
        return self.run.adapter

    def base_path(self) -> str:
        """The base model as a local folder (the tiny model is built, a GGUF converted, once, as for training)."""
        from ..models import model_path

        return model_path(self.cfg.model)


def hosted(provider: str) -> bool:
    from ..backends import get_backend

    return get_backend(provider).weights == "hosted"


def open_run(path: Path, *, need_adapter: bool = True, purpose: str = "export") -> Source:
    """The run at `path`, checked: a run dir whose training succeeded, with an adapter if the provider trains one.
    `purpose` (export, chat, serve) names the command in the errors."""
    from ..eval.finished import config_of

    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise NoSuchRun(Problem(str(path), "no such run directory", "give a folder under runs/, e.g. "
                                "runs/quickstart/<timestamp> (ftorch runs ls lists them)"))
    if not run.run_json.is_file():
        raise NoSuchRun(Problem(str(path), "not a run directory (no run.json)",
                                "give a folder under runs/ that ftorch train made"))
    record = run.observed()
    if record.status != "succeeded":
        raise RunNotReady(unfinished(path, record, purpose))
    cfg = config_of(run, [])
    if need_adapter and not hosted(cfg.provider.name) and not (run.adapter / "adapter_config.json").is_file():
        fix = (f"download it first: ftorch pull {run.path}" if cfg.provider.name == "together"
               else f"{purpose} needs a run whose training saved its adapter")
        raise RunNotReady(Problem(str(run.adapter), "no LoRA adapter in this run (adapter_config.json missing)", fix))
    return Source(run, record, cfg)


def unfinished(path: Path, record: RunRecord, purpose: str) -> Problem:
    """Why a run whose status is not 'succeeded' cannot be used yet, and what to do about it."""
    if record.status == "running":  # observed(): its process is alive
        pid = f", pid {record.pid}" if record.pid else ""
        return Problem("", f"{path} is still training (status: running{pid}); {purpose} needs a finished run",
                       "wait for it to finish (ftorch runs ls shows its progress)")
    return Problem("", f"{path} has not finished training (status: {record.status}); {purpose} needs a finished "
                       f"run: ftorch resume {path}", record.error)


def new_folder(run: RunDir, stem: str, root: Path | None = None) -> Path:
    """RUN/export/STEM, or STEM-2, STEM-3, ... : an earlier export is never overwritten. Made here, empty.
    `root`: the user's own folder instead of RUN/export/ (ftorch export --out ROOT)."""
    root = root if root is not None else ensure_dir(run.path / "export")  # a symlink planted at export/: refused
    taken = {p.name for p in root.iterdir()}
    index = 1
    while True:
        name = stem if index == 1 else f"{stem}-{index}"
        if name not in taken:
            try:
                (root / name).mkdir()
                return root / name
            except FileExistsError:  # another export took it in between
                pass
        index += 1


def safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"
