"""A learning curve from a finished `sweep=learning_curve` sweep (trials that differ only in data.train_fraction):
the largest trial gets the whole evaluation (the prompting arms are swept once, there), every other trial only its
tuned answers on the same test split; the tuned headline per training size is fitted (eval/curve_fit.py) and the
outcome written beside the leaderboard (curve.md, curve.json, curve.png), into the largest trial's report.md and
its verdict in run.json. A trial's answers are kept (RUN/curve_answers.jsonl): after `ftorch sweep resume`, running
the analysis again evaluates only what is new."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config.schema import RunConfig
from ..errors import ConfigError, Problem
from ..run import metric_keys
from ..run.rundir import RunDir, write_json_atomic
from ..safe_io import save_figure, write_text
from .curve_fit import Curve, learning_curve, sentence

ANSWERS = "curve_answers.jsonl"  # in each trial's folder: its tuned answers and headline scores on the test split
MARK = " Learning curve: "  # where the curve's sentence starts in the largest trial's verdict


@dataclass
class Point:
    """One training size: the trial that trained on it and its tuned headline score on each test example."""

    trial: Path
    fraction: float
    examples: int
    scores: list[float | None]

    @property
    def mean(self) -> float | None:
        values = [s for s in self.scores if s is not None]
        return sum(values) / len(values) if values else None


@dataclass
class CurveReport:
    sweep_dir: Path
    headline: str
    points: list[Point]
    baseline: float | None  # the strongest prompt's headline on the same test examples
    baseline_arm: str | None
    curve: Curve
    sentence: str
    largest: Path  # the trial whose report carries the sentence
    n: int  # test examples scored at every size (and by the strongest prompt)


def analyse(sweep_dir: Path, console=None, models=None, eval_overrides: list[str] | None = None) -> CurveReport:
    """Evaluate what is missing, fit, write. `eval_overrides` (eval=NAME, eval.KEY=VALUE) apply to the
    evaluation as in `ftorch eval RUN`; `models(run, cfg)` replaces the provider's models (for tests)."""
    from ..sweep.report import load_trials, write_report

    trials = [t for t in load_trials(sweep_dir) if t.record.status == "succeeded"]
    if not trials:
        raise ConfigError(Problem(str(sweep_dir), "no trial of this sweep succeeded: there is no curve to fit",
                                  f"finish it with `ftorch sweep resume {sweep_dir}`"))
    configs = {t.path: _config(RunDir(t.path), eval_overrides or []) for t in trials}
    others = {json.dumps(c.model_dump(exclude={"data": {"train_fraction"}, "eval": {"enabled"}}, mode="json"),
                         sort_keys=True) for c in configs.values()}
    if len(others) > 1:
        raise ConfigError(Problem(str(sweep_dir), "the trials differ in more than data.train_fraction: a learning "
                                  "curve compares data sizes with everything else fixed",
                                  "run one with `ftorch curve recipe=NAME fractions=...`"))
    largest = max(trials, key=lambda t: configs[t.path].data.train_fraction).path
    cfg = configs[largest]
    headline = cfg.eval.headline
    baseline_scores, arm = _full_evaluation(RunDir(largest), cfg, headline, console, models)
    points = [Point(t.path, configs[t.path].data.train_fraction, _train_size(configs[t.path]),
                    tuned_scores(RunDir(t.path), configs[t.path], headline, models)) for t in trials]
    points.sort(key=lambda p: p.examples)
    keep = [i for i in range(len(baseline_scores))
            if all(p.scores[i] is not None for p in points) and baseline_scores[i] is not None]
    per_example = [[float(p.scores[i]) for i in keep] for p in points]  # type: ignore[arg-type]
    baseline = sum(float(baseline_scores[i]) for i in keep) / len(keep) if keep else None
    curve = learning_curve([p.examples for p in points], per_example, baseline, seed=cfg.eval.seed)
    said = sentence(curve)
    report = CurveReport(sweep_dir, headline, points, baseline, arm, curve, said, largest, len(keep))
    for point in points:
        _record_point(RunDir(point.trial), headline, point.mean)
    _write(report)
    _into_largest(report)
    write_report(sweep_dir)  # the leaderboard, now ranked by the tuned headline
    return report


def _config(run: RunDir, overrides: list[str]) -> RunConfig:
    """The trial's config with evaluation on (the curve's trials train only; the curve evaluates them)."""
    from .finished import config_of

    config = config_of(run, overrides)
    return config.model_copy(update={"eval": config.eval.model_copy(update={"enabled": True})})


