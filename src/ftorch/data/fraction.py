"""Nested, seeded subsets of a training file (data.train_fraction): one seeded order of the examples, and a
fraction takes its first ceil(fraction × n), so every smaller fraction's subset lies inside every larger one's.
A learning curve built on them measures the data size, not which examples happened to be drawn."""

from __future__ import annotations

import math
import random
from dataclasses import replace

from .checks import ChatFile


def nested_indices(n: int, fraction: float, seed: int) -> list[int]:
    """The indices (in file order) of the examples a fraction keeps; at least one when n > 0."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must lie in (0, 1], not {fraction}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    keep = min(n, max(1 if n else 0, math.ceil(fraction * n - 1e-9)))
    return sorted(order[:keep])


def subset(chat: ChatFile, fraction: float, seed: int) -> ChatFile:
    """The file's examples (and their line numbers) that the fraction keeps; the file itself when it is 1."""
    if fraction >= 1.0:
        return chat
    kept = nested_indices(len(chat.examples), fraction, seed)
    return replace(chat, examples=[chat.examples[i] for i in kept], lines=[chat.lines[i] for i in kept])
