"""Suspect ranking (data/suspects.py) on synthetic signals, the suspects file, and the review page's order."""

from __future__ import annotations

import json

import pytest

from ftorch.data.profile import exact_key
from ftorch.data.suspects import (
    Signals,
    percentiles,
    precision_recall,
    rank,
    read,
    write,
)
from ftorch.data.tokens import counter_for
from ftorch.errors import DataError
from ftorch.review.data_view import DataReview

from conftest import chat


def _signal(line: int, loss: float, agreement: float | None, label: str = "x", answer: str | None = "x") -> Signals:
    return Signals(line, f"h{line}", f"prompt {line}", label, answer, loss, agreement)


def test_percentiles_share_ties_and_put_nan_last():
    assert percentiles([3.0, 1.0, 2.0]) == [1.0, 0.0, 0.5]
    assert percentiles([1.0, 1.0, 5.0]) == [0.25, 0.25, 1.0]
    assert percentiles([float("nan"), 0.0]) == [1.0, 0.0]
    assert percentiles([7.0]) == [1.0]


def test_disagreement_then_loss_ranks_the_planted_errors_first():
    signals = [_signal(n, loss=0.1 + n / 1000, agreement=1.0) for n in range(1, 21)]
    signals[4] = _signal(5, loss=0.05, agreement=0.0, label="wrong", answer="right")  # disagrees, low loss
    signals[9] = _signal(10, loss=3.0, agreement=1.0)  # agrees, but the label surprises the model
    signals[14] = _signal(15, loss=2.0, agreement=0.6)  # both
    ranked = rank(signals)
    assert [s.line for s in ranked[:3]] == [15, 10, 5]  # 10 and 5 tie at 0.5: the higher loss first
    assert ranked[0].rank == 1 and ranked[0].score == pytest.approx(0.5 * 0.4 + 0.5 * 18 / 19)
    assert ranked[2].answer == "right" and ranked[2].label == "wrong" and ranked[2].disagreement == 1.0
    assert [s.line for s in rank(signals, "loss")[:2]] == [10, 15]
    assert [s.line for s in rank(signals, "disagreement")[:2]] == [5, 15]


def test_an_example_without_an_answer_ranks_by_loss_alone():
    signals = [_signal(1, 1.0, None, answer=None), _signal(2, 0.5, 1.0)]
    assert [s.line for s in rank(signals)] == [1, 2] and rank(signals)[0].score == 1.0
    with pytest.raises(ValueError):
        rank(signals, "disagreement")


def test_precision_and_recall_of_the_top_share():
    ranked = list(range(1, 101))  # lines 1..100, best suspect first
    planted = {1, 2, 3, 50, 99}
    assert precision_recall(ranked, planted, 0.1) == (0.3, 0.6)
    assert precision_recall(ranked, planted, 0.5) == (0.08, 0.8)


def test_the_suspects_file_round_trips_and_names_its_training_file(tmp_path):
    ranked = rank([_signal(1, 0.1, 1.0), _signal(2, 2.0, 0.0, answer="other")])
    write(tmp_path / "suspects.jsonl", ranked, tmp_path / "train.jsonl", "both")
    source, rows = read(tmp_path)
    assert source == tmp_path / "train.jsonl" and [r["line"] for r in rows] == [2, 1]
    assert rows[0]["answer"] == "other" and rows[0]["rank"] == 1
    with pytest.raises(DataError, match="no suspects for this run yet"):
        read(tmp_path / "elsewhere")


def test_the_review_page_follows_the_suspects_then_the_file(chat_jsonl):
    rows = [chat(f"question {n}", f"answer {n}", "be brief") for n in range(1, 7)]
    path = chat_jsonl(rows, "train.jsonl")
    review = DataReview.open(path, "chat", counter_for(None))
    examples = [json.loads(line) for line in path.read_text().splitlines()]
    suspects = [{"line": line, "hash": exact_key(examples[line - 1]), "rank": n, "score": 1.0 - n / 10,
                 "answer": f"model {line}"} for n, line in enumerate((5, 2), start=1)]
    suspects.append({"line": 3, "hash": "not this example any more", "rank": 3, "score": 0.1, "answer": None})
    assert review.order_by_suspects(suspects) == 2
    page = review.page(0, 10)
    assert [item["line"] for item in page["items"]] == [5, 2, 1, 3, 4, 6]
    assert page["items"][0]["suspect"]["rank"] == 1 and page["items"][0]["suspect"]["answer"] == "model 5"
    assert page["items"][2]["suspect"] is None
    assert review.meta()["order"] == "suspects" and review.meta()["suspects"] == 2
    assert review.resume_line() == 5  # nothing decided: the most suspect example first
    review.decide(5, review.index.hashes[5], "reject")
    assert review.resume_line() == 2  # the next suspect, not the next line of the file
    assert [i["line"] for i in review.page(0, 10, decision="undecided")["items"]] == [2, 1, 3, 4, 6]
