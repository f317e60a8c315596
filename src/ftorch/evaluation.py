"""Evaluation of a run directory: after `ftorch train`, or later with `ftorch eval RUN_DIR key=value ...`.
Each evaluation gets its own RUN_DIR/eval/<timestamp>/; run.json records the latest and lists them all."""

from __future__ import annotations

import traceback
from pathlib import Path

import yaml

from .errors import ConfigError, FtorchError, Problem
from .rundir import RunDir
from .schema import RunConfig


def config_of(run: RunDir, overrides: list[str]) -> RunConfig:
    """The run's saved config with eval.* overrides applied (anything else would change the run itself)."""
    from omegaconf import OmegaConf
    from pydantic import ValidationError

    from .compose import find_project
    from .config import Origins, _problem

    if not (run.path / "config.yaml").is_file():
        raise ConfigError(Problem(str(run.path), "not a run directory (no config.yaml)"))
    bad = [o for o in overrides if not o.lstrip("+").startswith("eval.") and not o.startswith("eval=")]
    if bad:
        raise ConfigError(Problem("command line", f"only eval.* settings can change for a finished run: {bad}"))
    base = OmegaConf.create(yaml.safe_load((run.path / "config.yaml").read_text()))
    try:
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
        return RunConfig.model_validate(OmegaConf.to_container(merged, resolve=True))
    except ValidationError as exc:
        origins = Origins(find_project(), overrides, {})
        raise ConfigError([_problem(err, origins) for err in exc.errors()]) from None
    except Exception as exc:  # OmegaConf parse errors
        raise ConfigError(Problem("command line", str(exc).splitlines()[0])) from None


def evaluate_run(run: RunDir, cfg: RunConfig, console, models=None) -> dict:
    """Evaluate, write the report, and record the outcome in run.json; returns the report.
    `models` = (generator, local model or None, price) overrides the provider's own (for tests)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .eval import report as render
    from .eval.runner import eval_dir, evaluate, save

    path = eval_dir(run)
    generator, local, price = models or _generator_for(run, cfg)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        result = evaluate(run, cfg, generator, local=local, price=price, progress=progress)
    report = result["report"]
    report["verdict"] = render.verdict(report)
    save(path, result)
    (path / "report.md").write_text(render.markdown(report, run.path))
    render.plot(report, path / "eval.png")
    _record(run, path, report)
    return report


def _generator_for(run: RunDir, cfg: RunConfig):
    if cfg.provider.name == "peft":
        from .backends._hf import model_path
        from .eval.local import LocalModel

        if not (run.adapter / "adapter_config.json").is_file():
            raise ConfigError(Problem(str(run.adapter), "no adapter in this run to evaluate",
                                      "evaluate a run whose training succeeded"))
        local = LocalModel(model_path(cfg.model), run.adapter)
        return local, local, None
    raise ConfigError(Problem("provider.name", f"evaluation is not available for provider={cfg.provider.name} yet"))


def _record(run: RunDir, path: Path, report: dict) -> None:
    headline = report["task"]["headline"]
    metrics = dict(run.read().get("metrics") or {})
    for name, scores in report["task"]["systems"].items():
        metrics[f"eval_{name}_{headline}"] = scores[headline]["mean"]
    if "general" in report:
        metrics["eval_general_base"] = report["general"]["base"]["prompt_level"]
        metrics["eval_general_tuned"] = report["general"]["tuned"]["prompt_level"]
    if "safety" in report:
        metrics["eval_harmful_base"] = report["safety"]["base"]["harmful_compliance_rate"]
        metrics["eval_harmful_tuned"] = report["safety"]["tuned"]["harmful_compliance_rate"]
    record = run.read()
    history = [*record.get("evaluations", []), str(path)]
    run.update(metrics=metrics, evaluated=True, regressed=bool(report["regressions"]),
               evaluation={"status": "succeeded", "dir": str(path), "verdict": report["verdict"],
                           "regressions": report["regressions"]}, evaluations=history)


def evaluate_after_training(run: RunDir, cfg: RunConfig, console) -> dict | None:
    """The automatic evaluation at the end of `ftorch train`. Training already succeeded: an evaluation
    failure is recorded as such, and does not turn the run's status into failed."""
    if not cfg.eval.enabled:
        run.update(evaluated=False, evaluation={"status": "skipped", "reason": "eval=none"})
        return None
    try:
        return evaluate_run(run, cfg, console)
    except (KeyboardInterrupt, SystemExit):
        run.update(evaluated=False, evaluation={"status": "interrupted"})
        raise
    except FtorchError as exc:
        run.update(evaluated=False, evaluation={"status": "failed", "error": exc.render()})
        raise
    except Exception as exc:
        run.append_log("evaluation failed:\n" + "".join(traceback.format_exception(exc)))
        run.update(evaluated=False, evaluation={"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        raise


def summary_lines(report: dict) -> list[str]:
    headline = report["task"]["headline"]
    systems = report["task"]["systems"]
    scores = ", ".join(f"{name} {systems[name][headline]['mean']:.1%}" for name in systems)
    return [f"eval ({headline}, n={report['n']}): {scores}", f"verdict: {report['verdict']}"]

