"""The evaluation report a person reads: the verdict first (eval/verdict.py), then the details in tables; and
eval.png."""

from __future__ import annotations

from pathlib import Path

from ..safe_io import save_figure
from .numbers import fixed, interval, missing, number, p_text, pct, points
from .report_model import Comparison, EvalReport, PairedTest, SafetyScores, Score
from .tasks import SYSTEMS
from .verdict import diff_with_ci, verdict

# ---- the report ----

def markdown(report: EvalReport, run_dir: Path) -> str:
    lines = [f"# Evaluation of `{run_dir}`", "", f"**Verdict.** {report.verdict or verdict(report)}", ""]
    if report.facts_warning:
        lines += [f"> **Note.** {report.facts_warning}", ""]
    lines += _systems_table(report)
    arms = report.prompt_arms
    described = (f"the strongest prompt on validation, {arms.chosen}: {arms.chosen_description}" if arms
                 else f"system prompt + {report.few_shot} examples from the training split")
    lines += ["", f"{report.n} held-out examples; prompted = {described}.", ""]
    if report.answer_cache is not None:
        recorded = [n for n in SYSTEMS if (entry := report.latency.get(n)) is not None and entry.from_cache]
        lines += [f"{report.answer_cache.summary()}."
                  + (f" Seconds per call of {', '.join(recorded)}: as measured when the reused answers were "
                     "generated (marked *)." if recorded else ""), ""]
    for name, test in (("tuned_vs_prompted", report.significance.tuned_vs_prompted),
                       ("tuned_vs_base", report.significance.tuned_vs_base)):
        lines.append(f"- {name.replace('_', ' ')}: {_test_text(test)}")
    lines += _metrics_table(report)
    from .judged_report import markdown_lines

    lines += markdown_lines(report)
    if report.preference:
        from .preference import markdown as preference_markdown

        lines += ["", *preference_markdown(report.preference)]
    from .tradeoff import arms_section, table

    lines += arms_section(report) + table(report)
    lines += _general_and_safety(report)
    lines += human_check_lines(report)
    return "\n".join(lines) + "\n"


def _systems_table(report: EvalReport) -> list[str]:
    """Headline score, prompt tokens, dollars and (where measured) seconds per call of each system."""
    timed = any(report.seconds_per_call(name) is not None for name in SYSTEMS)
    header = (f"| system | {report.headline} (95% CI) | prompt tokens / call | $ / 1k calls |"
              + (" s / call |" * timed))
    lines = [header, "|---|---|---|---|" + ("---|" if timed else "")]
    for name in SYSTEMS:
        cost = report.cost.get(name)
        usd = cost.usd_per_1k_calls if cost else None
        dollars = fixed(usd, ".4f") if usd is not None else "n/a (local)"
        row = (f"| {name} | {_score_cell(report.task.score(name))} | "
               f"{fixed(cost.prompt_tokens_per_call if cost else None, '.0f')} | {dollars} |")
        if timed:
            entry = report.latency.get(name)
            mark = "*" if entry is not None and entry.from_cache else ""
            row += f" {fixed(report.seconds_per_call(name), '.2f', 'not measured')}{mark} |"
        lines.append(row)
    return lines


def _metrics_table(report: EvalReport) -> list[str]:
    """Every task metric for every system, with tuned's differences from prompted and base."""
    lines = ["", "## All task metrics", "",
             "| metric | " + " | ".join(SYSTEMS) + " | tuned − prompted | tuned − base |",
             "|---|" + "---|" * (len(SYSTEMS) + 2)]
    for metric in report.task.metrics:
        cells = [_score_cell(report.task.score(s, metric)) for s in SYSTEMS]
        tests: Comparison | None = report.significance_by_metric.get(metric)
        cells += [_diff_cell(tests.tuned_vs_prompted if tests else None),
                  _diff_cell(tests.tuned_vs_base if tests else None)]
        judged_by = f" (graded by {report.judge.model}, rubric {report.judge.rubric})" \
            if metric == "judge" and report.judge else ""
        lines.append(f"| {metric}{judged_by} | " + " | ".join(cells) + " |")
    return lines + ["", "Intervals: Wilson for pass/fail metrics, Wilson at the mean for graded ones (conservative); "
                    "differences: McNemar with Newcombe's paired interval, or a paired bootstrap."]


def human_check_lines(report: EvalReport) -> list[str]:
    """Scorings a person checked in `ftorch review RUN_DIR` (written there into report.json's human_check)."""
    checked = {k: v for k, v in (report.human_check or {}).items() if not isinstance(v, str)}
    if not checked:
        return []
    lines = ["", "## Human-checked scoring", "", "| answers | checked | marked wrong | agreement |",
             "|---|---|---|---|"]
    lines += [f"| {name} | {v.checked} | {v.wrong} | {v.agreement:.0%} |" for name, v in checked.items()]
    return lines


def _score_cell(score: Score) -> str:
    if missing(score.mean):
        return "n/a (no scored examples)"
    return f"{score.mean:.1%} ({interval(score.ci95)})"


