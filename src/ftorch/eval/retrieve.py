"""Lexical retrieval of training examples for the `retrieved` prompting arm: BM25 (the `bm25s` library) over
the user turns of the shot pool, offline. The same inputs give the same examples on any machine: ties in score
go to the earlier training example."""

from __future__ import annotations

Messages = list[dict]


def query_text(messages: Messages) -> str:
    """What an example is retrieved by: its user turns, joined."""
    return "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")


class Retriever:
    """BM25 over `documents`; `top(query, k)` gives the indices of the k best documents, best first."""

    def __init__(self, documents: list[str]):
        import bm25s
        from bm25s.tokenization import Tokenizer

        self.size = len(documents)
        self.tokenizer = Tokenizer(stopwords="en")
        corpus = self.tokenizer.tokenize(documents, return_as="tuple", show_progress=False)
        self.index = bm25s.BM25()
        self.index.index(corpus, show_progress=False)
        self.words = {i: w for w, i in self.tokenizer.get_vocab_dict().items()}

    def top(self, query: str, k: int) -> list[int]:
        if k <= 0 or self.size == 0:
            return []
        ids = self.tokenizer.tokenize([query], return_as="ids", update_vocab=False, show_progress=False)[0]
        words = [self.words[i] for i in ids if self.words.get(i)]  # unknown words map to the empty token
        scores = self.index.get_scores(words) if words else [0.0] * self.size
        ranked = sorted(range(self.size), key=lambda i: (-float(scores[i]), i))
        return ranked[:k]
