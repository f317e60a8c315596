"""Choose the strongest prompt on validation data: score every arm of eval.prompt_arms there (k-shot for each k,
zero-shot, retrieved with the best k, constrained on the best so far, and the reference model with the best
strategy), stop an arm early when it is clearly worse, and pick the best on the headline metric (fewer prompt
tokens on a tie). Only validation examples and the shot pool are read: the test split cannot influence the
choice. The chosen arm becomes the 'prompted' system on the test split."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from ..config.schema import RunConfig
from . import metrics as task_metrics
from .answer_cache import CallClock
from .arms import Arm, Data, Prompts, references, split
from .constrained import constraint_for
from .stats import mean_interval

MIN_FOR_EARLY_STOP = 8  # fewer validation examples than this: every arm runs on all of them


@dataclass
class Selection:
    arm: Arm
    prompts: Prompts
    generator: Any  # what answers for the chosen arm: the run's model, or the reference model
    price: dict | None
    report: dict


def choose(cfg: RunConfig, system_prompt: str | None, generator, *, price: dict | None = None,
           reference=None, progress=None, generate=None) -> Selection:
    """`reference` = (generator, price) of eval.reference_model, or None. `generate(generator, conversations,
    label, constraint)` runs the batched generation (the runner's, with its progress bars)."""
    ev = cfg.eval
    data = split(cfg)
    prompts = Prompts(system_prompt, data.pool, ev.seed)
    metric = ev.headline if ev.headline != "judge" else next(m for m in ev.metrics if m != "judge")
    scorer = task_metrics.build_scorers([metric], ev.json_schema)[metric]
    sweep = _Sweep(cfg, data, prompts, scorer, metric, generate or _plain(ev))
    log: list[dict] = []
    names = set(ev.prompt_arms)
    # a likely strong arm first (eval.few_shot's k, else the middle k), so weak ones can stop early against it
    ks = sorted(set(ev.k_shots)) if "k_shot" in names else []
    if ks:
        first = ev.few_shot if ev.few_shot in ks else ks[len(ks) // 2]
        ks = [first] + [k for k in ks if k != first]
    for k in ks:
        log.append(sweep.run(Arm("k_shot", k), generator, price))
    if "zero_shot" in names:
        log.append(sweep.run(Arm("zero_shot"), generator, price))
    if "retrieved" in names:
        shot = [e for e in log if e["arm"].strategy == "k_shot" and e["status"] == "scored"]
        k = sweep.best(shot)["arm"].k if shot else (ev.few_shot or 5)
        log.append(sweep.run(Arm("retrieved", k), generator, price))
    if "constrained" in names:
        constraint, why = constraint_for(ev.json_schema, references(data.pool))
        base = sweep.best(log)["arm"] if sweep.scored(log) else Arm("zero_shot")
        if constraint is None:
            log.append(sweep.skip(base, why))
        elif constraint.kind not in getattr(generator, "constraint_kinds", ()):
            log.append(sweep.skip(base.constrained(constraint),
                                  f"this provider cannot hold replies to {constraint.describe().split('to ')[-1]}"))
        else:
            log.append(sweep.run(base.constrained(constraint), generator, price, why=why))
    if reference is not None and ev.reference_model is not None:  # load_reference: None without a reference_model
        ref_generator, ref_price = reference
        arm = (sweep.best(log)["arm"] if sweep.scored(log) else Arm("zero_shot")).on(ev.reference_model)
        if arm.constraint is not None and arm.constraint.kind not in getattr(ref_generator, "constraint_kinds", ()):
            arm = Arm(arm.strategy, arm.k, None, arm.model)
        log.append(sweep.run(arm, ref_generator, ref_price))
    if not sweep.scored(log):  # every arm skipped (e.g. no example fits the context): the plain system prompt
        log.append(sweep.run(Arm("zero_shot"), generator, price))
    best = sweep.best(log)
    ranked = sorted((e for e in log if e["status"] == "scored"), key=sweep.rank)
    runner_up = ranked[1] if len(ranked) > 1 else None
    why = (f"{best['arm'].name} scored {best['mean']:.1%} {metric} on {best['n']} validation examples, the highest"
           + (f" (next: {runner_up['arm'].name} {runner_up['mean']:.1%})" if runner_up else "")
           + ("; of equal scores the one with the fewest prompt tokens" if runner_up
              and runner_up["mean"] == best["mean"] else ""))
    report = {"metric": metric, "validation": data.source, "n_validation": len(data.validation),
              "shot_pool": len(data.pool), "chosen": best["arm"].name, "chosen_description": best["arm"].describe(),
              "why": why, "arms": [_public(e) for e in log]}
    chosen_generator, chosen_price = (reference if best["arm"].model else (generator, price))
    return Selection(best["arm"], prompts, chosen_generator, chosen_price, report)


def _plain(ev):
    def generate(generator, conversations, label, constraint):
        extra = {"constraint": constraint} if constraint is not None else {}
        return generator.generate(conversations, ev.max_new_tokens, ev.generation_batch(generator), **extra)
    return generate


def _public(entry: dict) -> dict:
    arm = entry["arm"]
    out = {k: v for k, v in entry.items() if k not in ("arm", "scores")}
    return {"name": arm.name, "strategy": arm.strategy, "k": arm.k, "constrained": arm.constraint is not None,
            "model": arm.model, "description": arm.describe(), **out}


class _Sweep:
    def __init__(self, cfg: RunConfig, data: Data, prompts: Prompts, scorer, metric: str, generate):
        self.ev, self.data, self.prompts, self.scorer, self.metric = cfg.eval, data, prompts, scorer, metric
        self.generate = generate
        self.done: list[dict] = []

    def rank(self, entry: dict):
        return (-entry["mean"], entry["prompt_tokens_per_call"], entry["order"])

    def scored(self, log: list[dict]) -> list[dict]:
        return [e for e in log if e["status"] in ("scored", "stopped early")]

    def best(self, log: list[dict]) -> dict:
        full = [e for e in log if e["status"] == "scored"]
        return min(full or self.scored(log), key=self.rank)

    def skip(self, arm: Arm, reason: str) -> dict:
        return {"arm": arm, "status": "skipped", "reason": reason, "order": len(self.done) + 100}

    def run(self, arm: Arm, generator, price: dict | None, why: str | None = None) -> dict:
        examples = self.data.validation
        if not examples:
            return self.skip(arm, "no validation examples")
        if arm.k > len(self.data.pool):
            return self.skip(arm, f"k={arm.k} is more than the {len(self.data.pool)} training examples available")
        conversations = [self.prompts.conversation(arm, e.prompt) for e in examples]
        tokens = [generator.prompt_tokens(c) for c in conversations]
        window = getattr(generator, "context_length", None)
        if window and max(tokens) + self.ev.max_new_tokens > window:
            return self.skip(arm, f"its longest prompt ({max(tokens)} tokens) and a reply of "
                                  f"{self.ev.max_new_tokens} exceed the model's context of {window} tokens")
        half = math.ceil(len(examples) / 2) if self.ev.early_stop and len(examples) >= MIN_FOR_EARLY_STOP \
            else len(examples)
        clock = CallClock(generator)  # answers from the answer cache: the seconds recorded when generated
        replies = clock.run(self.generate, generator, conversations[:half], f"validation · {arm.name}",
                            arm.constraint)
        scores = [self._score(r, e.reference) for r, e in zip(replies, examples)]
        entry: dict[str, Any] = {"arm": arm, "order": len(self.done)}
        leader = self._leader()
        stopped = half < len(examples) and leader is not None and _clearly_below(scores, leader["scores"][:half])
        if stopped and leader is not None:
            entry["reason"] = (f"stopped after {half} of {len(examples)} examples: clearly below "
                               f"{leader['arm'].name} on them (its 95% interval lies below)")
        elif half < len(examples):
            rest = clock.run(self.generate, generator, conversations[half:], f"validation · {arm.name}",
                             arm.constraint)
            scores += [self._score(r, e.reference) for r, e in zip(rest, examples[half:])]
        seconds = clock.per_answer
        values = [s for s in scores if s is not None]
        mean_tokens = statistics.fmean(tokens)
        entry.update(status="stopped early" if stopped else "scored", scores=scores, n=len(values),
                     mean=statistics.fmean(values) if values else 0.0, ci95=_interval(values, self.metric),
                     prompt_tokens_per_call=mean_tokens, seconds_per_call=seconds)
        if clock.reused:
            entry["latency_from_cache"] = True
        if why:
            entry["constraint_from"] = why
        per_million = (price or {}).get("input_usd_per_1m")
        if per_million is not None:
            entry["usd_per_1k_calls"] = mean_tokens * 1000 / 1e6 * per_million
        self.done.append(entry)
        return entry

    def _leader(self) -> dict | None:
        full = [e for e in self.done if e["status"] == "scored"]
        return min(full, key=self.rank) if full else None

    def _score(self, reply: str, reference: str):
        value = self.scorer(reply, reference)
        return None if value is None or value != value else float(value)


def _interval(values: list[float], metric: str) -> tuple[float, float]:
    return mean_interval(values, task_metrics.is_binary(metric))


def _clearly_below(scores: list, leader: list) -> bool:
    """The arm's 95% interval lies wholly below the leader's, on the same examples (the report's intervals:
    Wilson for pass/fail scores, its bounded extension for graded ones)."""
    mine = [s for s in scores if s is not None]
    theirs = [s for s in leader if s is not None]
    if not mine or not theirs:
        return False
    binary = all(s in (0.0, 1.0) for s in mine + theirs)
    return mean_interval(mine, binary)[1] < mean_interval(theirs, binary)[0]


def load_reference(cfg: RunConfig, local=None):
    """eval.reference_model as (generator, price per token or None), or None when not set: a local model folder
    (no adapter, on the run model's device), else an OpenAI model id through the SDK (the judge's key)."""
    from pathlib import Path

    name = cfg.eval.reference_model
    if not name:
        return None
    path = Path(name).expanduser()
    if path.is_dir():
        from .local import LocalModel

        return LocalModel(str(path), None, device=getattr(local, "device", None)), None
    from ..data.cost import PriceTable, price_table_path
    from ..data.tokens import counter_for
    from .graders import client
    from .openai_chat import OpenAIChat

    table = price_table_path(getattr(cfg.provider, "prices", None))
    family = PriceTable.load(table).family(name) if table.is_file() else None
    price = family[1] if family else None
    return OpenAIChat(client(cfg.eval), name, name, counter_for(name, price), cfg.eval.seed), price


def sweep_conversations(cfg: RunConfig, system_prompt: str | None) -> tuple[list, list]:
    """For a cost estimate before any call: (every validation conversation the sweep may send, with retrieved
    and constrained at the largest k; and the test split's longest possible 'prompted' prompt per example)."""
    from .tasks import load_task

    ev = cfg.eval
    data = split(cfg)
    prompts = Prompts(system_prompt, data.pool, ev.seed)
    ks = sorted(set(ev.k_shots)) if "k_shot" in ev.prompt_arms else []
    largest = max([*ks, ev.few_shot])
    arms = ([Arm("zero_shot")] * ("zero_shot" in ev.prompt_arms) + [Arm("k_shot", k) for k in ks]
            + [Arm("retrieved", largest)] * ("retrieved" in ev.prompt_arms)
            + [Arm("retrieved", largest)] * ("constrained" in ev.prompt_arms))
    sweep = [prompts.conversation(arm, e.prompt) for arm in arms for e in data.validation]
    test = [prompts.conversation(Arm("retrieved", largest), e.prompt) for e in load_task(cfg).examples]
    return sweep, test
