"""The judged comparison in words: report.md's section, and the verdict when a judge's pairwise comparison is
the headline (eval.judge.headline). The verdict names the judge, its agreement with people and how many answers
they graded, and the interval the decision rests on.

- Uncalibrated (nobody graded): inconclusive, with the judge's own figures and biases, never a plain win.
- Unreliable (kappa below eval.judge.min_kappa): the human grades alone decide.
- Calibrated: the prediction-powered interval (judge labels on every prompt, corrected by the grades) decides.
A difference is called only when its 95% interval excludes zero; per-call savings count as a benefit only
where tuned is at least on a par."""

from __future__ import annotations

from .numbers import missing
from .report_model import Estimate, EvalReport, Judged


def _points(value: float) -> str:
    return f"{value * 100:+.1f} points"


def _interval(estimate: Estimate) -> str:
    ci = estimate.ci
    return "no interval" if not ci or any(missing(x) for x in ci) else \
        f"95% CI {ci[0] * 100:+.1f} to {ci[1] * 100:+.1f}"


def _biases(judged: Judged) -> str:
    bias = judged.bias
    parts = []
    if bias.position_consistency is not None:
        parts.append(f"its decision survives swapping the answers' positions in {bias.position_consistency:.0%} "
                     f"of prompts")
    if bias.first_position_share is not None:
        parts.append(f"it picks the first-shown answer in {bias.first_position_share:.0%} of decided comparisons")
    if bias.longer_preferred is not None:
        parts.append(f"the longer answer in {bias.longer_preferred:.0%}")
    return "; ".join(parts)


def _kappa(judged: Judged) -> str:
    agree = judged.agreement
    if agree is None or agree.kappa is None:
        return "its agreement with people could not be measured"
    ci = agree.kappa_ci
    spread = f" (95% CI {ci[0]:.2f} to {ci[1]:.2f})" if ci else ""
    return f"Cohen's kappa {agree.kappa:.2f}{spread} and raw agreement {agree.raw:.0%} with people on " \
           f"{judged.grades} graded prompts"


def judged_verdict(report: EvalReport, strongest: str, gains: list[str], forgetting: str) -> str:
    judged = report.judged
    assert judged is not None
    other = strongest or "the prompted baseline"
    if judged.state == "uncalibrated":
        return _uncalibrated(judged, other, forgetting)
    estimate = judged.estimate
    assert estimate is not None and estimate.estimate is not None
    basis = (f"the human grades alone ({judged.grades} prompts)" if judged.state == "unreliable" else
             f"judge and people combined (prediction-powered: {judged.grades} human grades and "
             f"{estimate.n_judge} more judge labels)")
    sentences = []
    if judged.state == "unreliable":
        sentences.append(f"The judge ({judged.judge}) disagrees with people: {_kappa(judged)}, below "
                         f"eval.judge.min_kappa {judged.min_kappa:.2f}, so its labels are set aside.")
    decided = estimate.ci is not None and (estimate.ci[0] > 0 or estimate.ci[1] < 0)
    preference = f"{_points(estimate.estimate)} ({_interval(estimate)}; {basis})"
    if decided and estimate.estimate > 0:
        sentences.append(f"Fine-tuning beat {other}: people prefer the tuned answer by {preference}.")
        if gains:
            sentences.append(f"It also needs {'; '.join(gains)}.")
    elif decided:
        sentences.append(f"{other[0].upper() + other[1:]} wins: people prefer its answer over the tuned one by "
                         f"{_points(-estimate.estimate)} ({_interval(_negated(estimate))}; {basis}): for quality, "
                         "fine-tuning is not worth it here.")
        if gains:
            sentences.append(f"The tuned model is cheaper per call ({'; '.join(gains)}), but only at that loss "
                             "in quality.")
    else:
        sentences.append(f"Quality ties with {other}: the preference for the tuned answer is {preference}, so "
                         "there is no evidence that fine-tuning beats prompting on quality.")
        if gains:
            sentences.append(f"What fine-tuning still buys: {'; and '.join(gains)}.")
    if judged.state == "calibrated":
        sentences.append(f"The judge ({judged.judge}, rubric {judged.rubric}) agrees with people: "
                         f"{_kappa(judged)}.")
    return " ".join([*sentences, forgetting])


