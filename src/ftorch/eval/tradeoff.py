"""Quality versus cost: every system as a point (score with its 95% interval against dollars per 1,000 calls,
or prompt tokens per call where no price is known), the Pareto front marked; as a table for report.md and as
eval/<ts>/tradeoff.png. The prompting arms are scored on validation data and the final systems on the test
split, so each split gets its own panel and its own front: scores from different splits are not compared."""

from __future__ import annotations

from pathlib import Path

from ..safe_io import save_figure
from .numbers import fixed, missing, pct
from .report_model import Cost, EvalReport
from .tasks import SYSTEMS


def points(report: EvalReport) -> list[dict]:
    """One row per system: split, name, mean, ci95, n, prompt_tokens_per_call, usd_per_1k_calls,
    seconds_per_call, note; `pareto` set per split."""
    arms = report.prompt_arms
    rows = []
    for entry in arms.arms if arms else []:
        if entry.status == "skipped":
            continue
        note = "chosen" if arms and entry.name == arms.chosen else entry.status.replace("scored", "")
        rows.append({"split": "validation", "name": entry.name, "mean": entry.mean, "ci95": entry.ci95,
                     "n": entry.n, "prompt_tokens_per_call": entry.prompt_tokens_per_call,
                     "usd_per_1k_calls": entry.usd_per_1k_calls, "seconds_per_call": entry.seconds_per_call,
                     "note": note})
    for name in SYSTEMS:
        score = report.task.score(name)
        cost = report.cost.get(name) or Cost()
        label = f"prompted ({arms.chosen})" if name == "prompted" and arms else name
        rows.append({"split": "test", "name": label, "mean": score.mean, "ci95": score.ci95, "n": score.n,
                     "prompt_tokens_per_call": cost.prompt_tokens_per_call, "usd_per_1k_calls": cost.usd_per_1k_calls,
                     "seconds_per_call": report.seconds_per_call(name), "note": ""})
    for split in ("validation", "test"):
        group = [r for r in rows if r["split"] == split]
        key = cost_key(group)
        front = pareto([(r["mean"], r[key]) for r in group])
        for row, on in zip(group, front):
            row["pareto"] = on
    return rows


def cost_key(rows: list[dict]) -> str:
    """Dollars when every point has a price, else prompt tokens."""
    priced = rows and all(not missing(r.get("usd_per_1k_calls")) for r in rows)
    return "usd_per_1k_calls" if priced else "prompt_tokens_per_call"


def pareto(items: list[tuple]) -> list[bool]:
    """For (quality, cost) pairs: True where no other point is at least as good and at most as costly, and
    strictly better on one. A point without numbers is never on the front."""
    def known(item):
        return not missing(item[0]) and not missing(item[1])

    front = []
    for q, c in items:
        if not known((q, c)):
            front.append(False)
            continue
        front.append(not any(known((q2, c2)) and q2 >= q and c2 <= c and (q2 > q or c2 < c) for q2, c2 in items))
    return front


def table(report: EvalReport) -> list[str]:
    headline = report.headline
    rows = points(report)
    lines = ["", "## Quality versus cost", "",
             f"| split | system | {headline} (95% CI) | n | prompt tokens / call | $ / 1k calls | s / call | "
             "Pareto front | note |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = r["ci95"]
        interval = "" if not ci or any(missing(x) for x in ci) else f" ({ci[0]:.1%}–{ci[1]:.1%})"
        lines.append(f"| {r['split']} | {r['name']} | {pct(r['mean'], 'no scored examples')}{interval} | {r['n']} | "
                     f"{fixed(r['prompt_tokens_per_call'], '.0f')} | {fixed(r['usd_per_1k_calls'], '.4f', 'local')} | "
                     f"{fixed(r['seconds_per_call'], '.2f', 'not measured')} | {'yes' if r['pareto'] else ''} | "
                     f"{r['note']} |")
    lines += ["", "Pareto front: no other system of the same split scores at least as well for at most the cost. "
              "Validation rows choose the prompt; only the test rows compare with the tuned model."]
    return lines


def plot(report: EvalReport, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = points(report)
    splits = [s for s in ("validation", "test") if any(r["split"] == s for r in rows)]
    fig, axes = plt.subplots(1, len(splits), figsize=(6.2 * len(splits), 4.6), dpi=110, squeeze=False)
    for ax, split in zip(axes[0], splits):
        group = [r for r in rows if r["split"] == split and not missing(r["mean"])]
        key = cost_key(group)
        for r in group:
            low, high = r["ci95"] if r["ci95"] else (r["mean"], r["mean"])
            cost = 0.0 if missing(r[key]) else r[key]
            ax.errorbar([cost], [r["mean"]], yerr=[[max(0.0, r["mean"] - low)], [max(0.0, high - r["mean"])]],
                        fmt="o" if r["pareto"] else "s", color="tab:red" if r["pareto"] else "tab:blue",
                        mfc="white" if r["note"] == "stopped early" else None, capsize=3)
        labels: dict[tuple, list[str]] = {}  # points at the same place share one label
        for r in group:
            labels.setdefault((0.0 if missing(r[key]) else r[key], r["mean"]), []).append(r["name"])
        for (cost, mean), names in labels.items():
            ax.annotate(" = ".join(names), (cost, mean), textcoords="offset points", xytext=(5, 4), fontsize=7)
        front = sorted((r for r in group if r["pareto"]), key=lambda r: r[key])
        if front:
            ax.step([r[key] for r in front], [r["mean"] for r in front], where="post", color="tab:red",
                    alpha=0.6, label="Pareto front")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xlabel("$ per 1,000 calls" if key == "usd_per_1k_calls" else "prompt tokens per call")
        ax.set_ylabel(f"{report.headline} (95% CI)")
        ax.set_ylim(-0.02, 1.05)
        n = max((r["n"] or 0) for r in group) if group else 0
        ax.set_title(f"{split}: {'prompting arms' if split == 'validation' else 'final systems'} · n={n}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out)  # atomically, never through a symlink
    plt.close(fig)
    return out


def arms_section(report: EvalReport) -> list[str]:
    """Every prompting arm's validation score, which won and why (nothing without a sweep)."""
    arms = report.prompt_arms
    if not arms:
        return []
    lines = ["", "## Prompting arms (chosen on validation, never on the test split)", "",
             f"Scored on {arms.validation}; examples in prompts come from the other {arms.shot_pool} training "
             f"examples. Chosen: **{arms.chosen}**, because {arms.why}.", "",
             f"| arm | what it is | {arms.metric} (95% CI) | n | prompt tokens / call | status |",
             "|---|---|---|---|---|---|"]
    for a in arms.arms:
        ci = a.ci95
        score = "—" if a.status == "skipped" else f"{pct(a.mean)}" + (
            f" ({ci[0]:.1%}–{ci[1]:.1%})" if ci and not any(missing(x) for x in ci) else "")
        status = a.status + (f": {a.reason}" if a.reason else "")
        if a.name == arms.chosen:
            status = "**chosen**"
        tokens = "—" if a.status == "skipped" else fixed(a.prompt_tokens_per_call, ".0f")
        lines.append(f"| {a.name} | {a.description} | {score} | {a.n if a.n is not None else '—'} | {tokens} | "
                     f"{status} |")
    return lines
