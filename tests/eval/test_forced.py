"""Replies read off the held-out loss's teacher-forced pass (eval/forced.py, LocalModel.scored_answers and
generate(starts=)): the beginning of the model's greedy reply is the reference tokens it picks itself, then its own
pick; a beginning that ends in a stop token is the whole reply, with no decoding. Whatever the references are
(the model's own replies, wrong ones, half right ones), the replies are those of plain decoding, and the losses
those of the loss alone."""

from __future__ import annotations

import pytest

from ftorch.eval.forced import ForcedStart, forced_start, last_turn

from support.decoders import varied_tiny_model
from support.real_model import load_smollm2

STOP = {99}
IDS = [1, 2, 3, 10, 11, 12, 99, 5]  # a prompt (1, 2, 3), the assistant's turn (10, 11, 12, 99), a trailing token
LABELS = [-100, -100, -100, 10, 11, 12, 99, -100]


def test_the_last_turn_is_the_last_run_of_labelled_positions():
    assert last_turn(LABELS) == (3, 7)
    assert last_turn([-100, 4, 5, -100, 7, -100]) == (4, 5)  # an earlier assistant turn is not the reply
    assert last_turn([4, 5]) == (0, 2)
    assert last_turn([-100, -100]) is None


def test_a_reference_the_model_picks_to_its_stop_token_is_the_whole_reply():
    start = forced_start(IDS, (3, 7), [10, 11, 12, 99], STOP, 48, seconds=0.5)
    assert start == ForcedStart((1, 2, 3), (10, 11, 12, 99), seconds=0.5)  # its latency: its share of the pass
    assert start.complete(STOP, 48)


def test_the_beginning_ends_with_the_models_own_pick_where_it_first_disagrees():
    start = forced_start(IDS, (3, 7), [10, 42, 12, 99], STOP, 48, seconds=0.5)
    assert start.tokens == (10, 42) and not start.complete(STOP, 48)
    assert start.seconds == 0.0  # decoded on from here: timed by its decoding
    stopped = forced_start(IDS, (3, 7), [10, 99, 7, 7], STOP, 48)  # its own pick ends the reply early
    assert stopped.tokens == (10, 99) and stopped.complete(STOP, 48)


def test_a_reply_cut_by_max_new_tokens_is_complete_at_that_length():
    start = forced_start(IDS, (3, 7), [10, 11, 12, 99], STOP, 2)
    assert start.tokens == (10, 11) and start.complete(STOP, 2)


def test_a_turn_without_its_stop_token_labelled_is_only_a_beginning():
    start = forced_start([1, 2, 10, 11], (2, 4), [10, 11], STOP, 48)
    assert start.tokens == (10, 11) and not start.complete(STOP, 48)  # what follows 11 is not known


ASKS = [[{"role": "user", "content": text}] for text in
        ("Is red a colour?", "Name a fruit.", "Count to three please, slowly.", "Why?",
         "Tell me a story about the sea.", "List three prime numbers.")]


class Passes:
    def __init__(self, model):
        self.count = 0
        self.hook = model.model.register_forward_pre_hook(lambda *args: setattr(self, "count", self.count + 1))


@pytest.fixture(scope="module")
def decoder():
    model = varied_tiny_model()
    return model, model.generate(ASKS, 16, 8)


