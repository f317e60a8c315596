"""Evaluation of a preference run (train.method=dpo|orpo|kto|simpo, data.format=preference).

- The held-out task: each held-out pair's prompt, with its preferred answer as the reference, so the usual task
  metrics, general and safety sections and the verdict apply unchanged. The prompted baseline (and every
  prompting arm it is chosen from) shows train prompts with their preferred answers as examples, and its system
  prompt carries `eval.prompted_instructions`: the "do not" rules a prompt engineer would write.
- Preference accuracy, base and tuned: the share of held-out pairs where the model gives the preferred answer
  a higher log-probability than the rejected one, with Wilson intervals and McNemar's paired test.
- The implicit reward of the tuned policy against the base model (DPO's r = beta * log(pi_tuned / pi_base)): how
  often it ranks the preferred answer first, and the mean reward margin with a bootstrap interval. By
  definition the base model's own implicit reward is zero for every answer.
- The rejected-behaviour rate: the share of generated answers matching `eval.rejected_patterns`, per system."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.checks import content_text, preferred_as_chat, read_jsonl
from ..errors import DataError, Problem
from .heldout import HeldOut, Task, most_common_system_prompt
from .report_model import EvalReport, PairedTest, Preference, PreferencePairs

Messages = list[dict]


@dataclass
class PreferenceTask(Task):
    # (prompt with its system message, chosen, rejected)
    pairs: list[tuple[Messages, str, str]] = field(default_factory=list)
    prompted_instructions: str | None = None

    @property
    def prompted_system_prompt(self) -> str | None:
        """The system prompt with the "do not" rules a prompt engineer would add (eval.prompted_instructions)."""
        parts = [p for p in (self.system_prompt, self.prompted_instructions) if p]
        return "\n".join(parts) or None


def load_task(cfg) -> PreferenceTask:
    """The held-out preference pairs as a task (prompt -> preferred answer), checked for leakage."""
    from ..data.report import leakage
    from .heldout import few_shot

    split_path = cfg.data.test if cfg.eval.split == "test" else cfg.data.validation
    if split_path is None:
        raise DataError(Problem(f"data.{cfg.eval.split}", "no held-out file to evaluate on",
                                f"set data.{cfg.eval.split} (`ftorch data split` makes one), or eval=none"))
    train = read_jsonl(Path(cfg.data.train), "preference", cfg.data.max_line_bytes)
    held = read_jsonl(Path(split_path), "preference", cfg.data.max_line_bytes)
    problems = leakage({"train": train, cfg.eval.split: held})
    if problems:
        raise DataError(problems, hint="held-out pairs must not be in the training data")
    examples, full, pairs = [], [], []
    for example, line in zip(held.examples, held.lines):
        messages = example["input"]["messages"]
        chosen, rejected = (content_text(example[k][0]) for k in ("preferred_output", "non_preferred_output"))
        prompt = [m for m in messages if m["role"] not in ("system", "developer")]
        examples.append(HeldOut(line, prompt, chosen))
        full.append([*messages, {"role": "assistant", "content": chosen}])
        pairs.append((messages, chosen, rejected))
    if cfg.eval.limit:
        examples, full, pairs = examples[: cfg.eval.limit], full[: cfg.eval.limit], pairs[: cfg.eval.limit]
    as_chat = [preferred_as_chat(e) for e in train.examples]
    system = cfg.eval.system_prompt or most_common_system_prompt(as_chat)
    return PreferenceTask(examples, system, few_shot(as_chat, cfg.eval.few_shot, cfg.eval.seed), full, pairs=pairs,
                          prompted_instructions=cfg.eval.prompted_instructions)


def answer_logprobs(local, pairs: list[tuple[Messages, str, str]], batch_size: int) -> list[tuple[float, float]]:
    """(log p(chosen | prompt), log p(rejected | prompt)) summed over the answer's tokens, for the system
    `local` is switched to. The answer tokens are found as training finds them (ftorch.chat_masks)."""
    import torch

    conversations = [[*prompt, {"role": "assistant", "content": answer}]
                     for prompt, chosen, rejected in pairs for answer in (chosen, rejected)]
    sums: list[float] = []
    for start in range(0, len(conversations), batch_size):
        rows = [local.assistant_labels(m) for m in conversations[start:start + batch_size]]
        ids, labels, mask = local.pad_right([r[0] for r in rows], [r[1] for r in rows])
        with torch.no_grad():
            logits = local.model(input_ids=ids, attention_mask=mask).logits.float()
        targets = labels[:, 1:]
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        sums += (picked * (targets != -100)).sum(-1).tolist()
    return [(sums[i], sums[i + 1]) for i in range(0, len(sums), 2)]


def score(local, task: PreferenceTask, batch_size: int, beta: float) -> dict[str, Any]:
    """The preference section of the report (see the module's docstring)."""
    logps = {}
    for name in ("base", "tuned"):
        with local.system(name):
            logps[name] = answer_logprobs(local, task.pairs, batch_size)
    return summarise(logps["base"], logps["tuned"], beta)


def summarise(base: list[tuple[float, float]], tuned: list[tuple[float, float]], beta: float) -> dict[str, Any]:
    from .stats import mcnemar, paired_bootstrap, paired_difference_interval, wilson_interval

    n = len(base)
    result: dict[str, Any] = {"n": n, "beta": beta}
    ranked = {}
    for name, rows in (("base", base), ("tuned", tuned)):
        margins = [c - r for c, r in rows]
        ranked[name] = [m > 0 for m in margins]
        wins = sum(ranked[name])
        result[name] = {"accuracy": wins / n if n else None, "ci95": wilson_interval(wins, n) if n else None,
                        "mean_logp_margin": statistics.fmean(margins) if n else None}
    if n:
        test = mcnemar(ranked["base"], ranked["tuned"])
        test["mean_diff"] = (test["b01"] - test["b10"]) / n
        test["ci"] = paired_difference_interval(ranked["base"], ranked["tuned"])
        result["tuned_vs_base"] = test
        rewards = [beta * ((tc - bc) - (tr - br)) for (bc, br), (tc, tr) in zip(base, tuned)]
        wins = sum(r > 0 for r in rewards)
        spread = paired_bootstrap([0.0] * n, rewards)
        result["implicit_reward"] = {"accuracy": wins / n, "ci95": wilson_interval(wins, n),
                                     "mean_margin": statistics.fmean(rewards), "margin_ci95": spread.get("ci"),
                                     "reference": "the base model (adapter disabled)"}
    return result


def rejected_behaviour(predictions: list[dict], patterns: list[str], systems: tuple[str, ...]) -> dict[str, Any]:
    """Share of generated answers that match any of `patterns`, per system, with Wilson intervals and the
    paired tests tuned vs prompted and tuned vs base."""
    from .stats import mcnemar, paired_difference_interval, wilson_interval

    compiled = [re.compile(p) for p in patterns]
    hits = {name: [any(c.search(row["systems"][name]["output"]) for c in compiled) for row in predictions]
            for name in systems}
    n = len(predictions)
    result: dict[str, Any] = {"patterns": list(patterns), "n": n}
    for name in systems:
        count = sum(hits[name])
        result[name] = {"rate": count / n if n else None, "ci95": wilson_interval(count, n) if n else None,
                        "count": count}
    for other in ("prompted", "base"):
        if n and other in hits:
            test = mcnemar(hits[other], hits["tuned"])
            test["mean_diff"] = (test["b01"] - test["b10"]) / n
            test["ci"] = paired_difference_interval(hits[other], hits["tuned"])
            result[f"tuned_vs_{other}"] = test
    for row, *flags in zip(predictions, *(hits[name] for name in systems)):
        for name, flag in zip(systems, flags):
            row["systems"][name]["rejected_behaviour"] = flag
    return result


def section(task: PreferenceTask, predictions: list[dict], local, cfg) -> Preference:
    """The report's "preference" entry: pair scores (local models only) and the rejected-behaviour rate."""
    from .heldout import SYSTEMS

    result: dict[str, Any] = {"method": cfg.train.method}
    if local is not None and task.pairs:
        result["pairs"] = score(local, task, cfg.eval.batch_size, cfg.train.preference.beta)
    if cfg.eval.rejected_patterns:
        result["rejected_behaviour"] = rejected_behaviour(predictions, cfg.eval.rejected_patterns, SYSTEMS)
    return Preference.model_validate(result)


def summary_line(pairs: PreferencePairs) -> str:
    """One console line: preference accuracy base -> tuned with the difference's interval."""
    test = pairs.tuned_vs_base
    ci = test.ci if test else None
    spread = (f" (difference {(test.mean_diff or 0.0) * 100:+.1f} points, 95% CI {ci[0] * 100:+.1f} to "
              f"{ci[1] * 100:+.1f})") if test and ci else ""
    return (f"preference accuracy (n={pairs.n}): base {_pct(pairs.base.accuracy)} -> tuned "
            f"{_pct(pairs.tuned.accuracy)}{spread}")


def console_line(eval_dir: Path) -> str | None:
    """The preference summary of a finished evaluation (None for a run without preference pairs)."""
    from ..errors import ConfigError

    try:
        report = EvalReport.load(eval_dir / "report.json")
    except ConfigError:
        return None
    pairs = report.preference.pairs if report.preference else None
    return summary_line(pairs) if pairs else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def markdown(section: Preference) -> list[str]:
    """The report's "Preference" section."""
    def ci(c):
        return "" if not c else f" [{c[0]:.1%}, {c[1]:.1%}]"

    lines = ["## Preference", ""]
    pref = section.pairs
    if pref:
        lines += [f"Held-out pairs: {pref.n}. Preference accuracy = share of pairs where the model gives the "
                  "preferred answer the higher log-probability.", "",
                  "| system | preference accuracy (95% CI) | mean log-prob margin |", "|---|---|---|"]
        for name, s in (("base", pref.base), ("tuned", pref.tuned)):
            margin = "n/a" if s.mean_logp_margin is None else f"{s.mean_logp_margin:+.2f}"
            lines.append(f"| {name} | {_pct(s.accuracy)}{ci(s.ci95)} | {margin} |")
        if pref.tuned_vs_base:
            lines += ["", f"Tuned vs base: {_versus(pref.tuned_vs_base)}."]
        reward = pref.implicit_reward
        if reward:
            margin_ci = reward.margin_ci95
            spread = f" [{margin_ci[0]:+.3f}, {margin_ci[1]:+.3f}]" if margin_ci else ""
            lines += ["", f"Implicit reward (beta={pref.beta} x log-ratio tuned/base): ranks the preferred answer "
                      f"first in {_pct(reward.accuracy)}{ci(reward.ci95)} of pairs; mean reward margin "
                      f"{reward.mean_margin:+.3f}{spread} (the base model's is 0 by definition)."]
    rejected = section.rejected_behaviour
    if rejected:
        lines += ["", "Generated answers showing the rejected behaviour (matching "
                  + ", ".join(f"`{p}`" for p in rejected.patterns) + "):", "",
                  "| system | rate (95% CI) |", "|---|---|"]
        for name in ("base", "prompted", "tuned"):
            rate = rejected.rate(name)
            if rate is not None:
                lines.append(f"| {name} | {_pct(rate.rate)}{ci(rate.ci95)} |")
        for other in ("prompted", "base"):
            test = rejected.versus(other)
            if test:
                lines.append(f"\nTuned vs {other}: {_versus(test)}.")
    return lines + [""]


def _versus(test: PairedTest) -> str:
    p = "n/a" if test.p_value is None else f"{test.p_value:.3g}"
    return f"{(test.mean_diff or 0.0) * 100:+.1f} points{_pp(test.ci)}, McNemar p={p}"


def _pp(ci) -> str:
    return "" if not ci else f" [{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]"


def record(metrics: dict, section: Preference) -> None:
    """The preference numbers run.json keeps (and sweep.objective can name)."""
    from ..run import metric_keys

    pref = section.pairs
    if pref:
        metrics[metric_keys.preference_accuracy("base")] = pref.base.accuracy
        metrics[metric_keys.preference_accuracy("tuned")] = pref.tuned.accuracy
        if pref.implicit_reward:
            metrics[metric_keys.REWARD_ACCURACY] = pref.implicit_reward.accuracy
            metrics[metric_keys.REWARD_MARGIN] = pref.implicit_reward.mean_margin
    rejected = section.rejected_behaviour
    if rejected:
        for name in ("base", "prompted", "tuned"):
            rate = rejected.rate(name)
            if rate is not None:
                metrics[metric_keys.rejected_rate(name)] = rate.rate
