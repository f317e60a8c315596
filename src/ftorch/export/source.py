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


class ExportError(FtorchError):
    """A run that cannot be exported as asked (missing, unfinished, no adapter, unsupported model): exit 2."""

    exit_code = EXIT_USER
    title = "export error"


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
        from ..backends._hf import model_path

        return model_path(self.cfg.model)


def hosted(provider: str) -> bool:
    from ..backends import get_backend

    return get_backend(provider).weights == "hosted"


def open_run(path: Path, *, need_adapter: bool = True) -> Source:
    """The run at `path`, checked: a run dir whose training succeeded, with an adapter if the provider trains one."""
    from ..eval.finished import config_of

    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise ExportError(Problem(str(path), "no such run directory", "give a folder under runs/, e.g. "
                                  "runs/quickstart/<timestamp> (ftorch runs ls lists them)"))
    if not run.run_json.is_file():
        raise ExportError(Problem(str(path), "not a run directory (no run.json)",
                                  "give a folder under runs/ that ftorch train made"))
    record = run.observed()
    cfg = config_of(run, [])
    if record.status != "succeeded":
        raise ExportError(Problem(str(path), f"this run's training has not succeeded (status: {record.status})",
                                  record.error or "export a run whose training succeeded"))
    if need_adapter and not hosted(cfg.provider.name) and not (run.adapter / "adapter_config.json").is_file():
        raise ExportError(Problem(str(run.adapter), "no LoRA adapter in this run (adapter_config.json missing)",
                                  "export a run whose training saved its adapter"))
    return Source(run, record, cfg)


def new_folder(run: RunDir, stem: str) -> Path:
    """RUN/export/STEM, or STEM-2, STEM-3, ... : an earlier export is never overwritten. Made here, empty."""
    root = run.path / "export"
    root.mkdir(parents=True, exist_ok=True)
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
