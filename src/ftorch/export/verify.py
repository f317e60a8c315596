"""Does the export answer like base + adapter? Greedy replies to the run's held-out prompts (the evaluation's
'tuned' conversations and its batched decoder, eval/local.py), from both, compared: the share of identical
answers and the headline metric of each. The thresholds depend on what the export is (fp32 must be identical,
16-bit nearly, quantized within a bounded metric drop); every one can be changed on the command line."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..run.rundir import write_json_atomic
from .source import Source


@dataclass
class Thresholds:
    min_identical: float | None  # share of identical answers (None: reported, not checked)
    max_metric_delta: float | None  # |exported - adapter| on the headline metric, 0-1 scale (None: not checked)
    max_metric_drop: float | None  # adapter - exported on the headline metric (None: not checked)


def default_thresholds(precision: str) -> Thresholds:
    """fp32: identical; 16-bit (merged bf16/fp16, GGUF f16): >= 95% identical and the metric within 2 points;
    quantized GGUF: the metric may drop by at most 5 points (8-bit) or 15 points (4-bit)."""
    if precision == "float32":
        return Thresholds(1.0, 0.0, None)
    if precision in ("bfloat16", "float16", "f16"):
        return Thresholds(0.95, 0.02, None)
    if precision == "q8_0":
        return Thresholds(None, None, 0.05)
    return Thresholds(None, None, 0.15)


def held_out(source: Source, limit: int | None):
    """(task, conversations): the held-out examples as the evaluation's tuned system is asked them."""
    from ..eval.tasks import load_task

    cfg = source.cfg
    if limit is not None:
        cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"limit": limit})})
    task = load_task(cfg)
    return task, [task.conversation("tuned", e) for e in task.examples]


def reference_replies(source: Source, conversations: list, max_new_tokens: int, batch_size: int,
                      cache_dir: Path) -> list[str]:
    """Base + adapter's greedy replies. Cached in `cache_dir` (RUN/export/, or an --out folder) per conversation
    (under the reply length and the adapter's files), so later exports of the same run, with any --limit,
    generate only what is new."""
    from ..eval.local import LocalModel

    adapter_files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in source.adapter.iterdir()
                           if p.is_file())
    key = hashlib.sha256(json.dumps([max_new_tokens, adapter_files]).encode()).hexdigest()[:16]
    cache = cache_dir / f".reference-{key}.json"
    try:
        known = json.loads(cache.read_text())["replies"]
    except (OSError, ValueError, KeyError):
        known = {}
    hashes = [hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest() for c in conversations]
    todo = [i for i, h in enumerate(hashes) if h not in known]
    if todo:
        local = LocalModel(source.base_path(), source.adapter)
        for index, reply in zip(todo, local.generate([conversations[i] for i in todo], max_new_tokens, batch_size)):
            known[hashes[index]] = reply
        write_json_atomic(cache, {"replies": known})
    return [known[h] for h in hashes]


def compare(task, reference: list[str], exported: list[str], headline: str, json_schema: str | None) -> dict:
    from ..eval.metrics import build_scorers

    score = build_scorers([headline], json_schema)[headline]
    rows = []
    for example, ours, theirs in zip(task.examples, reference, exported):
        rows.append({"line": example.line, "adapter": ours, "export": theirs, "identical": ours == theirs,
                     "adapter_score": score(ours, example.reference), "export_score": score(theirs, example.reference)})
    n = len(rows)
    mean = (lambda values: sum(values) / n) if n else (lambda values: None)
    return {"n": n, "headline": headline, "identical": mean([r["identical"] for r in rows]),
            "adapter_metric": mean([r["adapter_score"] for r in rows]),
            "export_metric": mean([r["export_score"] for r in rows]), "rows": rows}


def judge(summary: dict, limits: Thresholds) -> list[str]:
    """What fails the thresholds, in words (empty: passed)."""
    failures = []
    if summary["n"] == 0:
        return ["no held-out examples to verify with (data.test / data.validation is empty)"]
    delta = summary["export_metric"] - summary["adapter_metric"]
    if limits.min_identical is not None and summary["identical"] < limits.min_identical:
        failures.append(f"{summary['identical']:.1%} of answers identical to base + adapter's, "
                        f"{limits.min_identical:.0%} required")
    if limits.max_metric_delta is not None and abs(delta) > limits.max_metric_delta + 1e-12:
        failures.append(f"{summary['headline']} {summary['export_metric']:.1%} against the adapter's "
                        f"{summary['adapter_metric']:.1%}: {abs(delta) * 100:.1f} points apart, at most "
                        f"{limits.max_metric_delta * 100:.1f} allowed")
    if limits.max_metric_drop is not None and -delta > limits.max_metric_drop + 1e-12:
        failures.append(f"{summary['headline']} dropped {-delta * 100:.1f} points ({summary['adapter_metric']:.1%} "
                        f"-> {summary['export_metric']:.1%}), at most {limits.max_metric_drop * 100:.1f} allowed")
    return failures


def verify(source: Source, loaded, folder: Path, limits: Thresholds, *, limit: int | None = None,
           progress=print) -> dict:
    """Generate with `loaded` = (model, tokenizer) and with base + adapter, compare, write verification.json
    into the export folder; the summary (without per-example rows) with `passed` and `failures`."""
    from ..eval.local import LocalModel

    ev = source.cfg.eval
    task, conversations = held_out(source, limit)
    progress(f"verifying on {len(conversations)} held-out prompts (greedy, up to {ev.max_new_tokens} tokens)")
    reference = reference_replies(source, conversations, ev.max_new_tokens, ev.decode_batch_size, folder.parent)
    model, tokenizer = loaded
    exported = LocalModel.from_loaded(model, tokenizer).generate(conversations, ev.max_new_tokens, ev.decode_batch_size)
    result = compare(task, reference, exported, ev.headline, ev.json_schema)
    failures = judge(result, limits)
    summary = {k: v for k, v in result.items() if k != "rows"}
    summary.update(thresholds=asdict(limits), passed=not failures, failures=failures)
    write_json_atomic(folder / "verification.json", {**summary, "rows": result["rows"]})
    return summary


def summary_line(summary: dict) -> str:
    return (f"{summary['identical']:.1%} identical answers (n={summary['n']}); {summary['headline']}: "
            f"adapter {summary['adapter_metric']:.1%}, export {summary['export_metric']:.1%}")
