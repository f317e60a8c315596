"""Padding-free attention through PyTorch's own varlen kernel (torch.nn.attention.varlen.varlen_attn), as a
transformers attention function named "torch_varlen": packed rows carry cumulative sequence lengths, never a
dense block mask. varlen_attn needs CUDA; on CPU each packed sequence goes through SDPA alone (exact, slow),
which is what the CPU tests check."""

from __future__ import annotations

import inspect
from typing import Any, cast

NAME = "torch_varlen"
_registered: list[bool] = []


def register() -> str:
    """Register the attention function once per process; returns its attn_implementation name."""
    if _registered:
        return NAME
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, flash_attention_mask

    AttentionInterface.register(NAME, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, flash_attention_mask)
    _registered.append(True)
    return NAME


def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    import torch

    if kwargs.get("cu_seq_lens_q") is not None:  # given by TRL's padding-free collator
        cu, longest = kwargs["cu_seq_lens_q"], int(kwargs["max_length_q"])
    else:  # derived from position ids that restart at 0 for each packed sequence
        from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

        (cu, _), (longest, _) = prepare_fa_kwargs_from_position_ids(kwargs["position_ids"])
        longest = int(longest)
    batch, heads, tokens, dim = query.shape
    q, k, v = (x.transpose(1, 2).reshape(batch * tokens, x.shape[1], dim) for x in (query, key, value))
    if query.is_cuda:
        from torch.nn.attention.varlen import varlen_attn

        gqa: dict[str, Any] = {"enable_gqa": True} if "enable_gqa" in inspect.signature(varlen_attn).parameters else {}
        # without return_aux, varlen_attn returns the output alone (never the (output, aux) pair)
        out = cast(torch.Tensor, varlen_attn(q, k, v, cu, cu, longest, longest, scale=scaling, window_size=(-1, 0),
                                             **gqa))
    else:
        bounds = cu.tolist()
        out = torch.cat([torch.nn.functional.scaled_dot_product_attention(
            q[s:e].transpose(0, 1), k[s:e].transpose(0, 1), v[s:e].transpose(0, 1), is_causal=True, scale=scaling,
            enable_gqa=q.shape[1] != k.shape[1]).transpose(0, 1) for s, e in zip(bounds, bounds[1:])])
    return out.reshape(batch, tokens, heads, dim), None


def available_without_import() -> bool:
    """Whether the installed torch has varlen_attn (2.11+), read from package metadata (no torch import)."""
    from importlib import metadata

    try:
        major, minor = (int(part) for part in metadata.version("torch").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (2, 11)
