"""One run's life: validate, check data, plan, record, run under supervision so run.json tells the truth."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends import Plan, Result, get_backend, make_plan
from ..config.compose import Project, compose
from ..config.load import Origins, load, plain_dict
from ..config.schema import RunConfig
from ..data.report import DataReport, check_data
from ..errors import EXIT_USER, ConfigError, DataError, FtorchError, Problem, RunInterrupted
from ..safe_io import copy_file
from .plots import loss_plot
from .rundir import RunDir, pid_alive, write_json_atomic
from .signals import signals_held, sigterm_as_interrupt


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
    plan = make_plan(config, data)
    return Prepared(cfg, config, data, plan, choices.get("recipe"), overrides)


def config_key(cfg: Any) -> str | None:
    """A composed config's identity (its `hydra` node, which holds timestamps, left out): a trial whose config
    was already validated and its data checked before the launch is not prepared a second time. None when a
    value depends on when or where Hydra runs it (${now:}, ${hydra:}): such a config is prepared where it runs."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(plain, dict)
    plain.pop("hydra", None)
    text = json.dumps(plain, sort_keys=True, default=str)
    return None if "${now:" in text or "${hydra:" in text else text


def execute(project: Project, prepared: Prepared, run_path: Path) -> Result:
    """Start a new run in `run_path` (Hydra has created it) and carry it to a true final status. The process
    holds the run's lock throughout (training, evaluation, tracking); SIGTERM unwinds like Ctrl-C."""
    run = RunDir(run_path)
    run_path.mkdir(parents=True, exist_ok=True)
    with run.owned("train"), sigterm_as_interrupt():
        return _execute(project, prepared, run)


def _execute(project: Project, prepared: Prepared, run: RunDir) -> Result:

    run.start(recipe=prepared.recipe, provider=prepared.config.provider.name, project_root=project.root,
              overrides=prepared.overrides)
    run.update(pid=os.getpid(), plan_estimates=prepared.plan.estimates)
    raw = plain_dict(prepared.cfg)
    run.write_config(prepared.config.model_dump(mode="json"), raw)
    from ..secrets import scrub_tree

    write_json_atomic(run.path / "plan.json", scrub_tree(prepared.plan.to_dict()))
    write_json_atomic(run.manifest, prepared.data.manifest())
    _copy_split_manifests(prepared.data, run)
    from .rundir import redact_hydra_dir

    redact_hydra_dir(run.path / ".hydra")
    for warning in prepared.data.warnings:
        run.append_log(f"data warning: {warning.render()}")
    backend = get_backend(prepared.config.provider.name)
    return _train_then_evaluate(run, prepared.config, project.root, lambda: backend.run(prepared.plan, run),
                                prepared.recipe or "run")


def resume(run_path: Path) -> Result:
    """Continue an interrupted, failed or died run from its own directory (config, data hashes, checkpoints).
    Only one process at a time: the run's lock decides, so two resumes started together never both train."""
    run = RunDir(run_path)
    if not run.run_json.is_file():
        raise ConfigError(Problem(str(run_path), "not a run directory (no run.json)"))
    legacy = not run.lock_file.exists()  # a run from before the lock: its owner is known by pid only
    with run.owned("resume"), sigterm_as_interrupt():
        return _resume(run, legacy)


def _resume(run: RunDir, legacy: bool) -> Result:
    record = run.record()
    if record.status == "succeeded":
        raise ConfigError(Problem(str(run.path), "this run already succeeded; nothing to resume"))
    if record.status == "running" and legacy and pid_alive(record):
        raise ConfigError(Problem(str(run.path), f"this run is still running (pid {record.pid})"))
    status = "died" if record.status == "running" else record.status  # we hold the lock: its owner is gone
    try:
        config = run.config()
    except ConfigError as exc:
        first = exc.problems[0]
        raise ConfigError(Problem(first.where, f"{first.message}: it cannot be resumed", "start a new run")) from None
    data = check_data(config.data)
    _same_data(run, data)
    plan = make_plan(config, data, resuming=True)
    run.update(status="running", pid=os.getpid(), resumed=[*record.resumed, status], error=None)
    backend = get_backend(config.provider.name)
    return _train_then_evaluate(run, config, _project_root(), lambda: backend.resume(plan, run),
                                record.recipe or "run")


