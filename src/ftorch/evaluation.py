"""Evaluation of a run directory: after `ftorch train`, or later with `ftorch eval RUN_DIR key=value ...`.
Each evaluation gets its own RUN_DIR/eval/<timestamp>/; run.json records the latest and lists them all."""

from __future__ import annotations

import shutil
import sys
import traceback
from pathlib import Path

import yaml

from .errors import ConfigError, FtorchError, Problem
from .rundir import RunDir
from .schema import RunConfig
from .secrets import scrub

INCOMPLETE = "INCOMPLETE"  # in eval/<timestamp>/ until the evaluation has finished


def config_of(run: RunDir, overrides: list[str]) -> RunConfig:
    """The run's saved config with eval overrides applied, in Hydra's override grammar: `eval=NAME` merges the
    conf/eval/NAME.yaml group option over the run's eval settings, `eval.key=value` sets one (anything else would
    change the run itself)."""
    from omegaconf import OmegaConf
    from pydantic import ValidationError

    from .compose import find_project
    from .config import Origins, _problem

    if not (run.path / "config.yaml").is_file():
        raise ConfigError(Problem(str(run.path), "not a run directory (no config.yaml)"))
    project = find_project()
    merged = OmegaConf.create(yaml.safe_load((run.path / "config.yaml").read_text()))
    for override in _parse_overrides(overrides):
        key = override.get_key_element().lstrip("+~")
        if key == "eval":
            option = override.value()
            path = project.conf_dir / "eval" / f"{option}.yaml"
            if not isinstance(option, str) or not path.is_file():
                from .errors import did_you_mean

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
        raise ConfigError([_problem(err, origins) for err in exc.errors()]) from None
    except Exception as exc:  # an interpolation that does not resolve
        raise ConfigError(Problem("command line", str(exc).splitlines()[0])) from None


