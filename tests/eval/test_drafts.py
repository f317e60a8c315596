"""Drafted decoding (eval/drafts.py, eval/local.py's _greedy): guesses from earlier replies are checked several
tokens at a time and kept only where the model picks them itself, so the replies are the undrafted replies
whatever the drafts are: exact, wrong, half right, or none. Exact drafts take fewer forward passes."""

from __future__ import annotations

import pytest

from ftorch.eval.drafts import MAX_GUESS, RowDrafts, encode, step_width

from support.decoders import varied_tiny_model
from support.real_model import load_smollm2

STOP = 99


def test_a_reply_that_begins_a_candidate_is_guessed_its_continuation():
    candidates = [[1, 2, 3, 4, 5, STOP], [1, 7, 8, STOP]]
    drafts = RowDrafts(candidates)
    assert drafts.guess([], room=10) == [1, 2, 3, 4, 5, STOP]
    assert drafts.guess([1, 7], room=10) == [8, STOP]  # the first candidate no longer fits from the start
    assert RowDrafts(candidates).guess([1, 2], room=2) == [3, 4]  # room caps every guess
    assert RowDrafts(candidates).guess([1, 2], room=0) == []


def test_after_a_divergence_the_reply_is_found_again_by_its_last_tokens():
    drafts = RowDrafts([[10, 11, 12, 13, 14, 15, STOP]])
    assert drafts.guess([10, 99, 12, 13], room=10) == [14, 15, STOP]  # the bigram (12, 13) found
    assert drafts.guess([42, 43], room=10) == []  # nothing of it in the candidate


def test_a_repeated_ngram_continues_from_where_the_last_guess_began():
    drafts = RowDrafts([[5, 6, 1, 5, 6, 2, 5, 6, 3, STOP]])
    assert drafts.guess([0, 5, 6], room=1) == [1]  # the first occurrence
    assert drafts.guess([0, 5, 6, 1, 5, 6], room=1) == [2]  # the next one, not the first again
    assert drafts.guess([0, 5, 6, 1, 5, 6, 2, 5, 6], room=1) == [3]


def test_a_rows_acceptance_rate_is_accepted_tokens_over_accepted_tokens_and_rejections():
    drafts = RowDrafts([list(range(40)) + [STOP]])
    assert len(drafts.guess([], room=100)) == MAX_GUESS
    assert drafts.rate(prior=0.8) == pytest.approx(0.8)  # nothing checked yet: the prior
    drafts.checked(8, 8)  # a guess accepted in full: no rejection
    drafts.checked(8, 3)  # three accepted, then one token the model did not pick
    drafts.checked(0, 0)  # no guess carried: nothing learnt
    assert (drafts.accepted, drafts.rejected) == (11, 1)
    assert drafts.rate(prior=0.5) == pytest.approx((11 + 4 * 0.5) / (11 + 1 + 4))


def test_a_step_carries_guesses_only_as_far_as_they_pay():
    assert step_width([], []) == 0
    assert step_width([[], []], [0.9, 0.9]) == 0
    sure = step_width([[1] * 16] * 40, [0.99] * 40)
    assert 8 <= sure <= 16  # nearly every guessed token accepted: a long step
    assert step_width([[1] * 16] * 40, [0.3] * 40) == 0  # rarely accepted: one token a row, as without drafts
    # half the rows without a guess pay for the width too: a wider step needs surer guesses
    assert step_width([[1] * 16] * 20 + [[]] * 20, [0.9] * 40) < step_width([[1] * 16] * 40, [0.9] * 40)
    # in a batch of few rows a step's fixed cost dominates: even unsure guesses pay
    assert step_width([[1] * 16] * 2, [0.5] * 2) > 0 == step_width([[1] * 16] * 72, [0.5] * 72)
    assert step_width([[1, 2]] * 4, [0.99] * 4) <= 2  # never wider than the longest guess


def test_earlier_replies_are_encoded_without_special_tokens_and_end_with_the_stop_token():
    model = varied_tiny_model()
    encoded = encode(model.tokenizer, ["hello there", ""], STOP)
    assert encoded == [model.tokenizer("hello there", add_special_tokens=False)["input_ids"] + [STOP]]


ASKS = [[{"role": "user", "content": text}] for text in
        ("Is red a colour?", "Name a fruit.", "Count to three please, slowly.", "Why?",
         "Tell me a story about the sea.", "List three prime numbers.")]


class Passes:
    """The shape of every forward pass's input ids."""

    def __init__(self, model):
        self.shapes: list = []
        self.hook = model.model.register_forward_pre_hook(
            lambda module, args, kwargs: self.shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)


@pytest.fixture(scope="module")
def decoder():
    """The tiny model, its prompts' token ids and its undrafted replies' (rows ending at different steps). Its
    replies do not survive decoding to text and encoding again, so drafts are given as token ids here."""
    model = varied_tiny_model()
    prompts = [model._encode(m) for m in ASKS]
    plain = model._greedy(prompts, 24, 0)
    assert len({len(r) for r in plain}) > 1, "the rows end at different steps"
    return model, prompts, plain


