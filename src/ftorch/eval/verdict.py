"""The verdict of an evaluation: a few plain sentences on quality and cost of base, prompted and tuned, whether
the difference is real, what fine-tuning buys, and whether it forgot."""

from __future__ import annotations

from .numbers import missing, number, p_text, points
from .tasks import SYSTEMS

SIGNIFICANT = 0.05
UNSOLVED = 0.05  # below this on the headline metric, a system is not solving the task at all


def verdict(report: dict) -> str:
    """A few plain sentences: how tuned compares with prompted on the headline metric (and whether the
    difference is real), what fine-tuning costs or saves per call, what else it changed significantly, and
    whether the tuned model forgot general capability. Regressions come first."""
    headline = report["task"]["headline"]
    systems = report["task"]["systems"]
    tuned, prompted = _mean(systems, "tuned", headline), _mean(systems, "prompted", headline)
    test = report["significance"]["tuned_vs_prompted"]
    p = test.get("p_value")
    gains, losses = _cost_difference(report)
    forgetting = _forgetting(report)
    if report["regressions"]:
        _, quality = _quality(report)
        sentences = ["The tuned model regressed: " + "; ".join(report["regressions"]) + ".",
                     f"On the task itself it {quality}" + (f"; it needs {_join(gains)}" if gains else "")
                     + (f"; it costs {_join(losses)}" if losses else "") + ".", forgetting]
        return " ".join(sentences)
    if missing(tuned) or missing(prompted):
        return (f"Inconclusive: {headline} could not be computed for "
                f"{' and '.join(n for n, v in (('tuned', tuned), ('prompted', prompted)) if missing(v))} "
                f"(no scored examples). {forgetting}")
    best = max((v for v in (_mean(systems, name, headline) for name in SYSTEMS) if not missing(v)), default=0.0)
    if best < UNSOLVED:
        loss = report.get("held_out_loss")
        learned = ""
        if loss and not missing(loss["base"]["loss"]) and not missing(loss["tuned"]["loss"]):
            learned = (f" Training did lower the held-out loss ({loss['base']['loss']:.2f} → "
                       f"{loss['tuned']['loss']:.2f}), but not enough to produce correct answers."
                       if loss["tuned"]["loss"] < loss["base"]["loss"] else "")
        return (f"Inconclusive: no system solves the task ({headline} at most {best:.1%}), so neither fine-tuning nor "
                f"prompting can be said to work here.{learned} A larger base model or more data is needed. "
                + forgetting)
    kind, quality = _quality(report)
    better, worse = _secondary(report)
    if kind == "tuned":
        first = (f"Fine-tuning beat {_strongest(report) or 'prompting'}: {headline} {tuned:.1%} against {prompted:.1%} "
                 f"({diff_with_ci(test, tuned - prompted)}, {p_text(p)})")
        first += f", with {_join(gains)}." if gains else "."
        rest = [f"It also gains significantly on {_join(better)}." if better else "",
                f"It costs {_join(losses)}." if losses else "",
                f"It loses significantly on {_join(worse)}." if worse else ""]
        return " ".join(s for s in [first, *rest, forgetting] if s)
    if kind == "prompted":
        first = (f"{_strongest(report, 'wins') or 'Prompting wins'}: {headline} {prompted:.1%} prompted against "
                 f"{tuned:.1%} tuned "
                 f"({diff_with_ci(test, tuned - prompted)}, {p_text(p)}): for quality, fine-tuning is not worth it "
                 "here; improve the prompt instead.")
        upside = (f"What fine-tuning still buys: {_join(gains)}." if gains
                  else "It does not make calls cheaper either.")
        rest = [f"It gains significantly on {_join(better)}." if better else "",
                f"It costs {_join(losses)}." if losses else "",
                f"It also loses significantly on {_join(worse)}." if worse else ""]
        return " ".join(s for s in [first, upside, *rest, forgetting] if s)
    first = (f"{_strongest(report, 'ties') or 'Quality ties'}: {headline} {tuned:.1%} tuned against "
             f"{prompted:.1%} prompted "
             f"({diff_with_ci(test, tuned - prompted)}, {p_text(p)}, n={report['n']}), so there is no evidence that "
             "fine-tuning beats prompting on quality.")
    still = []
    if gains:
        still.append(_join(gains))
    if better:
        still.append("significant gains on " + _join(better))
    buys = (f"What fine-tuning still buys: {'; and '.join(still)}." if still
            else f"Fine-tuning buys nothing measurable over the {'strongest' if _strongest(report) else 'few-shot'} "
            "prompt here.")
    against = []
    if losses:
        against.append(_join(losses))
    if worse:
        against.append("significant losses on " + _join(worse))
    but = f"Against it: {'; and '.join(against)}." if against else ""
    return " ".join(s for s in [first, buys, but, forgetting] if s)