def _train_then_evaluate(run: RunDir, config: RunConfig, root: Path, work: Callable[[], Result],
                         title: str) -> Result:
    """Training under supervision, then the evaluation and tracking of a succeeded run. An interrupt after
    training was recorded leaves status succeeded, and says the evaluation was interrupted."""
    from ..eval.finished import evaluate_after_training  # here, not at the top: `plan` never loads the evaluation

    result = None
    try:
        result = supervise(run, work, title)
        evaluate_after_training(run, config, console=None)
    except (KeyboardInterrupt, RunInterrupted):
        if result is not None or run.record().status == "succeeded":
            from ..eval.finished import record_interrupted

            record_interrupted(run)
        raise
    finally:
        if result is not None:
            _track(run, config, root)
    return result


def supervise(run: RunDir, work: Callable[[], Result], title: str) -> Result:
    """Run `work`; whatever happens, and however many signals arrive, run.json ends as succeeded, failed or
    interrupted (the status is written with Ctrl-C and SIGTERM held back), and the console agrees."""
    try:
        with sigterm_as_interrupt():
            result = work()
    except (KeyboardInterrupt, RunInterrupted) as exc:
        how = "SIGTERM" if isinstance(exc, RunInterrupted) else "Ctrl-C"
        message = f"interrupted ({how}); continue with: ftorch resume {run.path}"
        _record(run, "interrupted", say=message, error=message, **_saved_since_recorded(run))
        _plot(run, title)
        raise
    except FtorchError as exc:
        full = None if exc.exit_code == EXIT_USER else disk_full(exc, run.path)  # a child that died of it
        if full is None:
            _record(run, "failed", error=exc.render())
            _plot(run, title)
            raise
        raise _record_disk_full(run, exc, full) from None
    except BaseException as exc:
        full = disk_full(exc, run.path)
        if full is None:
            _failed(run, exc, title)
            raise
        raise _record_disk_full(run, exc, full) from None
    with signals_held() as held:
        plot = _plot(run, title)
    held += _record(run, result.status, metrics=result.metrics, artifacts=result.artifacts,
                    loss_plot=str(plot) if plot else None, **result.extra)
    if held:  # a signal that came while the outcome was written: training is done, the rest is interrupted
        raise RunInterrupted() if held[-1] == signal.SIGTERM else KeyboardInterrupt()
    return result


class DiskFull(FtorchError):
    exit_code = EXIT_USER
    title = "disk full"


LOW_SPACE = 64 * 2**20
"""Less free than this (bytes) on the run's disk after a write failed: the disk is what is full."""
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_FULL_WORDS = ("No space left on device", "Disk quota exceeded")


def disk_full(exc: BaseException, folder: Path | None = None) -> str | None:
    """Why `exc` is the disk being full (for the message), or None when it is not. Libraries do not always say
    so: torch.save reports "[enforce fail at inline_container.cc:672] . unexpected pos" and nothing else. So,
    whatever the error says: an ENOSPC or EDQUOT anywhere in its chain (or their words), or, with `folder`
    given (the run's), less than LOW_SPACE left on the disk that holds it. Running out of memory is not this."""
    if _full_in_chain(exc):
        return "no space left on device"
    if folder is None or isinstance(exc, MemoryError) or "OutOfMemory" in type(exc).__name__:
        return None
    free = free_space(folder)
    return f"{free / 2**20:.1f} MiB left on it" if free is not None and free < LOW_SPACE else None


