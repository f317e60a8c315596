"""A Hydra sweeper on a maintained Optuna (5.x): `hydra/sweeper=ftorch_optuna`.

Why not hydra-optuna-sweeper: its last release (1.3.0) pins optuna<3 (2.10 from 2021) and then
sqlalchemy<2. This sweeper keeps Hydra's interface and search-space syntax (`hydra.sweeper.params` with
`interval()`, `range()`, `choice()`, `tag(log, interval(...))`, `int(interval(...))`), direction(s),
n_trials, n_jobs, seed and storage, on current Optuna. The study lives in the sweep directory
(sqlite), so a sweep interrupted and started again with the same `hydra.sweep.dir` goes on where it
stopped: finished trials are not repeated; trials cut off mid-run are marked failed and replaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from ftorch.sweep.objective import planned


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.ftorch_optuna.optuna_sweeper.OptunaSweeper"
    n_trials: int = 8
    n_jobs: int = 1  # trials launched together (parallel with a parallel launcher)
    seed: int | None = 0
    sampler: str = "tpe"  # tpe | random
    study_name: str = "ftorch"
    storage: str | None = None  # default: sqlite:///<sweep dir>/optuna.db
    params: dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="ftorch_optuna", node=OptunaSweeperConf, provider="ftorch")


class OptunaSweeper(Sweeper):
    def __init__(self, n_trials: int, n_jobs: int, seed: int | None, sampler: str, study_name: str,
                 storage: str | None, params: dict[str, str]):
        self.n_trials, self.n_jobs, self.seed = n_trials, n_jobs, seed
        self.sampler_name, self.study_name, self.storage = sampler, study_name, storage
        self.params = dict(params or {})

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        try:
            import optuna
        except ImportError:
            raise ImportError("sweep=optuna needs Optuna: pip install 'ftorch[sweep]'") from None

        if self.hydra_context is None or self.config is None or self.launcher is None:
            raise RuntimeError("the sweeper runs after Hydra's setup() (which gives it its context and launcher)")
        config, launcher = self.config, self.launcher
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        space = {o.get_key_element(): distribution(o) for o in overrides if o.is_sweep_override()}
        fixed = [f"{o.get_key_element()}={o.get_value_element_as_str()}" for o in overrides
                 if not o.is_sweep_override()]
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
        targets = planned(_plain(config))
        study = optuna.create_study(
            study_name=self.study_name, storage=self.storage or f"sqlite:///{sweep_dir / 'optuna.db'}",
            sampler=self._sampler(), directions=[t["direction"] for t in targets], load_if_exists=True)
        sweep_settings = _plain(config).get("sweep") or {}
        for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            values = _finished_run_values(sweep_dir, stale.number, sweep_settings)
            if values is not None and len(values) == len(targets):
                study.tell(stale.number, values)  # its run finished; only the telling was cut off
                continue
            # cut off by an interruption: closed as failed, marked, and not counted (a new trial replaces it)
            optuna.trial.Trial(study, stale._trial_id).set_user_attr("interrupted", True)  # no public id getter
            study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
        returns = []
        while (done := len(_finished(study))) < self.n_trials:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - done))]
            batch = [fixed + [f"{key}={_format(value)}" for key, value in trial.params.items()] for trial in trials]
            results = launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, result in zip(trials, results):
                values = _values(result, len(targets))
                if values is None:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, values)
            returns.append(results)
        _write_results(study, targets, sweep_dir)
        return returns

    def _sampler(self):
        import optuna

        if self.sampler_name == "random":
            return optuna.samplers.RandomSampler(seed=self.seed)
        return optuna.samplers.TPESampler(seed=self.seed)


def distribution(override: Override):
    """Hydra's sweep syntax -> an Optuna distribution."""
    import optuna.distributions as d

    value = override.value()
    key = override.get_key_element()
    if isinstance(value, ChoiceSweep):
        return d.CategoricalDistribution([_plain_value(v) for v in value.list])
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if start is None or stop is None:  # Hydra's parser always sets both for range(...)
            raise ValueError(f"{key}: a range sweep needs a start and a stop")
        if isinstance(start, int) and isinstance(stop, int) and isinstance(step, int):
            return d.IntDistribution(start, stop - 1, step=step)
        return d.FloatDistribution(start, stop - step, step=step)
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return d.IntDistribution(int(value.start), int(value.end), log=log)
        if value.start is None or value.end is None:  # Hydra's parser always sets both for interval(...)
            raise ValueError(f"{key}: an interval sweep needs a start and an end")
        return d.FloatDistribution(float(value.start), float(value.end), log=log)
    raise ValueError(f"{key}: sweep type {type(value).__name__} is not supported; use choice, range or interval")


def _plain_value(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _format(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _plain(config) -> dict:
    without = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    plain = OmegaConf.to_container(without, resolve=True)
    return plain if isinstance(plain, dict) else {}


def _values(result, count: int) -> list[float] | None:
    from hydra.core.utils import JobStatus

    if result.status != JobStatus.COMPLETED:
        return None
    value = result._return_value
    values = value if isinstance(value, (list, tuple)) else [value]
    if len(values) != count or any(not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]


def _finished_run_values(sweep_dir: Path, number: int, sweep_settings: dict) -> list[float] | None:
    """The objective values of trial `number` if its run succeeded: an interruption that lands between
    the run's end and the sweeper's `tell` must not throw a finished trial away."""
    from ftorch.sweep.objective import score_run

    for hydra_file in sweep_dir.glob("*/.hydra/hydra.yaml"):
        try:
            job = OmegaConf.load(hydra_file).hydra.job
        except Exception:  # a damaged or foreign file: not this trial's
            continue
        if job.get("num") == number and (hydra_file.parent.parent / "run.json").is_file():
            try:
                return score_run(hydra_file.parent.parent, sweep_settings.get("objective", "auto"),
                                 sweep_settings.get("direction", "auto"))
            except Exception:  # an unreadable run.json: the trial is replaced like any cut-off one
                return None
    return None


def _finished(study):
    """Trials that count towards n_trials: completed, or failed on their own (not cut off by an interruption)."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    return [t for t in study.get_trials(deepcopy=False, states=states) if not t.user_attrs.get("interrupted")]


def _write_results(study, targets: list[dict], sweep_dir: Path) -> None:
    best = study.best_trials
    summary = {"objectives": targets, "n_trials": len(study.trials),
               "best": [{"number": t.number, "values": t.values, "params": t.params} for t in best]}
    OmegaConf.save(OmegaConf.create(summary), sweep_dir / "optimization_results.yaml")