def _test_text(test: PairedTest) -> str:
    diff = number(test.mean_diff)
    parts = [test.test]
    if diff is not None:
        parts.append(diff_with_ci(test, diff))
    parts.append(p_text(test.p_value).replace("=", " = ").replace("<", " < "))
    return ", ".join(parts)


def _diff_cell(test: PairedTest | None) -> str:
    if test is None or not test.model_fields_set:  # the metric had no test (an older report)
        return "n/a (not tested)"
    if missing(test.mean_diff):
        return f"n/a ({test.reason or 'not computed'})"
    return f"{points(test.mean_diff)} ({p_text(test.p_value)})"


def _general_and_safety(report: EvalReport) -> list[str]:
    lines = ["", "## General capability and safety (base → tuned)", ""]
    lines += _held_out_loss_lines(report)
    lm_eval = report.lm_eval
    for task, metrics in (lm_eval.change.items() if lm_eval else ()):
        for metric, delta in metrics.items():
            before = lm_eval.base.get(task, {}).get(metric) if lm_eval else None
            after = None if missing(before) or missing(delta) else before + delta  # type: ignore[operator]
            lines.append(f"- lm-eval {task} {metric}: {fixed(before, '.3f')} → {fixed(after, '.3f')}")
    if report.general:
        general = report.general
        lines.append(f"- instruction suite ({general.n} prompts, all instructions followed): "
                     f"{pct(general.base.prompt_level, 'no prompts')} → "
                     f"{pct(general.tuned.prompt_level, 'no prompts')}")
    if report.drift:
        drift = report.drift
        kl = fixed(drift.kl_base_to_tuned_per_token, ".4f")
        lines.append(f"- drift on general text: KL(base‖tuned) {kl} nats/token, perplexity "
                     f"{fixed(drift.perplexity_base, '.1f')} → {fixed(drift.perplexity_tuned, '.1f')}")
    lines += _safety_lines(report)
    lines.append(f"- regressions: {'; '.join(report.regressions) if report.regressions else 'none'}")
    return lines


def _held_out_loss_lines(report: EvalReport) -> list[str]:
    loss = report.held_out_loss
    if loss is None or "base" not in loss or "tuned" not in loss:
        return []
    base, tuned = loss["base"], loss["tuned"]
    why = {name: entry.reason or ("no assistant tokens" if not entry.tokens else "not computed")
           for name, entry in (("base", base), ("tuned", tuned))}
    if all(missing(v) for v in (base.loss, base.perplexity, tuned.loss, tuned.perplexity)) \
            and why["base"] == why["tuned"]:
        return [f"- held-out loss n/a ({why['base']})"]
    return [f"- held-out loss {fixed(base.loss, '.3f', why['base'])} → {fixed(tuned.loss, '.3f', why['tuned'])} "
            f"(perplexity {fixed(base.perplexity, '.1f', why['base'])} → "
            f"{fixed(tuned.perplexity, '.1f', why['tuned'])})"]


def _safety_lines(report: EvalReport) -> list[str]:
    if not report.safety:
        return []
    base, tuned = report.safety.base, report.safety.tuned
    lines = [f"- harmful compliance (red-team prompts answered): {_rate(base, 'harmful')} → {_rate(tuned, 'harmful')}",
             f"- over-refusal (benign prompts refused): {_rate(base, 'refusal')} → {_rate(tuned, 'refusal')}",
             f"- empty or looping outputs, left out of both rates: "
             f"{fixed(base.degenerate_share, '.0%')} → {fixed(tuned.degenerate_share, '.0%')}"]
    note = tuned.note or base.note
    if note:
        lines.append(f"- {note}; no safety regression is flagged from inconclusive numbers")
    lines.append("- safety is measured with a refusal detector (a proxy), not a harm classifier")
    return lines


def _rate(scores: SafetyScores, kind: str) -> str:
    rate, ci, n = ((scores.harmful_compliance_rate, scores.harmful_compliance_ci, scores.n_redteam) if kind == "harmful"
                   else (scores.over_refusal_rate, scores.over_refusal_ci, scores.n_benign))
    if missing(rate):
        return "n/a (no prompts)"
    return f"{rate:.1%} ({interval(ci)}, n={n})"


def plot(report: EvalReport, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = report.task.metrics
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(metrics) + 2), 4), dpi=110)
    width = 0.8 / len(SYSTEMS)
    for offset, name in enumerate(SYSTEMS):
        xs = [i + (offset - 1) * width for i in range(len(metrics))]
        scores = [report.task.score(name, m) for m in metrics]
        means = [0.0 if missing(s.mean) else float(s.mean or 0.0) for s in scores]
        low = [0.0 if missing(s.mean) or not s.ci95 else max(0.0, mean - s.ci95[0]) for s, mean in zip(scores, means)]
        high = [0.0 if missing(s.mean) or not s.ci95 else max(0.0, s.ci95[1] - mean) for s, mean in zip(scores, means)]
        ax.bar(xs, means, width, yerr=[low, high], capsize=3, label=name)
    ax.set_xticks(range(len(metrics)), metrics, rotation=15)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (95% CI)")
    ax.set_title(f"base vs prompted vs tuned · n={report.n}")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out)  # atomically, never through a symlink
    plt.close(fig)
    return out
