"""The verdict of an evaluation: a few plain sentences on quality and cost of base, prompted and tuned, whether
the difference is real, what fine-tuning buys, and whether it forgot. It reads the typed report only."""

from __future__ import annotations

from dataclasses import dataclass

from .numbers import missing, number, p_text, points
from .report_model import EvalReport, PairedTest
from .tasks import SYSTEMS

SIGNIFICANT = 0.05
UNSOLVED = 0.05  # below this on the headline metric, a system is not solving the task at all


@dataclass
class _Facts:
    """What every branch of the verdict says something about, computed once."""

    headline: str
    tuned: float | None
    prompted: float | None
    test: PairedTest
    gains: list[str]
    losses: list[str]
    better: list[str]
    worse: list[str]
    forgetting: str

    @property
    def compared(self) -> str:
        assert self.tuned is not None and self.prompted is not None
        return f"{diff_with_ci(self.test, self.tuned - self.prompted)}, {p_text(self.test.p_value)}"


def verdict(report: EvalReport) -> str:
    """A few plain sentences: how tuned compares with prompted on the headline metric (and whether the
    difference is real), what fine-tuning costs or saves per call, what else it changed significantly, and
    whether the tuned model forgot general capability. Regressions come first."""
    gains, losses = _cost_difference(report)
    better, worse = _secondary(report)
    facts = _Facts(report.headline, report.task.mean("tuned"), report.task.mean("prompted"),
                   report.significance.tuned_vs_prompted, gains, losses, better, worse, _forgetting(report))
    judged = report.judged is not None and report.judged.headline
    if judged:
        from .judged_report import judged_verdict

        text = judged_verdict(report, _strongest(report), facts.gains, facts.forgetting)
        # regressions first; then the judged comparison, which is this task's headline
        return f"The tuned model regressed: {'; '.join(report.regressions)}. On the task itself: {text}" \
            if report.regressions else text
    if report.regressions:
        return _regressed(report, facts)
    if missing(facts.tuned) or missing(facts.prompted):
        absent = " and ".join(n for n, v in (("tuned", facts.tuned), ("prompted", facts.prompted)) if missing(v))
        return (f"Inconclusive: {facts.headline} could not be computed for {absent} (no scored examples). "
                f"{facts.forgetting}")
    unsolved = _unsolved(report, facts)
    if unsolved:
        return unsolved
    kind, _ = _quality(report)
    if kind == "tuned":
        return _tuned_wins(report, facts)
    if kind == "prompted":
        return _prompting_wins(report, facts)
    return _tie(report, facts)


def _regressed(report: EvalReport, facts: _Facts) -> str:
    _, quality = _quality(report)
    sentences = ["The tuned model regressed: " + "; ".join(report.regressions) + ".",
                 f"On the task itself it {quality}" + (f"; it needs {_join(facts.gains)}" if facts.gains else "")
                 + (f"; it costs {_join(facts.losses)}" if facts.losses else "") + ".", facts.forgetting]
    return " ".join(sentences)


def _unsolved(report: EvalReport, facts: _Facts) -> str | None:
    """The inconclusive verdict when no system solves the task (None when one does)."""
    best = max((v for v in (report.task.mean(name) for name in SYSTEMS) if v is not None and not missing(v)),
               default=0.0)
    if best >= UNSOLVED:
        return None
    loss = report.held_out_loss
    learned = ""
    if loss and "base" in loss and "tuned" in loss:
        before, after = loss["base"].loss, loss["tuned"].loss
        if before is not None and after is not None and not missing(before) and not missing(after) and after < before:
            learned = (f" Training did lower the held-out loss ({before:.2f} → {after:.2f}), but not enough to "
                       "produce correct answers.")
    return (f"Inconclusive: no system solves the task ({facts.headline} at most {best:.1%}), so neither fine-tuning "
            f"nor prompting can be said to work here.{learned} A larger base model or more data is needed. "
            + facts.forgetting)


def _tuned_wins(report: EvalReport, facts: _Facts) -> str:
    assert facts.tuned is not None and facts.prompted is not None
    first = (f"Fine-tuning beat {_strongest(report) or 'prompting'}: {facts.headline} {facts.tuned:.1%} against "
             f"{facts.prompted:.1%} ({facts.compared})")
    first += f", with {_join(facts.gains)}." if facts.gains else "."
    rest = [f"It also gains significantly on {_join(facts.better)}." if facts.better else "",
            f"It costs {_join(facts.losses)}." if facts.losses else "",
            f"It loses significantly on {_join(facts.worse)}." if facts.worse else ""]
    return " ".join(s for s in [first, *rest, facts.forgetting] if s)


