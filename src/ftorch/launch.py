"""Run one job or a multirun through Hydra's own launcher, so run dirs, .hydra/ and sweepers are Hydra's."""

from __future__ import annotations

import shutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from .compose import Project, prepare
from .errors import FtorchError, RunInterrupted
from . import runner


@dataclass
class Outcome:
    run_dir: Path
    status: str
    error: BaseException | None = None
    metrics: dict | None = None


def launch(project: Project, overrides: list[str], multirun: bool) -> tuple[list[Outcome], Path | None]:
    """Returns each trial's outcome and, for a multirun, the sweep directory."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    outcomes: list[Outcome] = []
    sweep_dir: list[Path] = []

    def task(cfg) -> float | None:
        hc = HydraConfig.get()
        run_dir = Path(hc.runtime.output_dir)
        if multirun and not sweep_dir:
            sweep_dir.append(Path(hc.sweep.dir))
        try:
            prepared = runner.prepare_composed(project, cfg, list(hc.overrides.task), dict(hc.runtime.choices))
            result = runner.execute(project, prepared, run_dir)
        except (KeyboardInterrupt, RunInterrupted) as exc:
            outcomes.append(Outcome(run_dir, "interrupted", exc))
            raise KeyboardInterrupt from None  # stops a sweep too
        except Exception as exc:
            _discard_if_not_started(run_dir)
            if not isinstance(exc, FtorchError):
                traceback.print_exc()
            outcomes.append(Outcome(run_dir, "failed", exc))
            return None
        outcomes.append(Outcome(run_dir, result.status, None, result.metrics))
        return result.metrics.get("final_eval_loss", result.metrics.get("final_loss"))

    prepare(project)
    GlobalHydra.instance().clear()
    argv = sys.argv
    sys.argv = ["ftorch", *(["--multirun"] if multirun else []), *overrides]
    try:
        hydra.main(config_path=str(project.conf_dir), config_name="config", version_base="1.3")(task)()
    except KeyboardInterrupt:
        if not any(o.status == "interrupted" for o in outcomes):
            outcomes.append(Outcome(Path(sweep_dir[0] if sweep_dir else "."), "interrupted"))
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
    return outcomes, (sweep_dir[0] if sweep_dir else None)


def _discard_if_not_started(run_dir: Path) -> None:
    """A job that failed before its run started leaves only Hydra's .hydra/: remove it, so nothing
    on disk looks like a run."""
    if run_dir.is_dir() and not (run_dir / "run.json").exists():
        shutil.rmtree(run_dir, ignore_errors=True)