def _negated(estimate: Estimate) -> Estimate:
    ci = (-estimate.ci[1], -estimate.ci[0]) if estimate.ci else None
    return estimate.model_copy(update={"ci": ci})


def _uncalibrated(judged: Judged, other: str, forgetting: str) -> str:
    alone = judged.judge_only
    figure = f"{_points(alone.estimate)}" if alone.estimate is not None else "no figure"
    biases = _biases(judged)
    return (f"Inconclusive: the comparison with {other} rests on an uncalibrated judge ({judged.judge}, rubric "
            f"{judged.rubric}): it preferred the tuned answer on {judged.tuned_wins} and the prompted one on "
            f"{judged.prompted_wins} of {judged.n} test prompts ({judged.ties} ties; {figure} by the judge alone), "
            "but no person has graded these answers, so this is not evidence either way."
            + (f" Its biases: {biases}." if biases else "")
            + " Grade a sample in the grading view of `ftorch review RUN` to calibrate it. " + forgetting)


def _cell(estimate: Estimate | None) -> str:
    if estimate is None or estimate.estimate is None:
        return "n/a"
    return f"{_points(estimate.estimate)} ({_interval(estimate)})"


def markdown_lines(report: EvalReport) -> list[str]:
    """report.md's "Judged comparison" section (nothing without a pairwise judge)."""
    judged = report.judged
    if judged is None:
        return []
    state = {"calibrated": "calibrated by human grades: the prediction-powered estimate decides",
             "unreliable": f"unreliable (kappa below {judged.min_kappa:.2f}): the human grades alone decide",
             "uncalibrated": "uncalibrated (no human grades): the judge's figures are not evidence"}[judged.state]
    bias = judged.bias
    lines = ["", "## Judged comparison: tuned against the strongest prompt", "",
             f"Judge: `{judged.judge}` ({judged.endpoint}), rubric `{judged.rubric}`, each prompt judged twice with "
             f"the answers' positions swapped (a win only when both orders agree). State: **{state}**.", "",
             "| | tuned better | tie | prompted better | unreadable verdicts |", "|---|---|---|---|---|",
             f"| judge, {judged.n} prompts | {judged.tuned_wins} | {judged.ties} | {judged.prompted_wins} | "
             f"{judged.unreadable} |", "",
             "| preference for tuned (+1 better, 0 tie, -1 worse), mean | estimate (95% CI) | human grades | "
             "judge labels |", "|---|---|---|---|"]
    for label, estimate in (("prediction-powered (judge + people)", judged.estimate if judged.state ==
                             "calibrated" else None), ("human grades only", judged.human_only),
                            ("judge only (not evidence)", judged.judge_only)):
        n_human = estimate.n_human if estimate else 0
        n_judge = estimate.n_judge if estimate else 0
        lines.append(f"| {label} | {_cell(estimate)} | {n_human} | {n_judge} |")
    agree = judged.agreement
    lines += ["", f"- human grades: {judged.grades}" + (
        f"; {judged.grades_needed} more would narrow the interval to {judged.target_width * 100:.0f} points"
        if judged.grades_needed else "")]
    if agree is not None and agree.raw is not None:
        kappa = "n/a" if agree.kappa is None else f"{agree.kappa:.2f}" + (
            f" ({agree.kappa_ci[0]:.2f} to {agree.kappa_ci[1]:.2f})" if agree.kappa_ci else "")
        lines.append(f"- judge against people: raw agreement {agree.raw:.0%}, Cohen's kappa {kappa}, n={agree.n}")
    lines.append(f"- position consistency {_share(bias.position_consistency)} (n={bias.consistency_n}); first "
                 f"position chosen in {_share(bias.first_position_share)} of {bias.decided} decided verdicts; "
                 f"longer answer preferred in {_share(bias.longer_preferred)} of {bias.length_decided}")
    usage = judged.usage
    dollars = f", ${usage.usd:.4f}" if usage.usd is not None else ""
    lines.append(f"- judge calls: {usage.calls} made, {usage.cached} from the cache; {usage.input_tokens} prompt "
                 f"and {usage.output_tokens} reply tokens{dollars}")
    return lines


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"