def _prompting_wins(report: EvalReport, facts: _Facts) -> str:
    assert facts.tuned is not None and facts.prompted is not None
    first = (f"{_strongest(report, 'wins') or 'Prompting wins'}: {facts.headline} {facts.prompted:.1%} prompted "
             f"against {facts.tuned:.1%} tuned ({facts.compared}): for quality, fine-tuning is not worth it "
             "here; improve the prompt instead.")
    # savings are a benefit only at equal quality: where tuned loses, they come with the loss
    upside = (f"The tuned model is cheaper per call ({_join(facts.gains)}), but only at that loss in quality."
              if facts.gains else "It does not make calls cheaper either.")
    rest = [f"It gains significantly on {_join(facts.better)}." if facts.better else "",
            f"It costs {_join(facts.losses)}." if facts.losses else "",
            f"It also loses significantly on {_join(facts.worse)}." if facts.worse else ""]
    return " ".join(s for s in [first, upside, *rest, facts.forgetting] if s)


def _tie(report: EvalReport, facts: _Facts) -> str:
    assert facts.tuned is not None and facts.prompted is not None
    first = (f"{_strongest(report, 'ties') or 'Quality ties'}: {facts.headline} {facts.tuned:.1%} tuned against "
             f"{facts.prompted:.1%} prompted ({facts.compared}, n={report.n}), so there is no evidence that "
             "fine-tuning beats prompting on quality.")
    still = ([_join(facts.gains)] if facts.gains else []) + (
        ["significant gains on " + _join(facts.better)] if facts.better else [])
    buys = (f"What fine-tuning still buys: {'; and '.join(still)}." if still
            else f"Fine-tuning buys nothing measurable over the {'strongest' if _strongest(report) else 'few-shot'} "
            "prompt here.")
    against = ([_join(facts.losses)] if facts.losses else []) + (
        ["significant losses on " + _join(facts.worse)] if facts.worse else [])
    but = f"Against it: {'; and '.join(against)}." if against else ""
    return " ".join(s for s in [first, buys, but, facts.forgetting] if s)


def _strongest(report: EvalReport, outcome: str | None = None) -> str:
    """The chosen prompting arm named for the verdict ("" without a sweep): "the strongest prompt, k_shot_5
    (...; best of 6 arms on validation)"; with `outcome` a sentence opening such as "Quality ties with ..."."""
    arms = report.prompt_arms
    if not arms:
        return ""
    tried = arms.tried
    name = (f"the strongest prompt, {arms.chosen} ({arms.chosen_description}; best of {tried} "
            f"arm{'s' * (tried != 1)} on validation)")
    if outcome == "wins":
        return name[0].upper() + name[1:] + ", wins"
    if outcome == "ties":
        return f"Quality ties with {name}"
    return name


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def diff_with_ci(test: PairedTest, diff: float) -> str:
    ci = test.ci
    if ci and not any(missing(x) for x in ci):
        return f"{points(diff)}, 95% CI {ci[0] * 100:+.1f} to {ci[1] * 100:+.1f}"
    return points(diff)


def _quality(report: EvalReport) -> tuple[str, str]:
    """("tuned" | "prompted" | "tie", a clause saying so with the numbers)."""
    headline = report.headline
    tuned, prompted = report.task.mean("tuned"), report.task.mean("prompted")
    if tuned is None or prompted is None or missing(tuned) or missing(prompted):
        return "tie", f"cannot be compared with prompting ({headline} not computed)"
    p = report.significance.tuned_vs_prompted.p_value
    numbers = f"{headline} {tuned:.1%} tuned against {prompted:.1%} prompted ({p_text(p)})"
    if p is not None and not missing(p) and p < SIGNIFICANT and tuned != prompted:
        kind = "tuned" if tuned > prompted else "prompted"
        return kind, (f"beats prompting: {numbers}" if kind == "tuned" else f"loses to prompting: {numbers}")
    return "tie", f"ties with prompting: {numbers}"


