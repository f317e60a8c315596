"""Hand-made evaluation reports shaped like the ones `suite.evaluate` builds (tests/eval/test_suite.py builds
real ones): the report dicts and the typed model the renderers read."""

from __future__ import annotations

from ftorch.eval.report_model import EvalReport
from ftorch.eval.stats import wilson_interval

N = 200


def typed(report: dict) -> EvalReport:
    """The hand-made dict as the report model the renderers read (as EvalReport.load reads report.json)."""
    return EvalReport.model_validate(report)


def score(mean: float | None, n: int = N) -> dict:
    ci = wilson_interval(round(mean * n), n) if mean is not None else (0.0, 1.0)
    return {"mean": mean, "n": n if mean is not None else 0, "ci95": ci}


def significance(p: float | None, diff: float | None = None, ci=None, kind: str = "paired bootstrap") -> dict:
    return {"test": kind, "p_value": p, "mean_diff": diff, "ci": ci, "n": N}


def make_report(*, headline: str = "field_accuracy", means: dict, tests: dict, tokens=(84.0, 385.0, 84.0),
                usd=None, latency=None, general=None, drift=None, regressions=(), max_regression: float = 0.05,
                held_out_loss=None) -> dict:
    """`means` {system: {metric: mean}}; `tests` {metric: (tuned_vs_prompted, tuned_vs_base)} as `significance` dicts;
    `tokens` / `usd` (base, prompted, tuned)."""
    cost = {}
    for i, name in enumerate(("base", "prompted", "tuned")):
        cost[name] = {"prompt_tokens_per_call": tokens[i]}
        if usd is not None:
            cost[name]["usd_per_1k_calls"] = usd[i]
    report = {
        "config": {"max_regression": max_regression}, "n": N, "system_prompt": "Extract the fields.", "few_shot": 5,
        "task": {"headline": headline,
                 "systems": {name: {metric: score(mean) for metric, mean in per.items()}
                             for name, per in means.items()}},
        "significance": {"tuned_vs_prompted": tests[headline][0], "tuned_vs_base": tests[headline][1]},
        "significance_by_metric": {metric: {"tuned_vs_prompted": vp, "tuned_vs_base": vb}
                                   for metric, (vp, vb) in tests.items()},
        "cost": cost, "regressions": list(regressions), "facts_warning": None,
    }
    if latency is not None:
        report["latency"] = dict(zip(("base", "prompted", "tuned"), latency))
    if general is not None:
        report["general"] = {"n": 40, "base": {"prompt_level": general[0], "instruction_level": general[0]},
                             "tuned": {"prompt_level": general[1], "instruction_level": general[1]}}
    if drift is not None:
        report["drift"] = {"texts": 12, "tokens": 2000, "kl_base_to_tuned_per_token": drift[2],
                           "perplexity_base": drift[0], "perplexity_tuned": drift[1],
                           "perplexity_change": drift[1] / drift[0] - 1 if drift[0] else float("nan")}
    if held_out_loss is not None:
        report["held_out_loss"] = held_out_loss
    return report


def real_run(**overrides) -> dict:
    """The 135M instruct model's run from issue 14: a tie on field accuracy, a clear win on schema conformance."""
    settings = dict(
        means={"base": {"field_accuracy": 0.31, "json_schema": 0.40},
               "prompted": {"field_accuracy": 0.760, "json_schema": 0.725},
               "tuned": {"field_accuracy": 0.785, "json_schema": 1.0}},
        tests={"field_accuracy": (significance(0.38, 0.025, (-0.031, 0.081)),
                                  significance(0.0005, 0.475, (0.41, 0.54))),
               "json_schema": (significance(7.0e-17, 0.275, (0.21, 0.34), "mcnemar (exact)"),
                               significance(1e-30, 0.6, (0.53, 0.66), "mcnemar (exact)"))},
        tokens=(84.0, 385.0, 84.0), general=(0.55, 0.55), drift=(18.2, 18.6, 0.012))
    settings.update(overrides)
    return make_report(**settings)