def _train_size(cfg: RunConfig) -> int:
    from ..data.fraction import nested_indices
    from ..data.report import check_data

    whole = check_data(cfg.data.model_copy(update={"train_fraction": 1.0})).count("train")
    return len(nested_indices(whole, cfg.data.train_fraction, cfg.data.fraction_seed))


def _full_evaluation(run: RunDir, cfg: RunConfig, headline: str, console, models) -> tuple[list, str | None]:
    """The strongest prompt's per-example headline scores, from the largest trial's whole evaluation (run now,
    unless it already has one): the prompting arms are swept once for the whole curve."""
    from .finished import evaluate_run

    record = run.record()
    done = bool(record.evaluation is not None and record.evaluation.status == "succeeded" and record.evaluation.dir)
    if done and record.evaluation is not None and record.evaluation.dir:
        report = Path(record.evaluation.dir) / "report.json"
        settings = json.loads(report.read_text()).get("config") if report.is_file() else None
        done = settings is not None and _same_eval(settings, cfg.eval.model_dump(mode="json"))
    if not done:  # none yet, or one with other eval settings (ftorch curve --sweep DIR eval.KEY=VALUE)
        evaluate_run(run, cfg, console, models=models(run, cfg) if models else None)
        record = run.record()
    assert record.evaluation is not None and record.evaluation.dir
    rows = _read_jsonl(Path(record.evaluation.dir) / "predictions.jsonl")
    tuned = [row["systems"]["tuned"]["scores"].get(headline) for row in rows]
    _save_answers(run, [{"line": row["line"], "output": row["systems"]["tuned"]["output"], "score": score,
                         "settings": _answer_key(cfg)} for row, score in zip(rows, tuned)])
    return [row["systems"]["prompted"]["scores"].get(headline) for row in rows], record.evaluation.prompt_arm


def tuned_scores(run: RunDir, cfg: RunConfig, headline: str, models) -> list[float | None]:
    """The trial's tuned answers on the test split, scored on the headline: kept answers, or generated now."""
    from . import metrics as task_metrics
    from .tasks import load_task

    task = load_task(cfg)
    saved = run.path / ANSWERS
    if saved.is_file():
        rows = _read_jsonl(saved)
        if ([r["line"] for r in rows] == [e.line for e in task.examples]
                and all(r.get("settings") == _answer_key(cfg) for r in rows)):
            return [r["score"] for r in rows]
    from ..run.library_log import attach_log_file, detach_log_file

    library_log = attach_log_file(run)  # loading bars and library warnings to the trial's train.log
    try:
        generator = models(run, cfg)[0] if models else _generator(run, cfg)
        conversations = [task.conversation("tuned", e) for e in task.examples]
        with generator.system("tuned"):
            replies = generator.generate(conversations, cfg.eval.max_new_tokens, cfg.eval.generation_batch(generator))
    finally:
        detach_log_file(library_log)
    score = task_metrics.build_scorers([headline], cfg.eval.json_schema)[headline]
    rows = [{"line": e.line, "output": reply, "score": score(reply, e.reference), "settings": _answer_key(cfg)}
            for e, reply in zip(task.examples, replies)]
    _save_answers(run, rows)
    return [r["score"] for r in rows]


def _same_eval(recorded: dict, wanted: dict) -> bool:
    """Whether an evaluation ran with these eval settings (`enabled` aside: the curve's trials train with it off)."""
    return {k: v for k, v in recorded.items() if k != "enabled"} == {k: v for k, v in wanted.items()
                                                                      if k != "enabled"}


def _answer_key(cfg: RunConfig) -> str:
    """The eval settings a tuned answer and its score depend on: kept answers are reused only under the same."""
    import hashlib

    ev = cfg.eval
    keys = {"split": ev.split, "limit": ev.limit, "system_prompt": ev.system_prompt, "headline": ev.headline,
            "json_schema": ev.json_schema, "max_new_tokens": ev.max_new_tokens}
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def _generator(run: RunDir, cfg: RunConfig):
    from ..backends import get_backend

    return get_backend(cfg.provider.name).eval_models(run, cfg).generator


def _save_answers(run: RunDir, rows: list[dict]) -> None:
    from .suite import write_jsonl

    write_jsonl(run.path / ANSWERS, rows)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _record_point(run: RunDir, headline: str, mean: float | None) -> None:
    """The trial's tuned headline in run.json, as the sweep's objective: the leaderboard ranks by it."""
    if mean is None:
        return
    key = metric_keys.task("tuned", headline)
    run.update(metrics={**run.record().metrics, key: mean},
               objective=[{"name": key, "value": mean, "direction": "maximize"}])


