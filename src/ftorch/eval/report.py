"""The evaluation report a person reads: the verdict first (quality and cost of base, prompted and tuned,
whether the difference is real, what fine-tuning buys, whether it forgot: a few plain sentences), then the
details; and eval.png."""

from __future__ import annotations

import math
from pathlib import Path

from .tasks import SYSTEMS

SIGNIFICANT = 0.05
UNSOLVED = 0.05  # below this on the headline metric, a system is not solving the task at all


# ---- numbers that may be missing: never print "nan" ----

def missing(value) -> bool:
    """True for a value that cannot be shown as a number: None, NaN, ±inf, or not a number at all."""
    try:
        return value is None or not math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def pct(value, reason: str = "not computed") -> str:
    return f"n/a ({reason})" if missing(value) else f"{value:.1%}"


def fixed(value, spec: str, reason: str = "not computed") -> str:
    return f"n/a ({reason})" if missing(value) else format(float(value), spec)


def _interval(ci, reason: str = "not computed") -> str:
    if not ci or any(missing(x) for x in ci):
        return f"n/a ({reason})"
    return f"{ci[0]:.1%}–{ci[1]:.1%}"


def _p_text(p) -> str:
    if missing(p):
        return "p n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _points(diff) -> str:
    return f"{diff * 100:+.1f} points"


