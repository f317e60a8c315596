"""General capability on lm-evaluation-harness tasks (optional extra), base against tuned: the run's model
(base + PEFT adapter, already loaded for the evaluation) handed to lm-eval's `hf` model, with the adapter
switched off for `base` (lm-eval's own adapter loading breaks on tied embeddings saved with the adapter).
The tasks' data must be reachable: on the hub (network) or in local files named by your own task YAMLs
(eval.lm_eval_include_path).
Every logged sample (prompt, responses, target, per-sample metrics) comes back under "samples", for
lm_eval_samples.jsonl."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, MissingExtra, Problem
from .report_model import LmEval


def run(local, ev) -> dict[str, Any]:
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise MissingExtra(Problem("eval.lm_eval_tasks", "lm-evaluation-harness is not installed",
                                   "pip install 'ftorch[lm-eval]'")) from None
    manager = TaskManager(include_path=ev.lm_eval_include_path) if ev.lm_eval_include_path else TaskManager()
    unknown = [t for t in ev.lm_eval_tasks if t not in manager.all_tasks]
    if unknown:
        raise ConfigError(Problem("eval.lm_eval_tasks", f"lm-eval has no task {unknown}",
                                  "check the names (lm-eval --tasks list) or eval.lm_eval_include_path"))
    from lm_eval.models.huggingface import HFLM

    scores: dict[str, dict] = {}
    samples: list[dict] = []
    # HFLM re-ties the embeddings of the model it is given; the adapter's weights are already in place, and
    # re-tying a PEFT model that saved its tied embed_tokens/lm_head fails: skip it for this object only.
    local.model.tie_weights = lambda *args, **kwargs: None
    for name in ("base", "tuned"):
        with local.system(name):
            model = HFLM(pretrained=local.model, tokenizer=local.tokenizer, batch_size=ev.batch_size)
            out = lm_eval.simple_evaluate(model=model, tasks=list(ev.lm_eval_tasks), task_manager=manager,
                                          limit=ev.lm_eval_limit, log_samples=True)
        for task, items in (out.pop("samples", None) or {}).items():
            samples += [sample_row(name, task, item) for item in items]
        scores[name] = {task: {k: v for k, v in values.items()
                               if isinstance(v, (int, float)) and "stderr" not in k and k != "sample_len"}
                        for task, values in out["results"].items()}
    change = {task: {metric: scores["tuned"][task][metric] - value for metric, value in metrics.items()
                     if metric in scores["tuned"].get(task, {})}
              for task, metrics in scores["base"].items()}
    return {"tasks": list(ev.lm_eval_tasks), "base": scores["base"], "tuned": scores["tuned"], "change": change,
            "samples": samples}


_HASHES = ("doc_hash", "prompt_hash", "target_hash")


def sample_row(system: str, task: str, sample: dict) -> dict:
    """One lm-eval logged sample, made compact for lm_eval_samples.jsonl: the prompt once (lm-eval repeats
    the context for every choice), what was scored against it (continuations or generation settings), the
    filtered responses (log-likelihoods, or generated text), the target and the per-sample metric values.
    The raw `resps` (before filters) and the hashes are dropped."""
    arguments = [tuple(a) if isinstance(a, (list, tuple)) else (a,) for a in sample.get("arguments") or []]
    row = {"system": system, "task": task, "doc_id": sample.get("doc_id"),
           "prompt": arguments[0][0] if arguments else None,
           "scored": [a[1] if len(a) == 2 else list(a[1:]) for a in arguments if len(a) > 1]}
    row.update((key, value) for key, value in sample.items()
               if key not in ("doc_id", "arguments", "resps", *_HASHES))
    return row


def drops(result: LmEval, allowed: float) -> list[str]:
    """Accuracy-like metrics that fell by more than `allowed`."""
    found = []
    for task, metrics in result.change.items():
        for metric, delta in metrics.items():
            if metric.startswith(("acc", "exact_match")) and delta < -allowed:
                found.append(f"lm-eval {task} {metric} fell by {-delta:.1%} (allowed {allowed:.0%})")
    return found
