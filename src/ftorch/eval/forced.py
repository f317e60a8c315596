"""A greedy reply read off a teacher-forced pass. The held-out loss runs the model over each conversation with its
reference answer (eval/local.py's scored_answers); the same pass says, at every reference token, which token the
model would have picked itself. While those picks are the reference's tokens, greedy decoding would have produced
exactly them, so the model's own reply begins with the reference tokens it agrees with, then its own pick where it
first disagrees. When that beginning ends in a stop token (or fills max_new_tokens) it is the whole reply, with no
decoding at all; otherwise decoding starts after it (LocalModel.generate(starts=)) instead of from the prompt.
A fine-tuned model that learned its task reproduces most references: on the quickstart, 29 of 40.

The reply is the model's greedy reply up to floating-point reduction order, as for any change of batch: the pass
is batched and padded as the loss's, not as decoding."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ForcedStart:
    """The beginning of a model's greedy reply: the prompt's token ids (the conversation before its last assistant
    turn, as the chat template renders it for generation), the reply's first tokens, and the seconds its latency
    counts for the pass: its row's share of the pass's time where the pass gave the whole reply, else 0 (a reply
    decoded on from its beginning is timed by that decoding, its prompt prefilled again)."""

    prompt: tuple[int, ...]
    tokens: tuple[int, ...]
    seconds: float = 0.0

    def complete(self, stop: Collection[int], max_new_tokens: int) -> bool:
        """Whether the tokens are the whole reply: they end in a stop token, or fill max_new_tokens."""
        return bool(self.tokens) and (self.tokens[-1] in stop or len(self.tokens) >= max_new_tokens)


def last_turn(labels: list[int]) -> tuple[int, int] | None:
    """[start, end) of the last run of labelled positions (labels -100 elsewhere): the final assistant turn's
    tokens; None when nothing is labelled."""
    end = next((j + 1 for j in range(len(labels) - 1, -1, -1) if labels[j] != -100), None)
    if end is None:
        return None
    start = end - 1
    while start > 0 and labels[start - 1] != -100:
        start -= 1
    return start, end


def forced_start(ids: list[int], turn: tuple[int, int], picked: list[int], stop: Collection[int],
                 max_new_tokens: int, seconds: float = 0.0) -> ForcedStart:
    """The reply's beginning for a conversation `ids` whose final assistant turn is ids[turn[0]:turn[1]];
    picked[k] is the model's greedy pick at the position that predicts ids[turn[0] + k]."""
    start, end = turn
    tokens: list[int] = []
    for k in range(end - start):
        tokens.append(picked[k])
        if picked[k] != ids[start + k] or picked[k] in stop or len(tokens) >= max_new_tokens:
            break
    found = ForcedStart(tuple(ids[:start]), tuple(tokens))
    return replace(found, seconds=seconds) if found.complete(stop, max_new_tokens) else found