def _strongest(report: dict, outcome: str | None = None) -> str:
    """The chosen prompting arm named for the verdict ("" without a sweep): "the strongest prompt, k_shot_5
    (...; best of 6 arms on validation)"; with `outcome` a sentence opening such as "Quality ties with ..."."""
    arms = report.get("prompt_arms")
    if not arms:
        return ""
    tried = sum(1 for a in arms["arms"] if a.get("status") != "skipped")
    name = (f"the strongest prompt, {arms['chosen']} ({arms['chosen_description']}; best of {tried} "
            f"arm{'s' * (tried != 1)} on validation)")
    if outcome == "wins":
        return name[0].upper() + name[1:] + ", wins"
    if outcome == "ties":
        return f"Quality ties with {name}"
    return name


def _mean(systems: dict, name: str, metric: str):
    return (systems.get(name, {}).get(metric) or {}).get("mean")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def diff_with_ci(test: dict, diff: float) -> str:
    ci = test.get("ci")
    if ci and not any(missing(x) for x in ci):
        return f"{points(diff)}, 95% CI {ci[0] * 100:+.1f} to {ci[1] * 100:+.1f}"
    return points(diff)


def _quality(report: dict) -> tuple[str, str]:
    """("tuned" | "prompted" | "tie", a clause saying so with the numbers)."""
    headline = report["task"]["headline"]
    systems = report["task"]["systems"]
    tuned, prompted = _mean(systems, "tuned", headline), _mean(systems, "prompted", headline)
    if missing(tuned) or missing(prompted):
        return "tie", f"cannot be compared with prompting ({headline} not computed)"
    test = report["significance"]["tuned_vs_prompted"]
    p = test.get("p_value")
    numbers = f"{headline} {tuned:.1%} tuned against {prompted:.1%} prompted ({p_text(p)})"
    if not missing(p) and p < SIGNIFICANT and tuned != prompted:
        kind = "tuned" if tuned > prompted else "prompted"
        return kind, (f"beats prompting: {numbers}" if kind == "tuned" else f"loses to prompting: {numbers}")
    return "tie", f"ties with prompting: {numbers}"


def latency(report: dict, name: str):
    """Seconds per call for a system, where the report measured it."""
    entry = (report.get("latency") or {}).get(name)
    if entry is None:
        entry = (report.get("cost") or {}).get(name, {}).get("latency")
    if isinstance(entry, dict):
        entry = next((entry[k] for k in ("seconds_per_call", "mean_s", "mean", "seconds") if k in entry), None)
    return number(entry)


