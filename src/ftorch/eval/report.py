"""The evaluation report a person reads: the verdict first (quality and cost of base, prompted and tuned,
whether the difference is real, and one plain sentence), then the details; and eval.png."""

from __future__ import annotations

from pathlib import Path

from .tasks import SYSTEMS

SIGNIFICANT = 0.05
UNSOLVED = 0.05  # below this on the headline metric, a system is not solving the task at all


def verdict(report: dict) -> str:
    """One sentence: did fine-tuning beat prompting, at what cost, or did it regress."""
    if report["regressions"]:
        return "The tuned model regressed: " + "; ".join(report["regressions"]) + "."
    headline = report["task"]["headline"]
    systems = report["task"]["systems"]
    tuned, prompted = systems["tuned"][headline]["mean"], systems["prompted"][headline]["mean"]
    test = report["significance"]["tuned_vs_prompted"]
    p = test.get("p_value")
    cost = report["cost"]
    saved = cost["prompted"]["prompt_tokens_per_call"] - cost["tuned"]["prompt_tokens_per_call"]
    tokens = f"and each call needs {saved:.0f} fewer prompt tokens than the few-shot prompt" if saved > 0 else ""
    best = max(systems[name][headline]["mean"] for name in SYSTEMS)
    if best < UNSOLVED:
        loss = report.get("held_out_loss")
        learned = (f" Training did lower the held-out loss ({loss['base']['loss']:.2f} → {loss['tuned']['loss']:.2f}), "
                   "but not enough to produce correct answers." if loss else "")
        return (f"Inconclusive: no system solves the task ({headline} at most {best:.1%}), so neither fine-tuning nor "
                f"prompting can be said to work here.{learned} A larger base model or more data is needed.")
    if tuned > prompted and p is not None and p < SIGNIFICANT:
        return (f"Fine-tuning beat prompting: {headline} {tuned:.1%} against {prompted:.1%} "
                f"(+{tuned - prompted:.1%}, p={p:.3g}) {tokens}.".replace(" .", "."))
    if prompted >= tuned:
        verdict = (f"Prompting is as good or better ({headline} {prompted:.1%} prompted against {tuned:.1%} tuned): "
                   "for quality, fine-tuning is not worth it here; improve the prompt instead.")
        if saved > 0:
            verdict += (f" Fine-tuning would only pay off through shorter prompts ({saved:.0f} fewer prompt tokens "
                        f"per call{_dollars_saved(cost)}).")
        return verdict
    return (f"Fine-tuning scored higher ({headline} {tuned:.1%} against {prompted:.1%} prompted) but the difference "
            f"is not significant on {report['n']} examples (p={p:.3g}): not enough evidence that it beat prompting.")


def _dollars_saved(cost: dict) -> str:
    prompted, tuned = cost["prompted"].get("usd_per_1k_calls"), cost["tuned"].get("usd_per_1k_calls")
    return f", ${prompted - tuned:.4f} per 1,000 calls" if prompted is not None and tuned is not None else ""


def markdown(report: dict, run_dir: Path) -> str:
    headline = report["task"]["headline"]
    systems = report["task"]["systems"]
    lines = [f"# Evaluation of `{run_dir}`", "", f"**Verdict.** {report['verdict']}", ""]
    if report.get("facts_warning"):
        lines += [f"> **Note.** {report['facts_warning']}", ""]
    lines += [f"| system | {headline} (95% CI) | prompt tokens / call | $ / 1k calls |", "|---|---|---|---|"]
    for name in SYSTEMS:
        score = systems[name][headline]
        low, high = score["ci95"]
        cost = report["cost"][name]
        dollars = f"{cost['usd_per_1k_calls']:.4f}" if "usd_per_1k_calls" in cost else "n/a (local)"
        lines.append(f"| {name} | {score['mean']:.1%} ({low:.1%}–{high:.1%}) | "
                     f"{cost['prompt_tokens_per_call']:.0f} | {dollars} |")
    lines += ["", f"{report['n']} held-out examples; prompted = system prompt + {report['few_shot']} examples "
              "from the training split.", ""]
    for name, test in report["significance"].items():
        p = test.get("p_value")
        lines.append(f"- {name.replace('_', ' ')}: {test['test']}, p = {p:.3g}" if p is not None else f"- {name}")
    lines += ["", "## All task metrics", "", "| metric | " + " | ".join(SYSTEMS) + " |",
              "|---|" + "---|" * len(SYSTEMS)]
    for metric in systems["tuned"]:
        lines.append(f"| {metric} | " + " | ".join(f"{systems[s][metric]['mean']:.1%}" for s in SYSTEMS) + " |")
    lines += _general_and_safety(report)
    return "\n".join(lines) + "\n"


def _general_and_safety(report: dict) -> list[str]:
    lines = ["", "## General capability and safety (base → tuned)", ""]
    if "held_out_loss" in report:
        loss = report["held_out_loss"]
        lines.append(f"- held-out loss {loss['base']['loss']:.3f} → {loss['tuned']['loss']:.3f} "
                     f"(perplexity {loss['base']['perplexity']:.1f} → {loss['tuned']['perplexity']:.1f})")
    for task, metrics in (report.get("lm_eval") or {}).get("change", {}).items():
        for metric, delta in metrics.items():
            before = report["lm_eval"]["base"][task][metric]
            lines.append(f"- lm-eval {task} {metric}: {before:.3f} → {before + delta:.3f}")
    if "general" in report:
        general = report["general"]
        lines.append(f"- instruction suite ({general['n']} prompts, all instructions followed): "
                     f"{general['base']['prompt_level']:.1%} → {general['tuned']['prompt_level']:.1%}")
    if "drift" in report:
        drift = report["drift"]
        lines.append(f"- drift on general text: KL(base‖tuned) {drift['kl_base_to_tuned_per_token']:.4f} nats/token, "
                     f"perplexity {drift['perplexity_base']:.1f} → {drift['perplexity_tuned']:.1f}")
    if "safety" in report:
        base, tuned = report["safety"]["base"], report["safety"]["tuned"]
        for key, n_key, label in (("harmful_compliance", "n_redteam", "harmful compliance (red-team prompts answered)"),
                                  ("over_refusal", "n_benign", "over-refusal (benign prompts refused)")):
            lines.append(f"- {label}: {_rate(base, key, n_key)} → {_rate(tuned, key, n_key)}")
        lines.append(f"- empty or looping outputs, left out of both rates: {base['degenerate_share']:.0%} → "
                     f"{tuned['degenerate_share']:.0%}")
        note = tuned.get("note") or base.get("note")
        if note:
            lines.append(f"- {note}; no safety regression is flagged from inconclusive numbers")
        lines.append("- safety is measured with a refusal detector (a proxy), not a harm classifier")
    lines.append(f"- regressions: {'; '.join(report['regressions']) if report['regressions'] else 'none'}")
    return lines


def _rate(scores: dict, key: str, n_key: str) -> str:
    if scores[f"{key}_rate"] is None:
        return "n/a (no prompts)"
    low, high = scores[f"{key}_ci"]
    return f"{scores[f'{key}_rate']:.1%} ({low:.1%}–{high:.1%}, n={scores[n_key]})"


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
        means = [systems[name][m]["mean"] for m in metrics]
        errors = [[means[i] - systems[name][m]["ci95"][0] for i, m in enumerate(metrics)],
                  [systems[name][m]["ci95"][1] - means[i] for i, m in enumerate(metrics)]]
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