def table(report: CurveReport) -> tuple[list[str], list[list[str]]]:
    """Each size's row, then the projections: fraction, examples, the tuned headline (95% interval)."""
    header = ["data", "examples", f"tuned {report.headline}", "trial"]
    rows = [[f"{p.fraction:g}\u00d7", str(p.examples), _pct(score), p.trial.name]
            for p, score in zip(report.points, report.curve.scores)]
    for projection in report.curve.projections:
        interval = (f" (95% CI {_pct(projection.low)} to {_pct(projection.high)})"
                    if projection.low is not None else "")
        rows.append([f"{projection.factor:g}\u00d7 (projected)", f"{projection.size:,.0f}",
                     _pct(projection.value) + interval, ""])
    return header, rows


def _pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def markdown(report: CurveReport) -> str:
    header, rows = table(report)
    prompt = (f"The strongest prompt ({report.baseline_arm or 'prompted'}, chosen once on validation) scores "
              f"{_pct(report.baseline)} on the same {report.n} test "
              "examples." if report.baseline is not None else "")
    law = report.curve.law
    fit = (f"Fit: {report.headline} = {law.a:.3f} \u2212 {law.b:.3f} \u00d7 (n / {law.n_max:.0f})^\u2212{law.c:.2f}; "
           f"intervals from {report.curve.resamples} bootstrap resamples of the test examples, each refitted."
           if law is not None else "")
    lines = ["## Learning curve", "", report.sentence[0].upper() + report.sentence[1:] + ".", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", prompt, fit, "", f"![learning curve]({report.sweep_dir / 'curve.png'})", "",
              "Three points extrapolate poorly: read the projection as a direction, not a promise "
              "(docs/evaluation.md)."]
    return "\n".join(line for line in lines) + "\n"


def _write(report: CurveReport) -> None:
    folder = report.sweep_dir
    curve = asdict(report.curve)
    write_json_atomic(folder / "curve.json", {
        "headline": report.headline, "baseline": report.baseline, "baseline_arm": report.baseline_arm,
        "sentence": report.sentence, "largest_trial": str(report.largest),
        "points": [{"trial": str(p.trial), "fraction": p.fraction, "examples": p.examples, "mean": p.mean}
                   for p in report.points], "curve": curve})
    write_text(folder / "curve.md", f"# Learning curve · {folder}\n\n" + markdown(report))
    plot(report, folder / "curve.png")


def plot(report: CurveReport, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from . import metrics as task_metrics
    from .stats import mean_interval

    curve = report.curve
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=110)
    binary = task_metrics.is_binary(report.headline)
    for point, score in zip(report.points, curve.scores):
        low, high = mean_interval([s for s in point.scores if s is not None], binary)
        ax.errorbar([point.examples], [100 * score], yerr=[[100 * (score - low)], [100 * (high - score)]], fmt="o",
                    color="C0", capsize=3)
    if curve.law is not None:
        xs = np.geomspace(min(curve.sizes) / 1.5, 4.2 * curve.law.n_max, 200)
        ax.plot(xs, [100 * curve.law.predict(x) for x in xs], color="C0", label="fit (inverse power law)")
        for projection in curve.projections:
            if projection.low is not None and projection.high is not None:
                ax.errorbar([projection.size], [100 * projection.value],
                            yerr=[[100 * (projection.value - projection.low)],
                                  [100 * (projection.high - projection.value)]],
                            fmt="s", color="C1", capsize=3)
        ax.plot([], [], "s", color="C1", label="projected (95% bootstrap CI)")
    if report.baseline is not None:
        ax.axhline(100 * report.baseline, color="C3", linestyle="--",
                   label=f"strongest prompt ({report.baseline_arm or 'prompted'})")
    ax.set_xscale("log")
    ax.set_xlabel("training examples")
    ax.set_ylabel(f"tuned {report.headline} (%)")
    ax.set_title("inconclusive" if curve.status != "fitted" else "learning curve", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)


def _into_largest(report: CurveReport) -> None:
    """The sentence in the largest trial's verdict (run.json) and its section in that evaluation's report.md."""
    run = RunDir(report.largest)
    record = run.record()
    evaluation = record.evaluation
    if evaluation is None or evaluation.status != "succeeded":
        return
    verdict = str(evaluation.verdict or "").split(MARK)[0]
    said = report.sentence[0].upper() + report.sentence[1:]
    fields: dict[str, Any] = {**evaluation.model_dump(mode="json", exclude_unset=True),
                              "verdict": f"{verdict}{MARK}{said}.", "curve": str(report.sweep_dir / "curve.md")}
    run.update(evaluation=fields)
    if evaluation.dir:
        path = Path(evaluation.dir) / "report.md"
        if path.is_file():
            text = path.read_text().split("\n## Learning curve\n")[0].rstrip("\n")
            write_text(path, text + "\n\n" + markdown(report))