def _cost_difference(report: dict) -> tuple[list[str], list[str]]:
    """What a tuned call saves over a prompted one, and what it costs more: prompt tokens, dollars, seconds."""
    gains, losses = [], []
    cost = report["cost"]
    prompted, tuned = cost["prompted"].get("prompt_tokens_per_call"), cost["tuned"].get("prompt_tokens_per_call")
    if not missing(prompted) and not missing(tuned):
        if prompted > tuned:
            ratio = f"{prompted / tuned:.1f}× fewer prompt tokens per call" if tuned > 0 else (
                f"{prompted - tuned:.0f} fewer prompt tokens per call")
            gains.append(f"{ratio} ({tuned:.0f} against {prompted:.0f})")
        elif tuned > prompted:
            losses.append(f"{tuned - prompted:.0f} more prompt tokens per call ({tuned:.0f} against {prompted:.0f})")
    usd_p, usd_t = cost["prompted"].get("usd_per_1k_calls"), cost["tuned"].get("usd_per_1k_calls")
    if not missing(usd_p) and not missing(usd_t) and usd_p != usd_t:
        text = f"${abs(usd_p - usd_t):.4f} {'less' if usd_t < usd_p else 'more'} per 1,000 calls " \
               f"(${usd_t:.4f} against ${usd_p:.4f})"
        (gains if usd_t < usd_p else losses).append(text)
    sec_p, sec_t = latency(report, "prompted"), latency(report, "tuned")
    if sec_p is not None and sec_t is not None and sec_p != sec_t:
        text = f"{abs(sec_p - sec_t):.2f} s {'less' if sec_t < sec_p else 'more'} per call " \
               f"({sec_t:.2f} s against {sec_p:.2f} s)"
        (gains if sec_t < sec_p else losses).append(text)
    return gains, losses


def _secondary(report: dict) -> tuple[list[str], list[str]]:
    """The other task metrics on which tuned differs significantly from prompted: (better, worse)."""
    headline = report["task"]["headline"]
    systems = report["task"]["systems"]
    better: list[str] = []
    worse: list[str] = []
    for metric, tests in (report.get("significance_by_metric") or {}).items():
        test = tests.get("tuned_vs_prompted") or {}
        p = number(test.get("p_value"))
        tuned, prompted = number(_mean(systems, "tuned", metric)), number(_mean(systems, "prompted", metric))
        if metric == headline or p is None or p >= SIGNIFICANT or tuned is None or prompted is None:
            continue
        if tuned != prompted:
            text = f"{metric} ({prompted:.1%} → {tuned:.1%}, {p_text(p)})"
            (better if tuned > prompted else worse).append(text)
    return better, worse


def _forgetting(report: dict) -> str:
    """One sentence on general capability, base against tuned: the general instruction suite, drift on general
    text and lm-eval tasks, whichever were measured. A drop beyond eval.max_regression (or a perplexity rise
    beyond it, relative) counts as forgetting."""
    allowed = (report.get("config") or {}).get("max_regression", 0.05)
    kept: list[str] = []
    lost: list[str] = []
    general = report.get("general")
    if general:
        before, after = general["base"].get("prompt_level"), general["tuned"].get("prompt_level")
        if not missing(before) and not missing(after):
            (lost if after < before - allowed else kept).append(f"instruction suite {before:.1%} → {after:.1%}")
    drift = report.get("drift")
    if drift:
        before, after = drift.get("perplexity_base"), drift.get("perplexity_tuned")
        if not missing(before) and not missing(after) and before > 0:
            change = after / before - 1.0
            (lost if change > allowed else kept).append(
                f"general-text perplexity {before:.1f} → {after:.1f}, {change:+.0%}")
    lm_eval = report.get("lm_eval") or {}
    checked = 0
    for task, metrics in (lm_eval.get("change") or {}).items():
        for metric, delta in metrics.items():
            before = (lm_eval.get("base") or {}).get(task, {}).get(metric)
            if not metric.startswith(("acc", "exact_match")) or missing(delta) or missing(before):
                continue
            checked += 1
            if delta < -allowed:
                lost.append(f"lm-eval {task} {metric} {before:.3f} → {before + delta:.3f}")
    if checked and not any(item.startswith("lm-eval") for item in lost):
        kept.append(f"lm-eval within {allowed:.0%}")
    if lost:
        return f"Forgetting: {'; '.join(lost)}" + (f" (no measurable change: {'; '.join(kept)})" if kept else "") + "."
    if kept:
        return f"No measurable forgetting ({'; '.join(kept)})."
    return "Forgetting was not measured (no general suite, drift or lm-eval results)."
