"""Shared prompt prefixes for the batched greedy decoder and the held-out loss (eval/local.py): when every prompt
of a generate() call starts with the same tokens (a system prompt, the fixed shots of a k-shot arm), the prefix's
KV cache is computed once and each batch starts from copies of it, so only the suffixes are prefilled. The
held-out loss does the same for the conversations it scores (scoring_inputs), right-padded.

The layout of a batch row is [prefix][left padding][suffix]: the attention mask has zeros at the padding (a hole
between prefix and suffix) and the suffix's position ids continue from the prefix's length, so every real token
sees exactly the tokens and positions it sees in the unshared path. Nothing here knows about prompting arms: the
prefix is the longest common token prefix of the call's prompts, used when it saves at least `minimum_saved`
tokens of prefill."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PASS_COST = 256  # a forward pass's fixed cost in prompt tokens of prefill, for prefill_groups
MINIMUM_SAVED = 64  # prompt tokens the call's rows together do not prefill again; below this the prefix's own
# forward pass and its cache copies cost about what they save (a token of prefill is about a millisecond of
# SmolLM2-135M on 2 cores, a forward pass has a few milliseconds of fixed cost)


def common_prefix_length(prompts: list[list[int]], minimum_saved: int = MINIMUM_SAVED) -> int:
    """The longest token prefix every prompt shares, leaving each prompt at least one token of its own (the
    first decoding step needs a query); 0 when sharing it would save fewer than `minimum_saved` tokens of prefill
    over the rows ((rows - 1) x length: the prefix still runs once), or there are fewer than 2 prompts. The
    general suite's prompts share only the chat template's default system prompt, 24 tokens on SmolLM2, yet
    over 72 prompts sharing it takes 0.93x the time (bench/decode_settings.py --prompts suites)."""
    if len(prompts) < 2:
        return 0
    first, shortest = prompts[0], min(len(p) for p in prompts)
    length = 0
    while length < shortest - 1 and all(p[length] == first[length] for p in prompts):
        length += 1
    return length if length and (len(prompts) - 1) * length >= minimum_saved else 0


@dataclass
class SharedPrefix:
    """A prefix's tokens and its KV cache for one row (a transformers DynamicCache)."""

    tokens: list[int]
    cache: Any

    @property
    def length(self) -> int:
        return len(self.tokens)

    def expanded(self, rows: int, config, growing: bool = True) -> Any:
        """A fresh cache (eval/kv_cache.py) holding the prefix's keys and values for `rows` rows (copied, so the batch's
        decoding grows and shrinks its own cache while the prefix stays for the next batch)."""
        from transformers import DynamicCache

        from .kv_cache import growing_cache

        filled = [(keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1)) for keys, values, *_ in self.cache]
        return growing_cache(config, filled) if growing else DynamicCache(filled, config=config)


def supported(config) -> bool:
    """Whether the model's cache is plain full attention in every layer (transformers' DynamicLayer): the prefix
    layout needs keys addressed by position; sliding-window and linear-attention layers keep other state."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=config).layers)


def prefill(model, tokens: list[int], cache_keyword: str, device) -> SharedPrefix:
    """Run the prefix once (one row, no padding) and keep its KV cache."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    ids = torch.tensor([tokens], device=device)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, logits_to_keep=1,
              **{cache_keyword: cache})
    return SharedPrefix(tokens, cache)


def batch_inputs(prompts: list[list[int]], prefix: SharedPrefix | None, pad: int, device):
    """The first forward pass's input ids, attention mask and position ids for a batch: left-padded suffixes after
    the shared prefix (or whole prompts, left-padded, without one)."""
    import torch

    shared = prefix.length if prefix is not None else 0
    suffixes = [p[shared:] for p in prompts]
    width = max(len(s) for s in suffixes)
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in suffixes], device=device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0) + shared
    if prefix is not None:
        mask = torch.cat([mask.new_ones((len(prompts), shared)), mask], dim=1)
    return ids, mask, positions


def batch_cache(prefix: SharedPrefix | None, rows: int, config, growing: bool = True):
    """The cache a batch of `rows` starts from: the prefix's, copied for every row, or an empty one; `growing`: one
    that grows in place (eval/kv_cache.py) where every layer is full attention."""
    from transformers import DynamicCache

    from .kv_cache import growing_cache

    if prefix is not None:
        return prefix.expanded(rows, config, growing)
    return growing_cache(config) if growing and supported(config) else DynamicCache(config=config)


def scoring_inputs(rows: list[list[int]], prefix: SharedPrefix | None, pad: int, config, device):
    """One scoring pass's input ids, attention mask, position ids and cache for whole sequences (no decoding):
    right-padded suffixes after the shared prefix in a copy of its cache (or the whole rows, right-padded, and no
    cache). The logits come out for the suffix positions only: position t of the suffix is position
    prefix.length + t."""
    import torch

    shared = prefix.length if prefix is not None else 0
    suffixes = [r[shared:] for r in rows]
    width = max(len(s) for s in suffixes)
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in suffixes], device=device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in suffixes], device=device)
    positions = torch.arange(shared, shared + width, device=device).expand(len(rows), -1)
    if prefix is None:
        return ids, mask, positions, None
    mask = torch.cat([mask.new_ones((len(rows), shared)), mask], dim=1)
    return ids, mask, positions, prefix.expanded(len(rows), config, growing=False)  # one pass: nothing to grow


def prefill_groups(lengths: list[int], pass_cost: int = PASS_COST) -> list[tuple[int, int]]:
    """Rows sorted by length (shortest first) split into consecutive groups, each prefilled in its own forward pass
    padded to its own longest row: the split that prefills the fewest tokens, padding included, counting each pass
    as `pass_cost` tokens more (dynamic programming over the split points). The general suite's 72 prompts differ
    from 13 to 45 tokens: one pass pads them to 3,240 tokens for 1,821 real ones."""
    best = [0] + [0] * len(lengths)  # best[end]: the cheapest split of rows [0, end)
    split = [0] * (len(lengths) + 1)
    for end in range(1, len(lengths) + 1):
        best[end], split[end] = min((best[start] + (end - start) * lengths[end - 1] + pass_cost, start)
                                    for start in range(end))
    groups, end = [], len(lengths)
    while end:
        groups.append((split[end], end))
        end = split[end]
    return groups[::-1]


def stacked_cache(caches: list[Any], shared: int, config) -> Any:
    """Caches of consecutive row groups (eval/kv_cache.py's growing caches, each [prefix][left padding][suffix]) as
    one for all their rows: each group's suffix columns moved right, zeros in the padding they leave, so every row
    ends at the last column. The attention mask of the whole batch (batch_inputs) masks the padding out."""
    import torch

    from .kv_cache import growing_cache

    width = max(cache.get_seq_length() for cache in caches)
    filled = []
    for layers in zip(*(cache.layers for cache in caches)):
        per_group = []
        for kind in ("keys", "values"):
            parts = []
            for layer in layers:
                states = getattr(layer, kind)
                gap = width - states.shape[-2]
                parts.append(states if not gap else torch.cat(
                    [states[..., :shared, :], states.new_zeros((*states.shape[:-2], gap, states.shape[-1])),
                     states[..., shared:, :]], dim=-2))
            per_group.append(torch.cat(parts, dim=0))
        filled.append((per_group[0], per_group[1]))
    return growing_cache(config, filled)