def _stopped(tokens: list[int], model) -> list[int]:
    return tokens + [model.tokenizer.eos_token_id]


@pytest.mark.parametrize("kind", ["exact", "wrong", "half right", "none", "several", "longer than the reply"])
def test_drafted_replies_are_the_undrafted_replies(decoder, kind):
    model, prompts, plain = decoder
    drafts = {"exact": [[_stopped(r, model)] for r in plain],
              "wrong": [[[7] * 30] for _ in plain],
              "half right": [[r[: len(r) // 2] + [7, 8, 9] + r[len(r) // 2:]] for r in plain],
              "none": [[] for _ in plain],
              "several": [[[7, 8], r[:3], _stopped(r, model)] for r in plain],
              "longer than the reply": [[r + [5] * 40] for r in plain]}[kind]
    assert model._greedy(prompts, 24, 0, drafts=drafts) == plain
    for size in (1, 4):  # batches of other sizes, rows shed as they finish
        batches = [model._greedy(prompts[i:i + size], 24, 0, drafts=drafts[i:i + size])
                   for i in range(0, len(prompts), size)]
        assert [r for batch in batches for r in batch] == plain


def test_exact_drafts_take_fewer_forward_passes(decoder):
    model, prompts, plain = decoder
    passes = Passes(model)
    try:
        model._greedy(prompts, 24, 0)
        undrafted = len(passes.shapes)
        passes.shapes.clear()
        model._greedy(prompts, 24, 0, drafts=[[_stopped(r, model)] for r in plain])
        assert len(passes.shapes) <= undrafted / 2
        assert any(width > 1 for _, width in passes.shapes[1:])  # steps that carried guesses
    finally:
        passes.hook.remove()


def test_the_cache_of_a_drafted_batch_holds_at_most_max_new_tokens_more_columns(decoder):
    model, prompts, plain = decoder
    passes = Passes(model)
    try:
        wrong = [[[t + 1 for t in r] * 3] for r in plain]  # every guess rejected: its columns stay, masked out
        model._greedy(prompts, 24, 0, drafts=wrong)
        assert sum(width for _, width in passes.shapes) <= max(len(p) for p in prompts) + 2 * 24
    finally:
        passes.hook.remove()


def test_generate_hands_the_decoder_the_drafts_as_token_ids_ending_with_the_stop_token(decoder, monkeypatch):
    model, _, _ = decoder
    seen = []
    greedy = model._greedy
    monkeypatch.setattr(model, "_greedy", lambda *a, **kw: seen.append(a[5]) or greedy(*a, **kw))
    model.generate(ASKS[:2], 6, 8, drafts=[["a reply"], []])
    eos = model.tokenizer.eos_token_id
    assert seen == [[[model.tokenizer("a reply", add_special_tokens=False)["input_ids"] + [eos]], []]] or \
        seen == [[[], [model.tokenizer("a reply", add_special_tokens=False)["input_ids"] + [eos]]]]  # length order


def test_constrained_and_minimum_length_decoding_ignore_drafts(decoder):
    from ftorch.eval.constrained import Constraint

    model, _, _ = decoder
    labels = Constraint("labels", labels=("yes", "no"))
    wrong = [["maybe"] for _ in ASKS]
    assert model.generate(ASKS, 8, 4, constraint=labels, drafts=wrong) == model.generate(ASKS, 8, 4, constraint=labels)
    assert model.generate(ASKS, 12, 4, min_new_tokens=6, drafts=wrong) == model.generate(ASKS, 12, 4,
                                                                                          min_new_tokens=6)


@pytest.fixture(scope="module")
def smollm2(offline_env):
    return load_smollm2()


@pytest.mark.slow
def test_smollm2_replies_drafted_from_earlier_replies_text_are_its_own(smollm2):
    """On the real model, drafts as an evaluation gives them: earlier replies' text (another prompt's reply, a
    reply cut and changed, the reply itself). The replies are the undrafted ones; the exact ones take far fewer
    passes."""
    asks = [[{"role": "user", "content": text}] for text in
            ("Name three colours.", "What is 2 + 2? Answer with the number only.", "Say hello in French.",
             "Write one sentence about the sea.")]
    plain = smollm2.generate(asks, 32, 8)
    passes = Passes(smollm2)
    try:
        smollm2.generate(asks, 32, 8)
        undrafted = len(passes.shapes)
        passes.shapes.clear()
        assert smollm2.generate(asks, 32, 8, drafts=[[r] for r in plain]) == plain
        assert len(passes.shapes) < undrafted / 2
        changed = [[plain[(i + 1) % len(plain)], r[: len(r) // 2] + " or not at all."] for i, r in enumerate(plain)]
        assert smollm2.generate(asks, 32, 8, drafts=changed) == plain
    finally:
        passes.hook.remove()
