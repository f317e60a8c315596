"""The evaluation report a person reads: the verdict first (eval/verdict.py), then the details in tables; and
eval.png."""

from __future__ import annotations

from pathlib import Path

from ..safe_io import save_figure
from .numbers import fixed, interval, missing, number, p_text, pct, points
from .tasks import SYSTEMS
from .verdict import diff_with_ci, latency, verdict

# ---- the report ----

def markdown(report: dict, run_dir: Path) -> str:
    headline = report["task"]["headline"]
    systems = report["task"]["systems"]
    lines = [f"# Evaluation of `{run_dir}`", "", f"**Verdict.** {report.get('verdict') or verdict(report)}", ""]
    if report.get("facts_warning"):
        lines += [f"> **Note.** {report['facts_warning']}", ""]
    timed = any(latency(report, name) is not None for name in SYSTEMS)
    header = f"| system | {headline} (95% CI) | prompt tokens / call | $ / 1k calls |" + (" s / call |" * timed)
    lines += [header, "|---|---|---|---|" + ("---|" if timed else "")]
    for name in SYSTEMS:
        score = systems[name][headline]
        cost = report["cost"][name]
        dollars = fixed(cost["usd_per_1k_calls"], ".4f") if "usd_per_1k_calls" in cost else "n/a (local)"
        row = (f"| {name} | {_score_cell(score)} | "
               f"{fixed(cost.get('prompt_tokens_per_call'), '.0f')} | {dollars} |")
        if timed:
            row += f" {fixed(latency(report, name), '.2f', 'not measured')} |"
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
    return f"{score['mean']:.1%} ({interval(score.get('ci95'))})"


def _test_text(test: dict) -> str:
    diff = number(test.get("mean_diff"))
    parts = [test.get("test", "test")]
    if diff is not None:
        parts.append(diff_with_ci(test, diff))
    parts.append(p_text(test.get("p_value")).replace("=", " = ").replace("<", " < "))
    return ", ".join(parts)


def _diff_cell(test: dict | None) -> str:
    if not test:
        return "n/a (not tested)"
    diff = test.get("mean_diff")
    if missing(diff):
        return f"n/a ({test.get('reason', 'not computed')})"
    return f"{points(diff)} ({p_text(test.get('p_value'))})"


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
    return f"{scores[f'{key}_rate']:.1%} ({interval(scores.get(f'{key}_ci'))}, n={scores[n_key]})"


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
    save_figure(fig, out)  # atomically, never through a symlink
    plt.close(fig)
    return out
