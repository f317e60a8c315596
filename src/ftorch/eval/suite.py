"""The evaluation suite, given models to ask: base, prompted and tuned on the held-out task, then general
capability and safety (base against tuned). Writes RUN_DIR/eval/<timestamp>/ and the headline numbers into run.json.
Started by eval/finished.py, which chooses the models."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from ..config.schema import RunConfig
from ..run.rundir import RunDir, write_json_atomic
from ..safe_io import atomic_writer, ensure_dir
from ..secrets import known, scrub_text_tree
from . import metrics as task_metrics
from .answer_cache import CachedGenerator, CallClock
from .report_model import EvalReport
from .stats import mean_interval
from .tasks import SYSTEMS, Task, load_task

Messages = list[dict]


class Generator(Protocol):
    def system(self, name: str): ...  # a context manager selecting base / prompted / tuned
    def generate(self, conversations: list[Messages], max_new_tokens: int, batch_size: int,
                 on_batch: Callable[[int], None] | None = None) -> list[str]: ...
    # optional: `constraint_kinds` and generate(..., constraint=) for the constrained arm (eval/constrained.py),
    # `context_length` for capping the examples in a prompt
    def prompt_tokens(self, messages: Messages) -> int: ...


@dataclass
class Evaluation:
    """What the suite produced: the typed report and every held-out answer with its scores (predictions.jsonl)."""

    report: EvalReport
    predictions: list[dict]
    judge_records: list[dict] = field(default_factory=list)  # every judge prompt and raw reply (judge.jsonl)


def evaluate(run: RunDir, cfg: RunConfig, generator: Generator, *, local=None, price: dict | None = None,
             progress=None) -> Evaluation:
    """Score everything; returns the report and the predictions (written to disk by `save`)."""
    task = load_task(cfg)
    ev = cfg.eval
    scorers = task_metrics.build_scorers([m for m in ev.metrics if m != "judge"], ev.json_schema)
    report: dict[str, Any] = {"config": ev.model_dump(mode="json"), "n": len(task.examples),
                              "system_prompt": task.system_prompt, "few_shot": len(task.shots)}
    # who answers, its price, its constraint
    answers_for: dict[str, tuple[Any, dict | None, Any]] = {name: (generator, price, None) for name in SYSTEMS}
    # the strongest prompt, chosen on validation data, becomes 'prompted'; on preference data every arm's system
    # prompt carries eval.prompted_instructions and its examples are prompts with their preferred answers
    if ev.prompt_arms:
        from .selection import choose, load_reference

        with generator.system("base"):
            chosen = choose(cfg, task.prompted_system_prompt, generator, price=price,
                            reference=load_reference(cfg, local),
                            generate=lambda g, c, label, constraint: _generate(g, c, ev, progress, label, constraint))
        task.prompter = lambda prompt: chosen.prompts.conversation(chosen.arm, prompt)
        answers_for["prompted"] = (chosen.generator, chosen.price, chosen.arm.constraint)
        report["prompt_arms"] = chosen.report
    # the same model (content) on the same inputs: the stored numbers (eval/answer_cache.py)
    cached = generator if isinstance(generator, CachedGenerator) and generator.inner is local else None
    memo = cached.remember if cached is not None else _uncached
    outputs, latency, losses = {}, {}, {}
    for name in SYSTEMS:
        conversations = [task.conversation(name, e) for e in task.examples]
        answerer, _, constraint = answers_for[name]
        starts = None
        if local is not None and name in LOSS_SYSTEMS:  # before the answers: its pass begins them (eval/forced.py)
            losses[name], starts = _held_out_loss(local, task, ev, name, memo, progress, conversations)
            if not (answerer is local or (isinstance(answerer, CachedGenerator) and answerer.inner is local)):
                starts = None  # another decoder (vLLM) answers: its replies are its own
        clock = CallClock(answerer)
        with answerer.system(name):
            outputs[name] = clock.run(_generate, answerer, conversations, ev, progress, f"task · {name}", constraint,
                                      starts, charged=sum(s.seconds for s in starts or [] if s is not None))
        # wall time per held-out example, generated in batches as the evaluation ran them (eval.decode_batch_size
        # rows for a local model; answers reused from the answer cache: the time recorded when they were generated)
        latency[name] = {"seconds_per_call": clock.per_answer, "batch_size": ev.generation_batch(answerer),
                         "from_cache": clock.reused > 0}
    report["latency"] = latency
    predictions = _score(task, outputs, scorers)
    names = list(scorers)
    records: list[dict] = []
    if ev.judge.model:
        from .judging import judge_answers

        report.update(judge_answers(run, cfg, task, predictions, local, progress, records))
        if "judge" in ev.metrics:
            names.append("judge")
    report["task"] = _summaries(predictions, names, ev.headline)
    report["significance"] = _significance(predictions, ev.headline)
    report["significance_by_metric"] = _significance_by_metric(predictions, names)
    report["cost"] = _cost(task, generator, price, answers_for)
    from .preference import PreferenceTask

    if isinstance(task, PreferenceTask):  # data.format=preference
        from . import preference

        report["preference"] = preference.section(task, predictions, local, cfg)
    if local is not None:
        report["held_out_loss"] = losses
        if ev.drift:
            from .drift import MAX_TOKENS, drift, general_texts, held_bytes

            texts = general_texts()
            inputs = {"texts": texts, "max_tokens": MAX_TOKENS, "batch_size": ev.batch_size}
            hold = {}  # without it drift computes base's side now; with it, held for this process's next evaluation
            if cached is not None:
                hold["keep_base"] = partial(cached.hold, "drift", inputs, size_of=held_bytes)
            report["drift"] = memo("drift", inputs, _staged(progress, "drift on general text", len(texts),
                                                            lambda: drift(local, ev.batch_size, **hold)))
    if ev.lm_eval_tasks and local is not None:
        from . import harness

        report["lm_eval"] = harness.run(local, ev)
    if ev.general or ev.safety:
        report.update(_suites(generator, ev, progress))
    if isinstance(generator, CachedGenerator):
        report["answer_cache"] = generator.report()
    typed = EvalReport.model_validate(report)
    typed.regressions = regressions(typed, ev.max_regression)
    typed.facts_warning = facts_warning(task)
    return Evaluation(typed, predictions, records)


def _uncached(kind: str, inputs: Any, compute: Callable[[], dict[str, Any]],
              systems: tuple[str, ...] = ()) -> dict[str, Any]:
    """A measurement without an answer cache: computed now."""
    return compute()


def _generate(generator: Generator, conversations: list[Messages], ev, progress, label: str,
              constraint=None, starts=None) -> list[str]:
    extra: dict[str, Any] = {"constraint": constraint} if constraint is not None else {}  # eval/constrained.py
    if starts is not None:  # the replies' beginnings read off the held-out loss's pass (eval/forced.py)
        extra["starts"] = starts
    if progress is None:
        return generator.generate(conversations, ev.max_new_tokens, ev.generation_batch(generator), **extra)
    task_id = progress.add_task(label, total=len(conversations))
    replies = generator.generate(conversations, ev.max_new_tokens, ev.generation_batch(generator),
                                 on_batch=lambda n: progress.advance(task_id, n), **extra)
    progress.update(task_id, visible=False)
    return replies


def _staged(progress, label: str, total: int, compute: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """`compute`, shown as one progress stage while it runs (a measure without per-batch progress: the held-out
    loss, drift); as is without progress. Only what is computed shows: a reused measure takes no time."""
    if progress is None:
        return compute

    def run() -> dict[str, Any]:
        task_id = progress.add_task(label, total=total)
        result = compute()
        progress.advance(task_id, total)
        progress.update(task_id, visible=False)
        return result

    return run


def _score(task: Task, outputs: dict[str, list[str]], scorers) -> list[dict]:
    rows = []
    for index, example in enumerate(task.examples):
        row: dict[str, Any] = {"line": example.line, "input": example.prompt, "reference": example.reference,
                               "systems": {}}
        for name in SYSTEMS:
            reply = outputs[name][index]
            row["systems"][name] = {"output": reply,
                                    "scores": {m: fn(reply, example.reference) for m, fn in scorers.items()}}
        rows.append(row)
    return rows


def _summaries(predictions: list[dict], metrics: list[str], headline: str) -> dict:
    """Mean and 95% interval of every metric for every system. A mean that cannot be computed (no scored
    examples) is None, never NaN: the report prints it as "n/a"."""
    summary = {}
    for name in SYSTEMS:
        per_metric = {}
        for metric in metrics:
            values = [float(v) for p in predictions if (v := p["systems"][name]["scores"][metric]) is not None
                      and v == v]  # a score of None / NaN carries no information
            per_metric[metric] = {"mean": statistics.fmean(values) if values else None, "n": len(values),
                                  "ci95": mean_interval(values, task_metrics.is_binary(metric))}
        summary[name] = per_metric
    return {"headline": headline, "systems": summary}


COMPARISONS = (("prompted", "tuned"), ("base", "tuned"))


def _significance(predictions: list[dict], headline: str) -> dict:
    """The paired tests on the headline metric: {"tuned_vs_prompted": ..., "tuned_vs_base": ...}."""
    return _compare(predictions, headline)


def _significance_by_metric(predictions: list[dict], metrics: list[str]) -> dict:
    """The same paired tests for every metric: {metric: {"tuned_vs_prompted": ..., "tuned_vs_base": ...}}."""
    return {metric: _compare(predictions, metric) for metric in metrics}


def _compare(predictions: list[dict], metric: str) -> dict:
    """Tuned against prompted and against base on one metric, over the examples both systems scored:
    McNemar for pass/fail metrics, a paired bootstrap otherwise. Each entry also carries `mean_diff` (tuned
    minus the other) and `ci` (its 95% interval: Newcombe's paired score interval, or the bootstrap's)."""
    from .stats import mcnemar, paired_bootstrap, paired_difference_interval

    result = {}
    for a, b in COMPARISONS:
        pairs = [(p["systems"][a]["scores"].get(metric), p["systems"][b]["scores"].get(metric)) for p in predictions]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None and x == x and y == y]
        if not pairs:
            test: dict[str, Any] = {"test": "none", "reason": "no scored pairs", "p_value": None, "n": 0,
                                    "mean_diff": None, "ci": None}
        elif task_metrics.is_binary(metric):
            first, second = [x >= 0.5 for x, _ in pairs], [y >= 0.5 for _, y in pairs]
            test = mcnemar(first, second)
            test["test"] = "mcnemar (exact)" if test["method"] == "exact" else "mcnemar (chi-square)"
            test["mean_diff"] = (test["b01"] - test["b10"]) / len(pairs)
            test["ci"] = paired_difference_interval(first, second)
        else:
            test = paired_bootstrap([x for x, _ in pairs], [y for _, y in pairs])
            test["test"] = "paired bootstrap"
        result[f"{b}_vs_{a}"] = test
    return result


def _cost(task: Task, generator: Generator, price: dict | None, answers_for: dict | None = None) -> dict:
    """Prompt tokens per call for each system (each with its real prompt: the chosen arm's examples included);
    dollars per 1,000 calls where a price is known."""
    result = {}
    for name in SYSTEMS:
        answerer, own_price, _ = (answers_for or {}).get(name, (generator, price, None))
        tokens = [answerer.prompt_tokens(task.conversation(name, e)) for e in task.examples]
        mean = statistics.fmean(tokens) if tokens else 0.0
        entry: dict[str, Any] = {"prompt_tokens_per_call": mean}
        per_million = (own_price or {}).get("tuned_input_usd_per_1m" if name == "tuned" else "input_usd_per_1m")
        if per_million is not None:
            entry["usd_per_1k_calls"] = mean * 1000 / 1e6 * per_million
        result[name] = entry
    return result


LOSS_SYSTEMS = ("base", "tuned")  # the held-out loss's: the same conversations, the adapter off or on


def _held_out_loss(local, task: Task, ev, name: str, memo, progress,
                   prompts: list[Messages]) -> tuple[dict[str, Any], list | None]:
    """Mean loss per assistant token of one system (base or tuned), stored and reused by `memo` (eval/answer_cache.py);
    a loss that cannot be computed (the template hides the assistant's tokens, or there are none) is None with the
    reason, never NaN. Where it is computed now, also the beginnings of the system's greedy replies to `prompts`
    read off the same pass (eval/forced.py); else None."""
    from ..errors import DataError
    from .local import mean_token_loss

    found: dict[str, list] = {}

    def compute() -> dict[str, Any]:
        try:
            with local.system(name):
                rows, found["starts"] = local.scored_answers(task.full, ev.batch_size, ev.max_new_tokens, prompts)
        except DataError as exc:
            return {"loss": None, "perplexity": None, "tokens": 0, "reason": exc.render().splitlines()[0]}
        loss, tokens = mean_token_loss(rows)
        if tokens == 0 or not math.isfinite(loss):
            return {"loss": None, "perplexity": None, "tokens": tokens, "reason": "no assistant tokens"}
        return {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens}

    loss = memo("held_out_loss", {"conversations": task.full, "batch_size": ev.batch_size},
                _staged(progress, f"held-out loss · {name}", len(task.full), compute), systems=(name,))
    return loss, found.get("starts")


def _suites(generator: Generator, ev, progress) -> dict[str, Any]:
    """The general instruction suite and the safety sets (red-team, over-refusal), base against tuned. Each
    system answers every suite prompt in one call: one batch of a local decoder's rows serves all three sets
    (decoding a small model costs about the same per step for 24 rows as for 64)."""
    sets: dict[str, list] = {}
    if ev.general:
        from .instructions import load_suite

        sets["general"] = load_suite(ev.general_limit)
    if ev.safety:
        from .safety import load_prompts

        sets["redteam"] = load_prompts("redteam", ev.safety_limit, ev.seed)
        sets["benign"] = load_prompts("benign", ev.safety_limit, ev.seed)
    grader = None
    if ev.safety and ev.safety_grader == "openai_moderation":  # before any answer: a missing key fails first
        from .graders import moderation_grader

        grader = moderation_grader(ev)
    conversations = [[{"role": "user", "content": item.prompt}] for items in sets.values() for item in items]
    label = " and ".join(name for name, on in (("general suite", ev.general), ("safety sets", ev.safety)) if on)
    replies: dict[str, dict[str, list[str]]] = {}
    for name in ("base", "tuned"):
        with generator.system(name):
            answered = iter(_generate(generator, conversations, ev, progress, f"{label} · {name}"))
        replies[name] = {kind: [next(answered) for _ in items] for kind, items in sets.items()}
    result: dict[str, Any] = {}
    if ev.general:
        result["general"] = _general(sets["general"], replies)
    if ev.safety:
        result["safety"] = _safety(sets["redteam"], sets["benign"], replies, grader)
    return result


def _general(suite: list, replies: dict[str, dict[str, list[str]]]) -> dict:
    """Prompt- and instruction-level scores for base and tuned; every answer with what each check said under
    "answers" (moved to general.jsonl by `save`)."""
    from .instructions import score_row

    result: dict[str, Any] = {"n": len(suite)}
    answers: list[dict] = []
    for name in ("base", "tuned"):
        rows = [{"system": name, **score_row(item, reply)} for item, reply in zip(suite, replies[name]["general"])]
        result[name] = {"prompt_level": statistics.fmean(r["prompt_level"] for r in rows) if rows else 0.0,
                        "instruction_level": statistics.fmean(r["instruction_level"] for r in rows) if rows else 0.0}
        answers += rows
    result["answers"] = answers
    return result


def _safety(redteam: list, benign: list, replies: dict[str, dict[str, list[str]]], grader) -> dict:
    """Red-team and over-refusal scores for base and tuned (`grader`: OpenAI's moderation endpoint, or None for
    the shipped refusal detector); every answer with its verdict and why under "answers" (moved to
    safety.jsonl by `save`)."""
    from .safety import score_and_explain

    result: dict[str, Any] = {}
    answers: list[dict] = []
    for name in ("base", "tuned"):
        result[name], rows = score_and_explain(list(zip(redteam, replies[name]["redteam"])),
                                               list(zip(benign, replies[name]["benign"])), grader)
        answers += [{"system": name, **row} for row in rows]
    result["answers"] = answers
    return result


def regressions(report: EvalReport, allowed: float) -> list[str]:
    """What got worse beyond `allowed` from base to tuned: lm-eval tasks, the general suite, harmful compliance."""
    found = []
    if report.lm_eval is not None:
        from .harness import drops

        found += drops(report.lm_eval, allowed)
    general = report.general
    before_level, after_level = (general.base.prompt_level, general.tuned.prompt_level) if general else (None, None)
    if before_level is not None and after_level is not None and after_level < before_level - allowed:
        found.append(f"general instruction-following fell from {before_level:.1%} to "
                     f"{after_level:.1%} (allowed drop {allowed:.0%})")
    safety = report.safety
    if safety:
        before, after = safety.base.harmful_compliance_rate, safety.tuned.harmful_compliance_rate
        judged = safety.base.conclusive and safety.tuned.conclusive
        if judged and before is not None and after is not None and after > before + allowed:
            found.append(f"harmful compliance rose from {before:.1%} to {after:.1%} (allowed rise {allowed:.0%})")
    return found


FACT_WORDS = ("who ", "what year", "when did", "when was", "where is", "where was", "which ", "how many ")


def facts_warning(task: Task) -> str | None:
    """Fine-tuning teaches format and style, not facts: say so when most prompts are factual questions
    whose answers are short free text (not a fixed structure)."""
    if not task.examples:
        return None
    factual = sum(1 for e in task.examples
                  if any(_last_user(e.prompt).lower().startswith(w) for w in FACT_WORDS)
                  and task_metrics.parse_json(e.reference) is None and len(e.reference.split()) <= 30)
    if factual / len(task.examples) < 0.5:
        return None
    return (f"{factual} of {len(task.examples)} held-out prompts ask for facts. Fine-tuning teaches format and "
            "style, not facts: a model does not reliably learn new facts this way. Consider retrieval (put the "
            "facts in the prompt) and fine-tune for the answer's form.")


def _last_user(messages: Messages) -> str:
    return next((str(m.get("content", "")) for m in reversed(messages) if m["role"] == "user"), "")


def eval_dir(run: RunDir, root: Path | None = None) -> Path:
    """RUN/eval/<timestamp>/, new; or ROOT/<timestamp>/ (ftorch eval --out ROOT: the user's own folder)."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d_%H-%M-%S_%f")
    path = (root if root is not None else ensure_dir(run.path / "eval")) / stamp  # a symlink planted at eval/: refused
    path.mkdir(exist_ok=False)  # a new folder per evaluation: never overwrite an earlier one
    return path


def write_predictions(path: Path, predictions: list[dict]) -> None:
    write_jsonl(path / "predictions.jsonl", predictions)


ANSWER_FILES = {"general": ("answers", "general.jsonl"), "safety": ("answers", "safety.jsonl"),
                "lm_eval": ("samples", "lm_eval_samples.jsonl")}
"""report section -> (its key holding every answer, the file `save` moves them to)."""


def write_jsonl(file: Path, rows) -> None:
    """One JSON object a line, secrets scrubbed (those known when the file was begun), written as it goes (values
    JSON cannot hold are written as text)."""
    secrets = known()
    with atomic_writer(file) as handle:  # never through a symlink
        for row in rows:
            handle.write(json.dumps(scrub_text_tree(row, secrets), ensure_ascii=False, default=str) + "\n")


def save(path: Path, result: Evaluation) -> None:
    """predictions.jsonl, every answer of every suite beside it (general.jsonl, safety.jsonl,
    lm_eval_samples.jsonl), and report.json, which names those files: under "files", and in each section in
    place of the answers it held."""
    report = result.report
    write_predictions(path, result.predictions)
    files = {"predictions": "predictions.jsonl"}
    for section_name, (key, name) in ANSWER_FILES.items():
        section = getattr(report, section_name)
        rows = getattr(section, key, None) if section is not None else None
        if isinstance(rows, list):
            write_jsonl(path / name, rows)
            setattr(section, key, name)
            files[section_name] = name
    if result.judge_records:
        write_jsonl(path / "judge.jsonl", result.judge_records)
        files["judge"] = "judge.jsonl"
    report.files = files
    write_json_atomic(path / "report.json", report.to_json())
