"""The judged comparison in the report: the pairwise judge's outcomes on every test prompt, combined with the
human grades that exist for those exact answers (eval/grades.py), into the estimate the verdict may use.

- No grades: the section is 'uncalibrated'; it carries the judge's own figures and biases, never an estimate.
- Grades, judge agreeing with people (Cohen's kappa >= eval.judge.min_kappa): 'calibrated', and the estimate is
  prediction-powered (judge labels on every prompt, corrected by the graded sample).
- Grades, judge disagreeing: 'unreliable', and the estimate uses the human grades alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from ..config.schema import JudgeConfig
from .grades import GRADES
from .judge_client import CachedJudge
from .judge_stats import MeanEstimate, agreement, grades_for_width, human_mean, judge_mean, ppi_mean
from .judges import PairwiseResult
from .report_model import Estimate, JudgeAgreement, JudgeBias, Judged, JudgeUsage

# how a person's grade and a judge's outcome compare in the agreement figures: both on the 3-way scale
THREE_WAY = {1: "tuned", -1: "prompted", 0: "tie"}


def _estimate(found: MeanEstimate) -> Estimate:
    return Estimate(method=found.method, estimate=found.estimate, ci=found.ci, n_human=found.n_human,
                    n_judge=found.n_judge, lam=found.lam)


def calibration_inputs(judged: Sequence[int], keys: Sequence[str], grades: dict[str, str]
                       ) -> tuple[list[int], list[int], list[int]]:
    """(human labels, the judge's labels of those same examples, the judge's labels of the examples nobody
    graded): what PPI and the agreement figures take. `judged[i]` and `keys[i]` belong to test example i."""
    graded = [i for i, key in enumerate(keys) if key in grades]
    human = [GRADES[grades[keys[i]]] for i in graded]
    return human, [judged[i] for i in graded], [judged[i] for i in range(len(keys)) if keys[i] not in grades]


def section(result: PairwiseResult, keys: Sequence[str], grades: dict[str, str], cfg: JudgeConfig,
            judge: CachedJudge, rubric: str) -> Judged:
    """`keys[i]` is the grade key of test example i (its prompt and the two answers); `grades` every human
    grade of the run by key."""
    judged = result.labels()
    human, judge_on_graded, judge_on_rest = calibration_inputs(judged, keys, grades)
    fields: dict[str, Any] = {
        "judge": str(cfg.model), "endpoint": cfg.endpoint, "rubric": rubric, "min_kappa": cfg.min_kappa,
        "headline": cfg.headline,
        "n": len(judged), "tuned_wins": judged.count(1), "prompted_wins": judged.count(-1), "ties": judged.count(0),
        "unreadable": result.unreadable, "bias": JudgeBias(**result.bias()), "grades": len(human),
        "judge_only": _estimate(judge_mean(judged)), "target_width": cfg.target_width,
        "usage": JudgeUsage(**asdict(judge.usage), usd=judge.spent()),
    }
    if len(human) < 2:
        return Judged(state="uncalibrated", **fields)
    agree = agreement([THREE_WAY[j] for j in judge_on_graded], [THREE_WAY[h] for h in human])
    fields["agreement"] = JudgeAgreement(n=agree.n, raw=agree.raw, raw_ci=agree.raw_ci, kappa=agree.kappa,
                                         kappa_ci=agree.kappa_ci)
    alone = human_mean(human)
    fields["human_only"] = _estimate(alone)
    if agree.kappa is None or agree.kappa < cfg.min_kappa:
        return Judged(state="unreliable", estimate=_estimate(alone), **fields)
    fields["grades_needed"] = grades_for_width(human, judge_on_graded, judge_on_rest, cfg.target_width)
    return Judged(state="calibrated", estimate=_estimate(ppi_mean(human, judge_on_graded, judge_on_rest)), **fields)
