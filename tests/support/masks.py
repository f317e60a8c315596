"""Reading a training mask back as text."""

from __future__ import annotations


def runs(tok, ids: list[int], mask: list[int]) -> list[str]:
    """The decoded maximal runs of masked tokens."""
    out, current = [], []
    for token, keep in zip(ids, mask):
        if keep:
            current.append(token)
        elif current:
            out.append(tok.decode(current))
            current = []
    if current:
        out.append(tok.decode(current))
    return out
