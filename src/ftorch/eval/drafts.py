"""Drafted decoding for the batched greedy decoder (eval/local.py's _greedy): a reply is guessed from earlier
answers to the same prompt (the answer cache's: another adapter's on the same base model, as a sweep's earlier
trials, or the base model's own), and the model checks a guess of k tokens in one forward pass instead of k
decoding steps. Greedy verification keeps a guessed token only where it is the token the model picks itself, so
the reply is the model's own greedy reply (up to floating-point reduction order, as with any change of batch);
a wrong guess costs only the compute of the tokens it carried. This is prompt-lookup (retrieval-based)
speculative decoding with the earlier answers as the corpus.

A row's guess is the rest of a candidate whose beginning the reply so far is, else what follows the reply's last
NGRAM_SIZES tokens in a candidate. How many guessed tokens a step carries is a cost model's choice (step_width):
every row carries that many columns, kept or not, so the width must pay for itself in accepted tokens, each
worth a decoding step of its row.
"""

from __future__ import annotations

NGRAM_SIZES = (3, 2)  # the reply's last tokens looked up in the candidates, longest first
MAX_GUESS = 16  # tokens a step may carry after a row's own
# The cost model, in milliseconds, measured on SmolLM2-135M in float32 on 2 CPU cores (bench/drafted_decoding.py):
# a decoding step costs STEP_COST plus ROW_STEP_COST a row, and every guessed token a step carries costs
# TOKEN_COST a row (its arithmetic, the output layer's included). Only their ratios matter: a larger model scales
# all three. A guess pays where a row's tokens are accepted more often than TOKEN_COST / (ROW_STEP_COST +
# STEP_COST / rows): about half the time in a batch of 72 rows, a tenth of the time in a batch of 4.
STEP_COST, ROW_STEP_COST, TOKEN_COST = 40.0, 1.55, 1.1
PRIOR_RATE, PRIOR_WEIGHT = 0.8, 4  # a guessed token's chance of being accepted, before any is checked


class RowDrafts:
    """One row's candidates (token ids of earlier replies, each ending with the stop token) and its guess length."""

    def __init__(self, candidates: list[list[int]]):
        self.candidates = [c for c in candidates if c]
        self.accepted = 0  # guessed tokens the model picked itself
        self.rejected = 0  # guesses cut short by a token it did not pick
        self.aligned = list(range(len(self.candidates)))  # candidates the reply so far is the beginning of
        self.seen = 0  # reply tokens checked against `aligned`
        self.index: dict[tuple[int, ...], list[tuple[int, int]]] = {}  # n-gram -> (candidate, what follows it)
        for number, tokens in enumerate(self.candidates):
            for n in NGRAM_SIZES:
                for start in range(len(tokens) - n):
                    self.index.setdefault(tuple(tokens[start:start + n]), []).append((number, start + n))
        self.cursor = (0, 0)  # the candidate and position the last looked-up guess began at

    def guess(self, reply: list[int], room: int) -> list[int]:
        """Up to min(MAX_GUESS, room) tokens guessed to follow `reply` (the row's tokens so far); [] when no
        candidate fits."""
        limit = min(MAX_GUESS, room)
        if limit <= 0 or not self.candidates:
            return []
        self._align(reply)
        for number in self.aligned:
            tokens = self.candidates[number]
            if len(tokens) > len(reply):
                return tokens[len(reply):len(reply) + limit]
        for n in NGRAM_SIZES:
            found = self.index.get(tuple(reply[-n:])) if len(reply) >= n else None
            if found:  # the first occurrence after where the last guess began, else the first
                number, start = next((f for f in found if f[0] == self.cursor[0] and f[1] > self.cursor[1]),
                                     found[0])
                self.cursor = (number, start)
                return self.candidates[number][start:start + limit]
        return []

    def _align(self, reply: list[int]) -> None:
        if self.aligned and len(reply) > self.seen:
            new = reply[self.seen:]
            self.aligned = [n for n in self.aligned if self.candidates[n][self.seen:len(reply)] == new]
        self.seen = len(reply)

    def checked(self, guessed: int, accepted: int) -> None:
        """The outcome of a guess of `guessed` tokens: the first `accepted` were the model's own."""
        self.accepted += accepted
        self.rejected += accepted < guessed

    def rate(self, prior: float) -> float:
        """The chance that a guessed token is accepted once those before it were: accepted tokens over accepted
        tokens and rejections (each guess ends in at most one), shrunk towards `prior`."""
        return (self.accepted + PRIOR_WEIGHT * prior) / (self.accepted + self.rejected + PRIOR_WEIGHT)


class BatchDrafts:
    """The drafts of a decoding batch's prompts (RowDrafts by prompt index) and the next step's guesses."""

    def __init__(self, drafts: list[list[list[int]]]):
        self.rows = [RowDrafts(d) for d in drafts]

    def checked(self, prompt: int, guessed: int, accepted: int) -> None:
        self.rows[prompt].checked(guessed, accepted)

    def next_step(self, prompts: list[int], replies: list[list[int] | None], rooms: list[int]
                  ) -> tuple[list[list[int]], int]:
        """The guesses the next step's rows carry (`prompts`: each row's prompt index; `replies`: its tokens so
        far, None for a finished row; `rooms`: the tokens it may still add after its own) and the step's width:
        step_width, each row's rate shrunk towards the call's rate so far."""
        guesses = [[] if reply is None else self.rows[i].guess(reply, room)
                   for i, reply, room in zip(prompts, replies, rooms)]
        accepted = sum(row.accepted for row in self.rows)
        prior = (accepted + PRIOR_WEIGHT * PRIOR_RATE) / (accepted + sum(row.rejected for row in self.rows)
                                                          + PRIOR_WEIGHT)
        live = [r for r, reply in enumerate(replies) if reply is not None]
        width = step_width([guesses[r] for r in live], [self.rows[prompts[r]].rate(prior) for r in live])
        return [g[:width] for g in guesses], width


def step_width(guesses: list[list[int]], rates: list[float]) -> int:
    """How many guessed tokens every row of a step carries (shorter guesses padded, longer ones cut): the width
    whose expected accepted tokens (a row's k-th guessed token is accepted with chance rate**k) most exceed
    what carrying it costs, in accepted tokens' worth of decoding steps; 0 when no width pays."""
    rows = len(guesses)
    if not rows or not any(guesses):
        return 0
    price = TOKEN_COST / (ROW_STEP_COST + STEP_COST / rows)  # a carried column, in accepted tokens, per row
    best, best_gain, gain = 0, 0.0, 0.0
    for width in range(1, max(len(g) for g in guesses) + 1):
        gain += sum(rate ** width for g, rate in zip(guesses, rates) if len(g) >= width) - price * rows
        if gain > best_gain:
            best, best_gain = width, gain
    return best


def encode(tokenizer, replies: list[str], stop: int) -> list[list[int]]:
    """Earlier replies as the token ids the model would have produced for them, each followed by `stop`."""
    return [tokenizer(text, add_special_tokens=False)["input_ids"] + [stop] for text in replies if text]