def _full_in_chain(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if (isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS) or any(w in str(exc) for w in _FULL_WORDS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def free_space(folder: Path) -> int | None:
    """Bytes free to this user on the disk holding `folder` (or its nearest existing parent); None if unknown."""
    for path in (folder, *folder.parents):
        try:
            return shutil.disk_usage(path).free
        except FileNotFoundError:
            continue
        except OSError:
            return None
    return None


def _record_disk_full(run: RunDir, exc: BaseException, why: str) -> DiskFull:
    """The run failed because its disk is full: the checkpoint whose save was cut short goes first (resume
    would drop it anyway, and its space is what run.json needs to be written), then the status is recorded
    with the command that continues the run. Returns the error to raise (exit 2)."""
    from ..backends.hf.checkpoints import drop_incomplete

    drop_incomplete(run)
    full = DiskFull(Problem(str(run.path), f"the disk is full ({why}); the error was: "
                                           f"{type(exc).__name__}: {exc}",
                            f"free some space, then continue with: ftorch resume {run.path}"))
    _record(run, "failed", error=full.render())
    return full


def _failed(run: RunDir, exc: BaseException, title: str) -> None:
    try:
        run.append_log("".join(traceback.format_exception(exc)))
    except OSError:
        pass
    _record(run, "failed", error=f"{type(exc).__name__}: {exc}")
    _plot(run, title)


def _saved_since_recorded(run: RunDir) -> dict[str, Any]:
    """{"last_checkpoint_step": N} when the newest complete checkpoint on disk is newer than the one run.json
    names: a Ctrl-C between a save and the callback that records it (backends/hf/callbacks.py) must not leave
    run.json naming an older checkpoint than `ftorch resume` will continue from. Empty for a run without local
    checkpoints (hosted providers)."""
    from ..backends.hf.checkpoints import latest_checkpoint, step_of

    newest = latest_checkpoint(run.checkpoints)
    if newest is None:
        return {}
    try:
        recorded = run.record().last_checkpoint_step
    except (OSError, ValueError):
        recorded = None
    return {"last_checkpoint_step": step_of(newest)} if recorded is None or step_of(newest) > recorded else {}


def _record(run: RunDir, status: str, say: str | None = None, **fields: Any) -> list[int]:
    """run.finish with Ctrl-C and SIGTERM held back (a second Ctrl-C cannot cut it short; one that slipped in
    before they were held makes it start again). Returns the signals held. `say` goes to the console in the same
    shelter, so what the console says is what run.json says. A run.json that cannot be written (a full disk) is
    said on the console: readers will report the run as died, which is the truth."""
    held: list[int] = []
    for _ in range(10):
        try:
            with signals_held() as caught:
                try:
                    run.finish(status, **fields)
                except OSError as exc:
                    print(f"ftorch: could not record status '{status}' in {run.run_json}: {exc}; "
                          f"`ftorch runs ls` will show this run as died", file=sys.stderr, flush=True)
                if say:
                    print(f"\n{say}", file=sys.stderr, flush=True)
            return held + caught
        except (KeyboardInterrupt, RunInterrupted) as exc:
            held.append(signal.SIGTERM if isinstance(exc, RunInterrupted) else signal.SIGINT)
    return held


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
    from ..config.compose import find_project

    return find_project().root


def _copy_split_manifests(data: DataReport, run: RunDir) -> None:
    """Data made by `ftorch data split` carries its split manifest: keep it with the run."""
    from ..data.split import MANIFEST

    folders = {chat.path.resolve().parent for chat in data.splits.values()}
    for index, folder in enumerate(sorted(folders)):
        if (folder / MANIFEST).is_file():
            name = MANIFEST if len(folders) == 1 else f"{index}_{MANIFEST}"
            copy_file(folder / MANIFEST, run.manifest.parent / name)  # never through a symlink


def _plot(run: RunDir, title: str) -> Path | None:
    """loss.png, drawn beside and renamed into place (never a torn image); a plot never changes a status."""
    partial = run.path / ".loss.partial.png"
    try:
        made = loss_plot(run.metrics, partial, title)
        if made is None:
            return None
        os.replace(partial, run.path / "loss.png")
        return run.path / "loss.png"
    except Exception as exc:
        partial.unlink(missing_ok=True)
        try:
            run.append_log(f"loss plot failed: {exc}")
        except OSError:
            pass
        return None


def _same_data(run: RunDir, data: DataReport) -> None:
    if not run.manifest.is_file():
        return
    recorded = {f["split"]: f["sha256"] for f in json.loads(run.manifest.read_text())["files"]}
    now = {f["split"]: f["sha256"] for f in data.manifest()["files"]}
    changed = [split for split in recorded if recorded[split] != now.get(split)]
    if changed:
        raise DataError(Problem(str(run.manifest), f"data changed since the run started: {', '.join(changed)}",
                                "restore the original files, or start a new run"))
