"""Run one job or a multirun through Hydra's own launcher, so run dirs, .hydra/ and sweepers are Hydra's."""

from __future__ import annotations

import shutil
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.compose import Project, use_project
from ..errors import FtorchError, RunInterrupted
from ..secrets import redact_hydra_dir
from . import lifecycle as runner

if TYPE_CHECKING:
    from .record import RunRecord


@dataclass
class Outcome:
    run_dir: Path
    status: str
    error: BaseException | None = None
    metrics: dict | None = None
    interrupted: bool = False  # by Ctrl-C or SIGTERM (status is run.json's: succeeded if only the eval was cut)


def launch(project: Project, overrides: list[str], multirun: bool,
           checked: Sequence[runner.Prepared] = ()) -> tuple[list[Outcome], Path | None]:
    """Returns each trial's outcome and, for a multirun, the sweep directory. `checked`: trials already prepared
    (validated, data checked) in this process; a trial with the same config is not prepared again."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    outcomes: list[Outcome] = []
    sweep_dir: list[Path] = []
    known = {key: p for p in checked if (key := runner.config_key(p.cfg)) is not None}

    def task(cfg) -> float | list[float] | None:
        use_project(project)  # resolvers and recipes, also in a launcher's worker process
        hc = HydraConfig.get()
        run_dir = Path(hc.runtime.output_dir)
        if multirun and not sweep_dir:
            sweep_dir.append(Path(hc.sweep.dir))
        prepared = None
        if (run_dir / ".hydra").is_dir():  # Hydra wrote the raw overrides already: no secret waits for the run start
            redact_hydra_dir(run_dir / ".hydra")
        try:
            task_overrides = list(hc.overrides.task)
            prepared = known.get(runner.config_key(cfg) or "")
            prepared = (replace(prepared, overrides=task_overrides) if prepared is not None else
                        runner.prepare_composed(project, cfg, task_overrides, dict(hc.runtime.choices)))
            if multirun and (run_dir / "run.json").is_file():  # a resumed sweep: finish or keep this trial
                result = _continue_trial(run_dir)
            else:
                result = runner.execute(project, prepared, run_dir)
        except (KeyboardInterrupt, RunInterrupted) as exc:
            _discard_if_not_started(run_dir)
            outcomes.append(Outcome(run_dir, _status(run_dir, "interrupted"), exc, interrupted=True))
            raise KeyboardInterrupt from None  # stops a sweep too
        except Exception as exc:
            _discard_if_not_started(run_dir)
            if not isinstance(exc, FtorchError):
                traceback.print_exc()
            outcomes.append(Outcome(run_dir, _status(run_dir, "failed"), exc))
            if multirun and prepared is not None and prepared.config.sweep.fail_fast:
                raise
            return None
        outcomes.append(Outcome(run_dir, result.status, None, result.metrics))
        return _objective(run_dir, prepared.config)

    use_project(project, overrides)  # the recipes these overrides choose, read only now
    if multirun and not any(o.startswith("hydra.sweep.dir=") for o in overrides):
        # known here, whatever runs the trials
        overrides = [*overrides, f"hydra.sweep.dir={_sweep_dir(project, overrides)}"]
    GlobalHydra.instance().clear()
    argv = sys.argv
    sys.argv = ["ftorch", *(["--multirun"] if multirun else []), *overrides]
    try:
        hydra.main(config_path=str(project.conf_dir), config_name="config", version_base="1.3")(task)()
    except KeyboardInterrupt:
        if not any(o.interrupted for o in outcomes):
            outcomes.append(Outcome(Path(sweep_dir[0] if sweep_dir else "."), "interrupted", interrupted=True))
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
    if multirun:
        folder = Path(next(o for o in overrides if o.startswith("hydra.sweep.dir=")).partition("=")[2])
        return outcomes + _outcomes_of_other_processes(folder, outcomes), folder
    return outcomes, None


def _sweep_dir(project: Project, overrides: list[str]) -> str:
    """The sweep folder the config names (its timestamp resolved now), so that the trials of a launcher that
    runs them in other processes (joblib, submitit, ray) can be found and reported here."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ..config.compose import compose

    fixed = [o.input_line for o in OverridesParser.create().parse_overrides(overrides)
             if not o.is_sweep_override() and o.input_line is not None]
    return str(Path(compose(project, fixed).hydra.sweep.dir).resolve())


def _outcomes_of_other_processes(folder: Path, known: list[Outcome]) -> list[Outcome]:
    from ..errors import BackendError, Problem

    seen = {o.run_dir.resolve() for o in known}
    found = []
    for path in sorted(folder.glob("*/run.json")):
        if path.parent.resolve() in seen:
            continue
        record = _record(path.parent)
        if record is None:
            continue
        error = BackendError(Problem(str(path.parent), record.error)) if record.error else None
        found.append(Outcome(path.parent, record.status, error, record.metrics))
    return found


def _objective(run_dir: Path, config) -> float | list[float] | None:
    """What the sweeper optimises, from the finished run's record (also kept in run.json)."""
    from ..sweep.objective import score_run

    values = score_run(run_dir, config.sweep.objective, config.sweep.direction)
    return values[0] if values is not None and len(values) == 1 else values


def _continue_trial(run_dir: Path):
    from ..backends import Result
    from .rundir import RunDir

    record = RunDir(run_dir).record()
    if record.status == "succeeded":
        return Result("succeeded", metrics=record.metrics)
    return runner.resume(run_dir)


def _status(run_dir: Path, default: str) -> str:
    record = _record(run_dir)
    return record.status if record else default


def _record(run_dir: Path) -> RunRecord | None:
    """run.json as readers report it ('died' for a running run nobody owns); None if absent or corrupt."""
    from .rundir import RunDir

    if not (run_dir / "run.json").is_file():
        return None
    try:
        return RunDir(run_dir).observed()
    except FtorchError:
        return None


def _discard_if_not_started(run_dir: Path) -> None:
    """A job that failed before its run started leaves only Hydra's .hydra/: remove it, so nothing
    on disk looks like a run."""
    if run_dir.is_dir() and not (run_dir / "run.json").exists():
        shutil.rmtree(run_dir, ignore_errors=True)
