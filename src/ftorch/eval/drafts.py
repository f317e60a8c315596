"""Drafted decoding for the batched greedy decoder (eval/local.py's _greedy): a reply is guessed from earlier
answers to the same prompt (the answer cache's: another adapter's on the same base model, as a sweep's earlier
trials, or the base model's own), and the model checks a guess of k tokens in one forward pass instead of k
decoding steps. Greedy verification keeps a guessed token only where it is the token the model picks itself, so
the reply is the model's own greedy reply (up to floating-point reduction order, as with any change of batch);
a wrong guess costs only the compute of the tokens it carried. This is prompt-lookup (retrieval-based)
speculative decoding with the earlier answers as the corpus.

A row's guess is the rest of a candidate whose beginning the reply so far is, else what follows the reply's last
NGRAM_SIZES tokens in a candidate. Its length adapts as in transformers' assisted generation: two tokens longer
after a guess accepted in full, as long as the accepted part after one that was not."""

from __future__ import annotations

NGRAM_SIZES = (3, 2)  # the reply's last tokens looked up in the candidates, longest first
FIRST_GUESS = 8  # tokens a row's first guess may carry
MAX_GUESS = 16


class RowDrafts:
    """One row's candidates (token ids of earlier replies, each ending with the stop token) and its guess length."""

    def __init__(self, candidates: list[list[int]]):
        self.candidates = [c for c in candidates if c]
        self.size = FIRST_GUESS
        self.aligned = list(range(len(self.candidates)))  # candidates the reply so far is the beginning of
        self.seen = 0  # reply tokens checked against `aligned`
        self.index: dict[tuple[int, ...], list[tuple[int, int]]] = {}  # n-gram -> (candidate, what follows it)
        for number, tokens in enumerate(self.candidates):
            for n in NGRAM_SIZES:
                for start in range(len(tokens) - n):
                    self.index.setdefault(tuple(tokens[start:start + n]), []).append((number, start + n))
        self.cursor = (0, 0)  # the candidate and position the last looked-up guess began at

    def guess(self, reply: list[int], room: int) -> list[int]:
        """Up to min(size, room) tokens guessed to follow `reply` (the row's tokens so far); [] when no candidate
        fits."""
        limit = min(self.size, room)
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
        if guessed:
            self.size = min(MAX_GUESS, self.size + 2) if accepted == guessed else max(1, accepted)


def step_width(guesses: list[list[int]]) -> int:
    """The guessed tokens every row of a step carries (shorter guesses padded, longer ones cut): the most that at
    least half of the rows fill, so padding stays under half of what a step carries, and a step whose rows mostly
    have no guess decodes one token as usual."""
    lengths = sorted((len(g) for g in guesses), reverse=True)
    return lengths[(len(lengths) + 1) // 2 - 1] if lengths else 0


def encode(tokenizer, replies: list[str], stop: int) -> list[list[int]]:
    """Earlier replies as the token ids the model would have produced for them, each followed by `stop`."""
    return [tokenizer(text, add_special_tokens=False)["input_ids"] + [stop] for text in replies if text]