def test_a_complete_beginning_is_the_reply_with_no_forward_pass(decoder):
    model, plain = decoder
    prompts = [model._encode(m) for m in ASKS]
    replies = model._greedy(prompts, 16, 0)
    eos = model.tokenizer.eos_token_id
    starts = [ForcedStart(tuple(p), tuple(r + [eos] if len(r) < 16 else r)) for p, r in zip(prompts, replies)]
    passes = Passes(model)
    try:
        assert model.generate(ASKS, 16, 8, starts=starts) == plain
        assert passes.count == 0
        halves = [ForcedStart(tuple(p), tuple(r[: len(r) // 2])) for p, r in zip(prompts, replies)]
        assert model.generate(ASKS, 16, 8, starts=halves) == plain
    finally:
        passes.hook.remove()


def test_a_beginning_for_another_prompt_is_ignored(decoder):
    model, plain = decoder
    other = [ForcedStart((1, 2, 3), (7, 7, 7, model.tokenizer.eos_token_id)) for _ in ASKS]
    assert model.generate(ASKS, 16, 8, starts=other) == plain


def test_constrained_and_minimum_length_decoding_ignore_beginnings(decoder):
    from ftorch.eval.constrained import Constraint

    model, _ = decoder
    prompts = [model._encode(m) for m in ASKS]
    wrong = [ForcedStart(tuple(p), (7, model.tokenizer.eos_token_id)) for p in prompts]
    labels = Constraint("labels", labels=("yes", "no"))
    assert model.generate(ASKS, 8, 4, constraint=labels, starts=wrong) == model.generate(ASKS, 8, 4,
                                                                                        constraint=labels)
    assert model.generate(ASKS, 12, 4, min_new_tokens=6, starts=wrong) == model.generate(ASKS, 12, 4,
                                                                                          min_new_tokens=6)


@pytest.mark.parametrize("kind", ["own replies", "wrong", "half right"])
def test_replies_begun_from_the_loss_pass_are_the_plain_replies_and_the_losses_unchanged(decoder, kind):
    model, plain = decoder
    references = {"own replies": plain, "wrong": ["no idea at all"] * len(plain),
                  "half right": [r[: len(r) // 2] + " or so" for r in plain]}[kind]
    full = [m + [{"role": "assistant", "content": r or "-"}] for m, r in zip(ASKS, references)]
    losses, starts = model.scored_answers(full, 4, 16)
    assert losses == model.assistant_token_losses(full, 4)  # the same pass
    assert all(s is not None and s.tokens for s in starts)
    assert model.generate(ASKS, 16, 8, starts=starts) == plain
    assert model.scored_answers(full, 4)[1] == [None] * len(full)  # without max_new_tokens: losses only
    other = [[{"role": "system", "content": "Be brief."}] + m for m in ASKS[:2]] + ASKS[2:]
    kept = model.scored_answers(full, 4, 16, prompts=other)[1]  # beginnings only for prompts rendered alike
    assert kept[:2] == [None, None]
    assert [(k.prompt, k.tokens) for k in kept[2:] if k] == [(s.prompt, s.tokens) for s in starts[2:] if s]


@pytest.fixture(scope="module")
def smollm2(offline_env):
    return load_smollm2()


@pytest.mark.slow
def test_smollm2_replies_that_are_its_references_need_no_decoding(smollm2):
    """On the real model: references that are its own replies (text, as a dataset holds them) come out of the loss
    pass whole; references it does not follow begin its replies; either way the replies are its own."""
    asks = [[{"role": "user", "content": text}] for text in
            ("Name three colours.", "What is 2 + 2? Answer with the number only.", "Say hello in French.",
             "Write one sentence about the sea.")]
    plain = smollm2.generate(asks, 32, 8)
    own = [m + [{"role": "assistant", "content": r}] for m, r in zip(asks, plain)]
    _, starts = smollm2.scored_answers(own, 4, 32)
    assert sum(s.complete(smollm2.stop_ids(), 32) for s in starts) >= 3
    passes = Passes(smollm2)
    try:
        assert smollm2.generate(asks, 32, 8, starts=starts) == plain
        complete = all(s.complete(smollm2.stop_ids(), 32) for s in starts)
        assert passes.count == 0 or not complete
    finally:
        passes.hook.remove()
    other = [m + [{"role": "assistant", "content": "Blue, green and red, as far as I know."}] for m in asks]
    _, starts = smollm2.scored_answers(other, 4, 32)
    assert smollm2.generate(asks, 32, 8, starts=starts) == plain