def _parse_overrides(overrides: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from .compose import override_problem

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise ConfigError(override_problem(exc, overrides)) from None
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if sweeps:
        raise ConfigError(Problem(f"command line: {sweeps[0]}", "an evaluation takes one value per key, not a sweep",
                                  "evaluate once per value, or sweep with `ftorch train -m`"))
    return parsed


def evaluate_run(run: RunDir, cfg: RunConfig, console, models=None) -> dict:
    """Evaluate, write the report, and record the outcome in run.json; returns the report.
    `models` = (generator, local model or None, price) overrides the provider's own (for tests)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .backends._hf import attach_log_file, detach_log_file
    from .eval import report as render
    from .eval.runner import eval_dir, evaluate, save

    path = eval_dir(run)
    library_log = attach_log_file(run)  # library warnings and loading bars to train.log, not the console
    try:
        (path / INCOMPLETE).write_text("this evaluation has not finished (or was killed): its files are no result\n")
        run.update(evaluation={"status": "running", "dir": str(path)})
        generator, local, price = models or _generator_for(run, cfg)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            result = evaluate(run, cfg, generator, local=local, price=price, progress=progress)
        report = result["report"]
        report["verdict"] = render.verdict(report)
        save(path, result)
        (path / "report.md").write_text(scrub(render.markdown(report, run.path)))
        render.plot(report, path / "eval.png")
        from .eval.tradeoff import plot as tradeoff_plot

        tradeoff_plot(report, path / "tradeoff.png")
    except BaseException as exc:
        _record_unfinished(run, path, exc)
        raise
    finally:
        detach_log_file(library_log)
    (path / INCOMPLETE).unlink()
    _record(run, path, report)
    return report


def _record_unfinished(run: RunDir, path: Path, exc: BaseException) -> None:
    """An evaluation that did not finish: its folder goes, run.json says interrupted or failed (with signals
    held back while it is written, so a second Ctrl-C cannot leave 'running')."""
    from .errors import RunInterrupted
    from .runner import _signals_held

    with _signals_held():
        shutil.rmtree(path, ignore_errors=True)
        if isinstance(exc, (KeyboardInterrupt, RunInterrupted, SystemExit)):
            outcome = {"status": "interrupted", "error": f"interrupted; evaluate again with: ftorch eval {run.path}"}
        elif isinstance(exc, FtorchError):
            outcome = {"status": "failed", "error": exc.render()}
        else:
            run.append_log("evaluation failed:\n" + "".join(traceback.format_exception(exc)))
            outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        run.update(evaluated=False, evaluation=outcome)
        if outcome["status"] == "interrupted":
            print(f"\nevaluation interrupted; evaluate again with: ftorch eval {run.path}", file=sys.stderr, flush=True)


def record_interrupted(run: RunDir) -> None:
    """After training succeeded, an interrupt that came before (or around) the evaluation's own record."""
    from .runner import _signals_held

    with _signals_held():
        if (run.read().get("evaluation") or {}).get("status") in (None, "running"):
            run.update(evaluated=False, evaluation={"status": "interrupted", "error": "interrupted before the "
                                                    f"evaluation finished; evaluate with: ftorch eval {run.path}"})


def _generator_for(run: RunDir, cfg: RunConfig):
    if cfg.provider.name in ("peft", "unsloth", "axolotl"):  # a PEFT adapter in the run dir
        from .backends._hf import model_path
        from .eval.local import LocalModel

        if not (run.adapter / "adapter_config.json").is_file():
            raise ConfigError(Problem(str(run.adapter), "no adapter in this run to evaluate",
                                      "evaluate a run whose training succeeded"))
        local = LocalModel(model_path(cfg.model), run.adapter)
        return local, local, None
    if cfg.provider.name == "openai":
        return _openai_models(run, cfg)
    raise ConfigError(Problem("provider.name", f"evaluation is not available for provider={cfg.provider.name} yet"))


def _openai_models(run: RunDir, cfg: RunConfig):
    """Chat completions for base and fine-tuned model ids, after checking the run's cost guard."""
    from .backends.openai_client import make_client
    from .data.cost import PriceTable
    from .data.tokens import counter_for
    from .eval.openai_chat import OpenAIChat

    tuned = run.read().get("fine_tuned_model")
    if not tuned:
        raise ConfigError(Problem(str(run.path), "no fine-tuned model id in run.json to evaluate",
                                  "evaluate a run whose job succeeded"))
    prices = PriceTable.load(Path(cfg.provider.prices))
    family = prices.family(cfg.model.name)
    price = family[1] if family else None
    counter = counter_for(cfg.model.name, price)
    _check_eval_budget(run, cfg, counter, price)
    return OpenAIChat(make_client(cfg.provider), cfg.model.name, tuned, counter, cfg.eval.seed), None, price


def _check_eval_budget(run: RunDir, cfg: RunConfig, counter, price: dict | None) -> None:
    """Estimate what the evaluation's calls cost (prompt tokens by the tokenizer, every reply at its maximum
    length) and refuse above provider.max_cost_usd, counting what training already cost."""
    from .backends.openai import _check_budget
    from .eval.tasks import SYSTEMS, load_task

    if cfg.provider.max_cost_usd is None:
        return
    if price is None:
        _check_budget(cfg.provider.max_cost_usd, None, "the evaluation", cfg.model.name)
    ev = cfg.eval
    task = load_task(cfg)
    calls = {name: [task.conversation(name, e) for e in task.examples] for name in SYSTEMS}
    if ev.prompt_arms:  # the sweep on validation, and the chosen arm's prompts on test at the largest k
        from .eval.selection import sweep_conversations

        sweep, prompted = sweep_conversations(cfg, task.system_prompt)
        calls["base"], calls["prompted"] = calls["base"] + sweep, prompted
    extra = _general_and_safety_prompts(ev)
    calls["base"] += extra
    calls["tuned"] += extra
    usd = 0.0
    for name, conversations in calls.items():
        prefix = "tuned_" if name == "tuned" else ""
        prompt = sum(counter.count_messages(c) for c in conversations)
        usd += (prompt * price[f"{prefix}input_usd_per_1m"]
                + len(conversations) * ev.max_new_tokens * price[f"{prefix}output_usd_per_1m"]) / 1e6
    spent = ((run.read().get("metrics") or {}).get("trained_tokens") or 0) / 1e6 * price["train_usd_per_1m"]
    _check_budget(cfg.provider.max_cost_usd, spent + usd, f"training (${spent:.2f}) plus this evaluation",
                  cfg.model.name)


def _general_and_safety_prompts(ev) -> list[list[dict]]:
    prompts: list[str] = []
    if ev.general:
        from .eval.instructions import load_suite

        prompts += [item.prompt for item in load_suite(ev.general_limit)]
    if ev.safety:
        from .eval.safety import load_prompts

        for kind in ("redteam", "benign"):
            prompts += [p.prompt for p in load_prompts(kind, ev.safety_limit, ev.seed)]
    return [[{"role": "user", "content": prompt}] for prompt in prompts]
def _record(run: RunDir, path: Path, report: dict) -> None:
    headline = report["task"]["headline"]
    metrics = dict(run.read().get("metrics") or {})
    for name, scores in report["task"]["systems"].items():
        metrics[f"eval_{name}_{headline}"] = scores[headline]["mean"]
    if "general" in report:
        metrics["eval_general_base"] = report["general"]["base"]["prompt_level"]
        metrics["eval_general_tuned"] = report["general"]["tuned"]["prompt_level"]
    if report.get("preference"):
        from .eval.preference import record as record_preference

        record_preference(metrics, report["preference"])
    if "safety" in report:
        metrics["eval_harmful_base"] = report["safety"]["base"]["harmful_compliance_rate"]
        metrics["eval_harmful_tuned"] = report["safety"]["tuned"]["harmful_compliance_rate"]
    record = run.read()
    history = [*record.get("evaluations", []), str(path)]
    run.update(metrics=metrics, evaluated=True, regressed=bool(report["regressions"]),
               evaluation={"status": "succeeded", "dir": str(path), "verdict": report["verdict"], "headline": headline,
                           "regressions": report["regressions"],
                           "prompt_arm": (report.get("prompt_arms") or {}).get("chosen")}, evaluations=history)


def evaluate_after_training(run: RunDir, cfg: RunConfig, console) -> dict | None:
    """The automatic evaluation at the end of `ftorch train`. Training already succeeded: an evaluation
    failure is recorded as such, and does not turn the run's status into failed."""
    if not cfg.eval.enabled:
        run.update(evaluated=False, evaluation={"status": "skipped", "reason": "eval=none"})
        return None
    return evaluate_run(run, cfg, console)  # it records its own outcome, interrupted and failed included


def summary_lines(report: dict) -> list[str]:
    from .eval.report import pct

    headline = report["task"]["headline"]
    systems = report["task"]["systems"]
    chosen = (report.get("prompt_arms") or {}).get("chosen")
    label = {"prompted": f"prompted ({chosen})"} if chosen else {}
    scores = ", ".join(f"{label.get(name, name)} {pct(systems[name][headline]['mean'], 'no scored examples')}"
                       for name in systems)
    lines = [f"eval ({headline}, n={report['n']}): {scores}"]
    pairs = (report.get("preference") or {}).get("pairs")
    if pairs:
        from .eval.preference import summary_line

        lines.append(summary_line(pairs))
    return lines + [f"verdict: {report['verdict']}"]

