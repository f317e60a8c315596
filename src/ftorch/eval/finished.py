"""The one entry point of an evaluation: a run directory, after `ftorch train` or later with `ftorch eval RUN_DIR
key=value ...`; it picks the models to ask and runs the suite (eval/suite.py).
Each evaluation gets its own RUN_DIR/eval/<timestamp>/; run.json records the latest and lists them all. A
re-evaluation that does not finish never hides the earlier successful one (its verdict stays in run.json).
`ftorch eval RUN --out DIR` only reads the run (a read-only one too): the evaluation and its record go to DIR."""

from __future__ import annotations

import shutil
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ..config.schema import RunConfig
from ..errors import ConfigError, FtorchError, Problem
from ..run import metric_keys
from ..run.rundir import RunDir
from ..secrets import scrub
from .report_model import EvalReport

INCOMPLETE = "INCOMPLETE"  # in eval/<timestamp>/ until the evaluation has finished
OUT_RECORD = "evaluation.json"  # an --out evaluation's record, in OUT/<timestamp>/ (run.json is left alone)


def config_of(run: RunDir, overrides: list[str]) -> RunConfig:
    """The run's saved config with eval overrides applied, in Hydra's override grammar: `eval=NAME` merges the
    conf/eval/NAME.yaml group option over the run's eval settings, `eval.key=value` sets one (anything else would
    change the run itself)."""
    from omegaconf import OmegaConf
    from pydantic import ValidationError

    from ..config.compose import find_project
    from ..config.load import Origins, validation_problem

    if not overrides:
        return run.config()
    data = run.config_data()
    project = find_project()
    merged = OmegaConf.create(data)
    for override in _parse_overrides(overrides):
        key = override.get_key_element().lstrip("+~")
        if key == "eval":
            option = override.value()
            path = project.conf_dir / "eval" / f"{option}.yaml"
            if not isinstance(option, str) or not path.is_file():
                from ..errors import did_you_mean

                raise ConfigError(Problem(f"command line: {override.input_line}", f"no eval option '{option}'",
                                          did_you_mean(str(option), project.group_options("eval"))
                                          or f"options in conf/eval/: {', '.join(project.group_options('eval'))}"))
            merged.eval = OmegaConf.merge(merged.eval, OmegaConf.load(path))
        elif key.startswith("eval."):
            OmegaConf.update(merged, key, override.value(), force_add=override.is_add())
        else:
            raise ConfigError(Problem(f"command line: {override.input_line}",
                                      "only eval.* settings can change for a finished run "
                                      "(eval=NAME or eval.KEY=VALUE)"))
    try:
        return RunConfig.model_validate(OmegaConf.to_container(merged, resolve=True))
    except ValidationError as exc:
        origins = Origins(project, overrides, {})
        raise ConfigError([validation_problem(err, origins) for err in exc.errors()]) from None
    except Exception as exc:  # an interpolation that does not resolve
        raise ConfigError(Problem("command line", str(exc).splitlines()[0])) from None