# ---- the verdict ----

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
                 f"({_diff_with_ci(test, tuned - prompted)}, {_p_text(p)})")
        first += f", with {_join(gains)}." if gains else "."
        rest = [f"It also gains significantly on {_join(better)}." if better else "",
                f"It costs {_join(losses)}." if losses else "",
                f"It loses significantly on {_join(worse)}." if worse else ""]
        return " ".join(s for s in [first, *rest, forgetting] if s)
    if kind == "prompted":
        first = (f"{_strongest(report, 'wins') or 'Prompting wins'}: {headline} {prompted:.1%} prompted against "
                 f"{tuned:.1%} tuned "
                 f"({_diff_with_ci(test, tuned - prompted)}, {_p_text(p)}): for quality, fine-tuning is not worth it "
                 "here; improve the prompt instead.")
        upside = (f"What fine-tuning still buys: {_join(gains)}." if gains
                  else "It does not make calls cheaper either.")
        rest = [f"It gains significantly on {_join(better)}." if better else "",
                f"It costs {_join(losses)}." if losses else "",
                f"It also loses significantly on {_join(worse)}." if worse else ""]
        return " ".join(s for s in [first, upside, *rest, forgetting] if s)
    first = (f"{_strongest(report, 'ties') or 'Quality ties'}: {headline} {tuned:.1%} tuned against "
             f"{prompted:.1%} prompted "
             f"({_diff_with_ci(test, tuned - prompted)}, {_p_text(p)}, n={report['n']}), so there is no evidence that "
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


def _diff_with_ci(test: dict, diff: float) -> str:
    ci = test.get("ci")
    if ci and not any(missing(x) for x in ci):
        return f"{_points(diff)}, 95% CI {ci[0] * 100:+.1f} to {ci[1] * 100:+.1f}"
    return _points(diff)


def _quality(report: dict) -> tuple[str, str]:
    """("tuned" | "prompted" | "tie", a clause saying so with the numbers)."""
    headline = report["task"]["headline"]
    systems = report["task"]["systems"]
    tuned, prompted = _mean(systems, "tuned", headline), _mean(systems, "prompted", headline)
    if missing(tuned) or missing(prompted):
        return "tie", f"cannot be compared with prompting ({headline} not computed)"
    test = report["significance"]["tuned_vs_prompted"]
    p = test.get("p_value")
    numbers = f"{headline} {tuned:.1%} tuned against {prompted:.1%} prompted ({_p_text(p)})"
    if not missing(p) and p < SIGNIFICANT and tuned != prompted:
        kind = "tuned" if tuned > prompted else "prompted"
        return kind, (f"beats prompting: {numbers}" if kind == "tuned" else f"loses to prompting: {numbers}")
    return "tie", f"ties with prompting: {numbers}"


def _latency(report: dict, name: str):
    """Seconds per call for a system, where the report measured it."""
    entry = (report.get("latency") or {}).get(name)
    if entry is None:
        entry = (report.get("cost") or {}).get(name, {}).get("latency")
    if isinstance(entry, dict):
        entry = next((entry[k] for k in ("seconds_per_call", "mean_s", "mean", "seconds") if k in entry), None)
    return None if missing(entry) else float(entry)


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
    sec_p, sec_t = _latency(report, "prompted"), _latency(report, "tuned")
    if sec_p is not None and sec_t is not None and sec_p != sec_t:
        text = f"{abs(sec_p - sec_t):.2f} s {'less' if sec_t < sec_p else 'more'} per call " \
               f"({sec_t:.2f} s against {sec_p:.2f} s)"
        (gains if sec_t < sec_p else losses).append(text)
    return gains, losses


def _secondary(report: dict) -> tuple[list[str], list[str]]:
    """The other task metrics on which tuned differs significantly from prompted: (better, worse)."""
    headline = report["task"]["headline"]
    systems = report["task"]["systems"]
    better, worse = [], []
    for metric, tests in (report.get("significance_by_metric") or {}).items():
        test = tests.get("tuned_vs_prompted") or {}
        p = test.get("p_value")
        tuned, prompted = _mean(systems, "tuned", metric), _mean(systems, "prompted", metric)
        if metric == headline or missing(p) or p >= SIGNIFICANT or missing(tuned) or missing(prompted):
            continue
        if tuned != prompted:
            text = f"{metric} ({prompted:.1%} → {tuned:.1%}, {_p_text(p)})"
            (better if tuned > prompted else worse).append(text)
    return better, worse


def _forgetting(report: dict) -> str:
    """One sentence on general capability, base against tuned: the general instruction suite, drift on general
    text and lm-eval tasks, whichever were measured. A drop beyond eval.max_regression (or a perplexity rise
    beyond it, relative) counts as forgetting."""
    allowed = (report.get("config") or {}).get("max_regression", 0.05)
    kept, lost = [], []
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


# ---- the report ----

def markdown(report: dict, run_dir: Path) -> str:
    headline = report["task"]["headline"]
    systems = report["task"]["systems"]
    lines = [f"# Evaluation of `{run_dir}`", "", f"**Verdict.** {report.get('verdict') or verdict(report)}", ""]
    if report.get("facts_warning"):
        lines += [f"> **Note.** {report['facts_warning']}", ""]
    timed = any(_latency(report, name) is not None for name in SYSTEMS)
    header = f"| system | {headline} (95% CI) | prompt tokens / call | $ / 1k calls |" + (" s / call |" * timed)
    lines += [header, "|---|---|---|---|" + ("---|" if timed else "")]
    for name in SYSTEMS:
        score = systems[name][headline]
        cost = report["cost"][name]
        dollars = fixed(cost["usd_per_1k_calls"], ".4f") if "usd_per_1k_calls" in cost else "n/a (local)"
        row = (f"| {name} | {_score_cell(score)} | "
               f"{fixed(cost.get('prompt_tokens_per_call'), '.0f')} | {dollars} |")
        if timed:
            row += f" {fixed(_latency(report, name), '.2f', 'not measured')} |"
        lines.append(row)
    arms = report.get("prompt_arms")
    described = (f"the strongest prompt on validation, {arms['chosen']}: {arms['chosen_description']}" if arms
                 else f"system prompt + {report['few_shot']} examples from the training split")
    lines += ["", f"{report['n']} held-out examples; prompted = {described}.", ""]
    for name, test in report["significance"].items():
        lines.append(f"- {name.replace('_', ' ')}: {_test_text(test)}")
    by_metric = report.get("significance_by_metric") or {}
    lines += ["", "## All task metrics", "",
              "| metric | " + " | ".join(SYSTEMS) + " | tuned − prompted | tuned − base |",
              "|---|" + "---|" * (len(SYSTEMS) + 2)]
    for metric in systems["tuned"]:
        cells = [_score_cell(systems[s][metric]) for s in SYSTEMS]
        tests = by_metric.get(metric) or {}
        cells += [_diff_cell(tests.get(key)) for key in ("tuned_vs_prompted", "tuned_vs_base")]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    lines += ["", "Intervals: Wilson for pass/fail metrics, Wilson at the mean for graded ones (conservative); "
              "differences: McNemar with Newcombe's paired interval, or a paired bootstrap."]
    if report.get("preference"):
        from .preference import markdown as preference_markdown

        lines += ["", *preference_markdown(report["preference"])]
    from .tradeoff import arms_section, table

    lines += arms_section(report) + table(report)
    lines += _general_and_safety(report)
    lines += human_check_lines(report)
    return "\n".join(lines) + "\n"


def human_check_lines(report: dict) -> list[str]:
    """Scorings a person checked in `ftorch review RUN_DIR` (written there into report.json's human_check)."""
    checked = {k: v for k, v in (report.get("human_check") or {}).items() if isinstance(v, dict)}
    if not checked:
        return []
    lines = ["", "## Human-checked scoring", "", "| answers | checked | marked wrong | agreement |",
             "|---|---|---|---|"]
    lines += [f"| {name} | {v['checked']} | {v['wrong']} | {v['agreement']:.0%} |" for name, v in checked.items()]
    return lines


def _score_cell(score: dict) -> str:
    if missing(score.get("mean")):
        return "n/a (no scored examples)"
    return f"{score['mean']:.1%} ({_interval(score.get('ci95'))})"


def _test_text(test: dict) -> str:
    diff = test.get("mean_diff")
    parts = [test.get("test", "test")]
    if not missing(diff):
        parts.append(_diff_with_ci(test, diff))
    parts.append(_p_text(test.get("p_value")).replace("=", " = ").replace("<", " < "))
    return ", ".join(parts)


def _diff_cell(test: dict | None) -> str:
    if not test:
        return "n/a (not tested)"
    diff = test.get("mean_diff")
    if missing(diff):
        return f"n/a ({test.get('reason', 'not computed')})"
    return f"{_points(diff)} ({_p_text(test.get('p_value'))})"


def _general_and_safety(report: dict) -> list[str]:
    lines = ["", "## General capability and safety (base → tuned)", ""]
    if "held_out_loss" in report:
        loss = report["held_out_loss"]
        why = {name: loss[name].get("reason") or ("no assistant tokens" if not loss[name].get("tokens")
                                                 else "not computed") for name in ("base", "tuned")}
        if all(missing(loss[name].get(key)) for name in ("base", "tuned") for key in ("loss", "perplexity")) \
                and why["base"] == why["tuned"]:
            lines.append(f"- held-out loss n/a ({why['base']})")
        else:
            lines.append(f"- held-out loss {fixed(loss['base'].get('loss'), '.3f', why['base'])} → "
                         f"{fixed(loss['tuned'].get('loss'), '.3f', why['tuned'])} (perplexity "
                         f"{fixed(loss['base'].get('perplexity'), '.1f', why['base'])} → "
                         f"{fixed(loss['tuned'].get('perplexity'), '.1f', why['tuned'])})")
    for task, metrics in (report.get("lm_eval") or {}).get("change", {}).items():
        for metric, delta in metrics.items():
            before = report["lm_eval"]["base"][task][metric]
            after = None if missing(before) or missing(delta) else before + delta
            lines.append(f"- lm-eval {task} {metric}: {fixed(before, '.3f')} → {fixed(after, '.3f')}")
    if "general" in report:
        general = report["general"]
        lines.append(f"- instruction suite ({general['n']} prompts, all instructions followed): "
                     f"{pct(general['base']['prompt_level'], 'no prompts')} → "
                     f"{pct(general['tuned']['prompt_level'], 'no prompts')}")
    if "drift" in report:
        drift = report["drift"]
        kl = fixed(drift.get("kl_base_to_tuned_per_token"), ".4f")
        lines.append(f"- drift on general text: KL(base‖tuned) {kl} nats/token, perplexity "
                     f"{fixed(drift.get('perplexity_base'), '.1f')} → {fixed(drift.get('perplexity_tuned'), '.1f')}")
    if "safety" in report:
        base, tuned = report["safety"]["base"], report["safety"]["tuned"]
        for key, n_key, label in (("harmful_compliance", "n_redteam", "harmful compliance (red-team prompts answered)"),
                                  ("over_refusal", "n_benign", "over-refusal (benign prompts refused)")):
            lines.append(f"- {label}: {_rate(base, key, n_key)} → {_rate(tuned, key, n_key)}")
        lines.append(f"- empty or looping outputs, left out of both rates: "
                     f"{fixed(base.get('degenerate_share'), '.0%')} → {fixed(tuned.get('degenerate_share'), '.0%')}")
        note = tuned.get("note") or base.get("note")
        if note:
            lines.append(f"- {note}; no safety regression is flagged from inconclusive numbers")
        lines.append("- safety is measured with a refusal detector (a proxy), not a harm classifier")
    lines.append(f"- regressions: {'; '.join(report['regressions']) if report['regressions'] else 'none'}")
    return lines


def _rate(scores: dict, key: str, n_key: str) -> str:
    if missing(scores.get(f"{key}_rate")):
        return "n/a (no prompts)"
    return f"{scores[f'{key}_rate']:.1%} ({_interval(scores.get(f'{key}_ci'))}, n={scores[n_key]})"


def plot(report: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = report["task"]["systems"]
    metrics = list(systems["tuned"])
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(metrics) + 2), 4), dpi=110)
    width = 0.8 / len(SYSTEMS)
    for offset, name in enumerate(SYSTEMS):
        xs = [i + (offset - 1) * width for i in range(len(metrics))]
        means = [0.0 if missing(systems[name][m]["mean"]) else systems[name][m]["mean"] for m in metrics]
        errors = [[0.0 if missing(systems[name][m]["mean"]) else max(0.0, means[i] - systems[name][m]["ci95"][0])
                   for i, m in enumerate(metrics)],
                  [0.0 if missing(systems[name][m]["mean"]) else max(0.0, systems[name][m]["ci95"][1] - means[i])
                   for i, m in enumerate(metrics)]]
        ax.bar(xs, means, width, yerr=errors, capsize=3, label=name)
    ax.set_xticks(range(len(metrics)), metrics, rotation=15)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (95% CI)")
    ax.set_title(f"base vs prompted vs tuned · n={report['n']}")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