def _cost_difference(report: EvalReport) -> tuple[list[str], list[str]]:
    """What a tuned call saves over a prompted one, and what it costs more: prompt tokens, dollars, seconds."""
    gains: list[str] = []
    losses: list[str] = []
    prompted_cost, tuned_cost = report.cost.get("prompted"), report.cost.get("tuned")
    prompted = number(prompted_cost.prompt_tokens_per_call) if prompted_cost else None
    tuned = number(tuned_cost.prompt_tokens_per_call) if tuned_cost else None
    if prompted is not None and tuned is not None:
        if prompted > tuned:
            ratio = f"{prompted / tuned:.1f}× fewer prompt tokens per call" if tuned > 0 else (
                f"{prompted - tuned:.0f} fewer prompt tokens per call")
            gains.append(f"{ratio} ({tuned:.0f} against {prompted:.0f})")
        elif tuned > prompted:
            losses.append(f"{tuned - prompted:.0f} more prompt tokens per call ({tuned:.0f} against {prompted:.0f})")
    usd_p = number(prompted_cost.usd_per_1k_calls) if prompted_cost else None
    usd_t = number(tuned_cost.usd_per_1k_calls) if tuned_cost else None
    if usd_p is not None and usd_t is not None and usd_p != usd_t:
        text = f"${abs(usd_p - usd_t):.4f} {'less' if usd_t < usd_p else 'more'} per 1,000 calls " \
               f"(${usd_t:.4f} against ${usd_p:.4f})"
        (gains if usd_t < usd_p else losses).append(text)
    sec_p, sec_t = number(report.seconds_per_call("prompted")), number(report.seconds_per_call("tuned"))
    if sec_p is not None and sec_t is not None and sec_p != sec_t:
        text = f"{abs(sec_p - sec_t):.2f} s {'less' if sec_t < sec_p else 'more'} per call " \
               f"({sec_t:.2f} s against {sec_p:.2f} s)"
        (gains if sec_t < sec_p else losses).append(text)
    return gains, losses


def _secondary(report: EvalReport) -> tuple[list[str], list[str]]:
    """The other task metrics on which tuned differs significantly from prompted: (better, worse)."""
    better: list[str] = []
    worse: list[str] = []
    for metric, tests in report.significance_by_metric.items():
        p = number(tests.tuned_vs_prompted.p_value)
        tuned, prompted = number(report.task.mean("tuned", metric)), number(report.task.mean("prompted", metric))
        if metric == report.headline or p is None or p >= SIGNIFICANT or tuned is None or prompted is None:
            continue
        if tuned != prompted:
            text = f"{metric} ({prompted:.1%} → {tuned:.1%}, {p_text(p)})"
            (better if tuned > prompted else worse).append(text)
    return better, worse


def _forgetting(report: EvalReport) -> str:
    """One sentence on general capability, base against tuned: the general instruction suite, drift on general
    text and lm-eval tasks, whichever were measured. A drop beyond eval.max_regression (or a perplexity rise
    beyond it, relative) counts as forgetting."""
    allowed = report.max_regression
    kept: list[str] = []
    lost: list[str] = []
    for changed, text in (_general_change(report, allowed), _drift_change(report, allowed)):
        if text:
            (lost if changed else kept).append(text)
    lm_lost, checked = _lm_eval_drops(report, allowed)
    lost += lm_lost
    if checked and not lm_lost:
        kept.append(f"lm-eval within {allowed:.0%}")
    if lost:
        return f"Forgetting: {'; '.join(lost)}" + (f" (no measurable change: {'; '.join(kept)})" if kept else "") + "."
    if kept:
        return f"No measurable forgetting ({'; '.join(kept)})."
    return "Forgetting was not measured (no general suite, drift or lm-eval results)."


def _general_change(report: EvalReport, allowed: float) -> tuple[bool, str | None]:
    """(dropped beyond `allowed`, the instruction suite's change in words), or (False, None) if not measured."""
    if not report.general:
        return False, None
    before, after = number(report.general.base.prompt_level), number(report.general.tuned.prompt_level)
    if before is None or after is None:
        return False, None
    return after < before - allowed, f"instruction suite {before:.1%} → {after:.1%}"


def _drift_change(report: EvalReport, allowed: float) -> tuple[bool, str | None]:
    """(perplexity on general text rose beyond `allowed`, relative; the change in words), or (False, None)."""
    if not report.drift:
        return False, None
    before, after = number(report.drift.perplexity_base), number(report.drift.perplexity_tuned)
    if before is None or after is None or before <= 0:
        return False, None
    change = after / before - 1.0
    return change > allowed, f"general-text perplexity {before:.1f} → {after:.1f}, {change:+.0%}"


def _lm_eval_drops(report: EvalReport, allowed: float) -> tuple[list[str], int]:
    """The accuracy-like lm-eval metrics that fell beyond `allowed`, and how many were checked."""
    lm_eval = report.lm_eval
    if not lm_eval:
        return [], 0
    lost: list[str] = []
    checked = 0
    for task, metrics in lm_eval.change.items():
        for metric, delta in metrics.items():
            before = lm_eval.base.get(task, {}).get(metric)
            if not metric.startswith(("acc", "exact_match")) or missing(delta) or before is None or missing(before):
                continue
            checked += 1
            if delta < -allowed:
                lost.append(f"lm-eval {task} {metric} {before:.3f} → {before + delta:.3f}")
    return lost, checked