def _parse_overrides(overrides: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ..config.compose import override_problem

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise ConfigError(override_problem(exc, overrides)) from None
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if sweeps:
        raise ConfigError(Problem(f"command line: {sweeps[0]}", "an evaluation takes one value per key, not a sweep",
                                  "evaluate once per value, or sweep with `ftorch train -m`"))
    return parsed


class LineProgress:
    """Off a terminal (a log file, CI, `| tee`) live bars print nothing: one line per finished stage instead
    ("evaluated task · base (40) in 31s"), through the three calls the evaluation makes of rich's Progress."""

    def __init__(self, console) -> None:
        self.console = console
        self.stages: list[tuple[str, int, float]] = []  # label, conversations, started

    def add_task(self, description: str, total: int) -> int:
        self.stages.append((description, total, time.perf_counter()))
        return len(self.stages) - 1

    def advance(self, stage: int, n: int) -> None:
        pass  # a line per stage, not per batch

    def update(self, stage: int, visible: bool = True) -> None:
        if not visible:  # the stage is done
            label, total, started = self.stages[stage]
            self.console.print(f"evaluated {label} ({total}) in {time.perf_counter() - started:.0f}s",
                               highlight=False, soft_wrap=True)


def evaluate_run(run: RunDir, cfg: RunConfig, console, models=None, out: Path | None = None) -> EvalReport:
    """Evaluate, write the report, and record the outcome in run.json; returns the report.
    `models` = (generator, local model or None, price) overrides the provider's own (for tests).
    With `out` (an existing folder) nothing in the run's folder is written: the evaluation goes to
    OUT/<timestamp>/, its record to evaluation.json there, library output to eval.log there."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..run.library_log import attach_log_file, detach_log_file
    from ..safe_io import write_text
    from . import report as render
    from .suite import eval_dir, evaluate, save

    path = eval_dir(run, out)
    # library warnings and loading bars to train.log (eval.log beside an --out evaluation), not the console
    library_log = attach_log_file(run, None if out is None else path / "eval.log")
    try:
        write_text(path / INCOMPLETE, "this evaluation has not finished (or was killed): its files are no result\n")
        if out is None:
            _record_unfinished_as(run, status="running", dir=str(path))
        generator, local, price = models or _models_for(run, cfg)
        from .answer_cache import wrap

        generator = wrap(generator, cfg.eval.answer_cache, cfg.eval.answer_cache_mb)  # as is where not keyable
        console = console or Console(stderr=True)  # beside the training's progress
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        bars = (Progress(*columns, console=console, transient=True) if console.is_terminal
                else nullcontext(LineProgress(console)))
        with bars as progress:
            result = evaluate(run, cfg, generator, local=local, price=price, progress=progress)
        report = result.report
        report.verdict = render.verdict(report)
        save(path, result)
        write_text(path / "report.md", scrub(render.markdown(report, run.path)))
        render.plot(report, path / "eval.png")
        from .tradeoff import plot as tradeoff_plot

        tradeoff_plot(report, path / "tradeoff.png")
    except BaseException as exc:
        _record_unfinished(run, path, exc, out)
        raise
    finally:
        detach_log_file(library_log)
    (path / INCOMPLETE).unlink()
    _record(run, path, report, out)
    report.folder = path  # for the caller to name (not written into report.json)
    return report


def _record_unfinished(run: RunDir, path: Path, exc: BaseException, out: Path | None = None) -> None:
    """An evaluation that did not finish: its folder goes, run.json says interrupted or failed (with signals
    held back while it is written, so a second Ctrl-C cannot leave 'running'); an --out one leaves run.json be."""
    from ..errors import RunInterrupted
    from ..run.signals import signals_held

    again = f"ftorch eval {run.path}" + (f" --out {out}" if out is not None else "")
    with signals_held():
        shutil.rmtree(path, ignore_errors=True)
        if isinstance(exc, (KeyboardInterrupt, RunInterrupted, SystemExit)):
            outcome = {"status": "interrupted", "error": f"interrupted; evaluate again with: {again}"}
        elif isinstance(exc, FtorchError):
            outcome = {"status": "failed", "error": exc.render()}
        else:
            if out is None:
                run.append_log("evaluation failed:\n" + "".join(traceback.format_exception(exc)))
            outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        if out is None:
            _record_unfinished_as(run, **outcome)
        if outcome["status"] == "interrupted":
            print(f"\nevaluation interrupted; evaluate again with: {again}", file=sys.stderr, flush=True)


def _record_unfinished_as(run: RunDir, **outcome: Any) -> None:
    """run.json's `evaluation` for one that is running or did not finish. An earlier successful evaluation is
    not lost: its record stays under `last_succeeded` and `evaluated` stays true (its report, and its numbers
    in `metrics`, are still there)."""
    evaluation = run.record().evaluation
    earlier = evaluation.latest_success() if evaluation is not None else None
    if earlier is not None:
        outcome["last_succeeded"] = earlier
    run.update(evaluated=earlier is not None, evaluation=outcome)


def record_interrupted(run: RunDir) -> None:
    """After training succeeded, an interrupt that came before (or around) the evaluation's own record."""
    from ..run.signals import signals_held

    with signals_held():
        evaluation = run.record().evaluation
        if evaluation is None or evaluation.status == "running":
            _record_unfinished_as(run, status="interrupted", error="interrupted before the evaluation finished; "
                                                                   f"evaluate with: ftorch eval {run.path}")


def _models_for(run: RunDir, cfg: RunConfig):
    """What the run's provider evaluates with (Backend.eval_models), after its budget check on the calls this
    evaluation would make (Backend.check_eval_budget), so nothing is loaded or sent beyond the budget. Nothing
    here knows one provider from another."""
    from ..backends import get_backend
    from ..backends.settings import refuse_without_weights

    backend = get_backend(cfg.provider.name)
    if backend.weights == "hosted":  # `ftorch eval RUN eval.drift=true`: refused as at plan time, never skipped
        refuse_without_weights(cfg, backend.name)
    backend.check_eval_budget(run, cfg, lambda: _calls(cfg))
    return backend.eval_models(run, cfg)


def _calls(cfg: RunConfig) -> dict[str, list[list[dict]]]:
    """Every conversation this evaluation sends, per system: the task's examples, the prompting arms' sweep on
    validation and the chosen arm's prompts on test at the largest k, and the general and safety prompts."""
    from .tasks import SYSTEMS, load_task

    ev = cfg.eval
    task = load_task(cfg)
    calls = {name: [task.conversation(name, e) for e in task.examples] for name in SYSTEMS}
    if ev.prompt_arms:
        from .selection import sweep_conversations

        sweep, prompted = sweep_conversations(cfg, task.prompted_system_prompt)
        calls["base"], calls["prompted"] = calls["base"] + sweep, prompted
    extra = _general_and_safety_prompts(ev)
    calls["base"] += extra
    calls["tuned"] += extra
    return calls


def _general_and_safety_prompts(ev) -> list[list[dict]]:
    prompts: list[str] = []
    if ev.general:
        from .instructions import load_suite

        prompts += [item.prompt for item in load_suite(ev.general_limit)]
    if ev.safety:
        from .safety import load_prompts

        for kind in ("redteam", "benign"):
            prompts += [p.prompt for p in load_prompts(kind, ev.safety_limit, ev.seed)]
    return [[{"role": "user", "content": prompt}] for prompt in prompts]


def _record(run: RunDir, path: Path, report: EvalReport, out: Path | None = None) -> None:
    """The outcome: in run.json, or (an --out evaluation) in OUT/<timestamp>/evaluation.json, the run untouched."""
    headline = report.headline
    metrics = dict(run.record().metrics) if out is None else {}
    for name in report.task.systems:
        metrics[metric_keys.task(name, headline)] = report.task.mean(name)
    if report.general:
        metrics[metric_keys.general("base")] = report.general.base.prompt_level
        metrics[metric_keys.general("tuned")] = report.general.tuned.prompt_level
    if report.preference:
        from .preference import record as record_preference

        record_preference(metrics, report.preference)
    if report.safety:
        metrics[metric_keys.harmful("base")] = report.safety.base.harmful_compliance_rate
        metrics[metric_keys.harmful("tuned")] = report.safety.tuned.harmful_compliance_rate
    if report.judged and report.judged.estimate:
        metrics[metric_keys.JUDGED_PREFERENCE] = report.judged.estimate.estimate
    evaluation = {"status": "succeeded", "dir": str(path), "verdict": report.verdict, "headline": headline,
                  "regressions": report.regressions,
                  "prompt_arm": report.prompt_arms.chosen if report.prompt_arms else None,
                  "judged": report.judged.state if report.judged else None}
    if out is not None:
        from ..run.rundir import write_json_atomic

        write_json_atomic(path / OUT_RECORD, {"run": str(run.path), "evaluation": evaluation, "metrics": metrics,
                                              "regressed": bool(report.regressions)})
        return
    history = [*run.record().evaluations, str(path)]
    run.update(metrics=metrics, evaluated=True, regressed=bool(report.regressions), evaluation=evaluation,
               evaluations=history)


def evaluate_after_training(run: RunDir, cfg: RunConfig, console) -> EvalReport | None:
    """The automatic evaluation at the end of `ftorch train`. Training already succeeded: an evaluation
    failure is recorded as such, and does not turn the run's status into failed."""
    if not cfg.eval.enabled:
        run.update(evaluated=False, evaluation={"status": "skipped", "reason": "eval=none"})
        return None
    return evaluate_run(run, cfg, console)  # it records its own outcome, interrupted and failed included


def summary_lines(report: EvalReport) -> list[str]:
    from .report import pct

    chosen = report.prompt_arms.chosen if report.prompt_arms else None
    label = {"prompted": f"prompted ({chosen})"} if chosen else {}
    scores = ", ".join(f"{label.get(name, name)} {pct(report.task.mean(name), 'no scored examples')}"
                       for name in report.task.systems)
    lines = [f"eval ({report.headline}, n={report.n}): {scores}"]
    pairs = report.preference.pairs if report.preference else None
    if pairs:
        from .preference import summary_line

        lines.append(summary_line(pairs))
    if report.answer_cache is not None:
        lines.append(report.answer_cache.summary())
    return lines + [f"verdict: {report.verdict}"]

