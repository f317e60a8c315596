"""Drift of a local fine-tuned model on general text (shipped with ftorch): the mean per-token KL divergence
KL(base || tuned) between the two next-token distributions, and the change in perplexity."""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib import resources

MAX_TOKENS = 256


def general_texts() -> list[str]:
    text = resources.files("ftorch").joinpath("assets/eval/general_text.txt").read_text()
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return paragraphs if len(paragraphs) > 1 else [line for line in text.splitlines() if line.strip()]


def drift(local, batch_size: int, keep_base: Callable[[Callable[[], list]], list] = lambda compute: compute()) -> dict:
    """`local` is an eval.local.LocalModel with an adapter; base = adapter disabled. `keep_base` gets the
    computation of base's side (every position's log-probabilities over the vocabulary) and returns its result:
    computed now, or held from an earlier evaluation of the same base model (answer_cache.CachedGenerator.hold)."""
    import torch

    texts = general_texts()
    limit = local.context_length or MAX_TOKENS  # (never loads weights: base's side may be held, see keep_base)
    texts = [local.tokenizer.decode(local.tokenizer(t)["input_ids"][: min(MAX_TOKENS, limit)],
                                    skip_special_tokens=True) for t in texts]

    def base_side() -> list:
        with local.system("base"):
            return local.text_logprobs(texts, batch_size)

    base = keep_base(base_side)
    with local.system("tuned"):  # the tuned answers' weights (eval/local.py: merged where that is faster)
        tuned = local.text_logprobs(texts, batch_size)
    kl_sum, nll_base, nll_tuned, tokens = 0.0, 0.0, 0.0, 0
    for (p_log, targets), (q_log, _) in zip(base, tuned):
        kl_sum += torch.sum(p_log.exp() * (p_log - q_log)).item()
        nll_base -= p_log.gather(1, targets[:, None]).sum().item()
        nll_tuned -= q_log.gather(1, targets[:, None]).sum().item()
        tokens += len(targets)
    ppl_base, ppl_tuned = math.exp(nll_base / tokens), math.exp(nll_tuned / tokens)
    return {"texts": len(texts), "tokens": tokens, "kl_base_to_tuned_per_token": kl_sum / tokens,
            "perplexity_base": ppl_base, "perplexity_tuned": ppl_tuned,
            "perplexity_change": ppl_tuned / ppl_base - 1.0}


def held_bytes(side: list) -> int:
    """The memory one side's log-probabilities take (what holding base's costs)."""
    return sum(logprobs.nbytes + targets.nbytes for logprobs, targets in side)
