"""One run's life: validate, check data, plan, record, run under supervision so run.json tells the truth."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backends import Plan, Result, get_backend
from .compose import Project, compose
from .config import Origins, load
from .data.report import DataReport, check_data
from .errors import ConfigError, DataError, FtorchError, Problem, RunInterrupted
from .evaluation import evaluate_after_training
from .plots import loss_plot
from .rundir import RunDir, write_json_atomic
from .schema import RunConfig


@dataclass
class Prepared:
    """A composed, validated config with its checked data and the backend's plan."""

    cfg: Any  # the composed DictConfig (without the hydra node)
    config: RunConfig
    data: DataReport
    plan: Plan
    recipe: str | None
    overrides: list[str]


def prepare(project: Project, overrides: list[str]) -> Prepared:
    """Everything that can fail on bad input, before anything is written or spent."""
    composed = compose(project, overrides)
    choices = dict(composed.hydra.runtime.choices)
    return prepare_composed(project, composed, overrides, choices)


def prepare_composed(project: Project, cfg: Any, overrides: list[str], choices: dict) -> Prepared:
    config = load(cfg, Origins(project, overrides, choices))
    data = check_data(config.data)
    plan = get_backend(config.provider.name).plan(config, data)
    return Prepared(cfg, config, data, plan, choices.get("recipe"), overrides)


def execute(project: Project, prepared: Prepared, run_path: Path) -> Result:
    """Start a new run in `run_path` (Hydra has created it) and carry it to a true final status."""
    from omegaconf import OmegaConf

    run = RunDir(run_path)
    run.start(recipe=prepared.recipe, provider=prepared.config.provider.name, project_root=project.root,
              overrides=prepared.overrides)
    run.update(pid=os.getpid(), plan_estimates=prepared.plan.estimates)
    raw = OmegaConf.to_container(prepared.cfg, resolve=False)
    raw.pop("hydra", None)
    run.write_config(prepared.config.model_dump(mode="json"), raw)
    from .secrets import scrub_tree

    write_json_atomic(run.path / "plan.json", scrub_tree(prepared.plan.to_dict()))
    write_json_atomic(run.manifest, prepared.data.manifest())
    _copy_split_manifests(prepared.data, run)
    from .rundir import redact_hydra_dir

    redact_hydra_dir(run.path / ".hydra")
    for warning in prepared.data.warnings:
        run.append_log(f"data warning: {warning.render()}")
    backend = get_backend(prepared.config.provider.name)
    result = supervise(run, lambda: backend.run(prepared.plan, run), title=prepared.recipe or "run")
    try:
        evaluate_after_training(run, prepared.config, console=None)
    finally:
        _track(run, prepared.config, project.root)
    return result


def resume(run_path: Path) -> Result:
    """Continue an interrupted or failed run from its own directory (config, data hashes, checkpoints)."""
    import yaml

    run = RunDir(run_path)
    if not run.run_json.is_file():
        raise ConfigError(Problem(str(run_path), "not a run directory (no run.json)"))
    record = run.read()
    if record["status"] == "succeeded":
        raise ConfigError(Problem(str(run_path), "this run already succeeded; nothing to resume"))
    if record["status"] == "running" and _alive(record):
        raise ConfigError(Problem(str(run_path), f"this run is still running (pid {record.get('pid')})"))
    config = RunConfig.model_validate(yaml.safe_load((run.path / "config.yaml").read_text()))
    data = check_data(config.data)
    _same_data(run, data)
    plan = get_backend(config.provider.name).plan(config, data)
    run.update(status="running", pid=os.getpid(), resumed=[*record.get("resumed", []), record["status"]],
               error=None)
    backend = get_backend(config.provider.name)
    result = supervise(run, lambda: backend.resume(plan, run), title=record.get("recipe") or "run")
    try:
        evaluate_after_training(run, config, console=None)
    finally:
        _track(run, config, _project_root())
    return result


def supervise(run: RunDir, work: Callable[[], Result], title: str) -> Result:
    """Run `work`; whatever happens, run.json ends as succeeded, failed or interrupted."""
    try:
        with _sigterm_as_interrupt():
            result = work()
    except (KeyboardInterrupt, RunInterrupted):
        _plot(run, title)
        run.finish("interrupted", error=f"interrupted; continue with: ftorch resume {run.path}")
        raise
    except FtorchError as exc:
        _plot(run, title)
        run.finish("failed", error=exc.render())
        raise
    except BaseException as exc:
        run.append_log("".join(traceback.format_exception(exc)))
        _plot(run, title)
        run.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    plot = _plot(run, title)
    run.finish(result.status, metrics=result.metrics, artifacts=result.artifacts,
               loss_plot=str(plot) if plot else None, **result.extra)
    return result


def _track(run: RunDir, config: RunConfig, root: Path) -> None:
    """Experiment tracking after the run (and its evaluation); a tracker's failure never changes the run."""
    from . import tracking

    try:
        noted = tracking.record(run, config, root)
    except Exception as exc:
        run.append_log("tracking failed:\n" + "".join(traceback.format_exception(exc)))
        noted = {"backend": config.tracking.backend, "error": f"{type(exc).__name__}: {exc}"}
    if noted:
        run.update(tracking=noted)


def _project_root() -> Path:
    from .compose import find_project

    return find_project().root


def _copy_split_manifests(data: DataReport, run: RunDir) -> None:
    """Data made by `ftorch data split` carries its split manifest: keep it with the run."""
    from .data.split import MANIFEST

    folders = {chat.path.resolve().parent for chat in data.splits.values()}
    for index, folder in enumerate(sorted(folders)):
        if (folder / MANIFEST).is_file():
            name = MANIFEST if len(folders) == 1 else f"{index}_{MANIFEST}"
            shutil.copyfile(folder / MANIFEST, run.manifest.parent / name)


def _plot(run: RunDir, title: str) -> Path | None:
    try:
        return loss_plot(run.metrics, run.path / "loss.png", title)
    except Exception as exc:  # a plot must never change a run's status
        run.append_log(f"loss plot failed: {exc}")
        return None


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum, frame):
        raise RunInterrupted()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _alive(record: dict) -> bool:
    pid = record.get("pid")
    if not pid or record.get("host") != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _same_data(run: RunDir, data: DataReport) -> None:
    if not run.manifest.is_file():
        return
    recorded = {f["split"]: f["sha256"] for f in json.loads(run.manifest.read_text())["files"]}
    now = {f["split"]: f["sha256"] for f in data.manifest()["files"]}
    changed = [split for split in recorded if recorded[split] != now.get(split)]
    if changed:
        raise DataError(Problem(str(run.manifest), f"data changed since the run started: {', '.join(changed)}",
                                "restore the original files, or start a new run"))
