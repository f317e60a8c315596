"""The decoder's KV cache (eval/kv_cache.py) and how finished rows leave a batch (eval/local.py, _greedy): a layer
that grows in place holds exactly what transformers' concatenating layer holds, through growth and row selection;
replies are token for token the same whether the cache grows in place or not, and however late finished rows
are shed, with and without a constraint."""

from __future__ import annotations

import pytest

from ftorch.eval.constrained import Constraint

from support.decoders import varied_tiny_model

REQUESTS = ["Please cancel Monday's standup", "schedule lunch with Ana on Friday", "move it", "Could you put the "
            "quarterly review on Monday morning?", "cancel", "Friday: gym", "I need the vet visit moved to Monday"]
ASK = [[{"role": "user", "content": r}] for r in REQUESTS]


def test_a_growing_layer_holds_what_a_concatenating_layer_holds():
    import torch
    from transformers.cache_utils import DynamicLayer

    from ftorch.eval.kv_cache import ROOM, GrowingLayer

    growing, plain = GrowingLayer(), DynamicLayer()
    generator = torch.Generator().manual_seed(0)
    rows = torch.arange(5)
    for step, length in enumerate([7, 1, 1, ROOM, 1, 3]):  # a prefill, decoding steps, a step past the room
        keys, values = (torch.randn(len(rows), 2, length, 4, generator=generator) for _ in range(2))
        got = growing.update(keys, values)
        expected = plain.update(keys, values)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))
        assert growing.get_seq_length() == plain.get_seq_length()
        if step in (2, 4):  # rows whose replies ended leave the batch
            rows = torch.tensor([0, 2, 3]) if step == 2 else torch.tensor([1, 2])
            growing.batch_select_indices(rows)
            plain.batch_select_indices(rows)
            assert torch.equal(growing.keys, plain.keys) and torch.equal(growing.values, plain.values)
    assert growing.key_buffer.shape[-2] > growing.get_seq_length()  # room kept for what comes next


@pytest.fixture(scope="module")
def tiny(offline_env):
    """The tiny model, its replies varied and ending at different steps (support/decoders.py)."""
    return varied_tiny_model()


def _replies(model, grow: bool, shed: float, **generate) -> list[str]:
    model.grow_cache_in_place, model.shed_fraction = grow, shed
    try:
        return model.generate(ASK, batch_size=len(ASK), **generate)
    finally:
        model.grow_cache_in_place, model.shed_fraction = True, 0.25


@pytest.mark.parametrize("constrained", [False, True])
def test_replies_do_not_depend_on_the_cache_layout_or_when_rows_are_shed(tiny, constrained):
    extra = {"constraint": Constraint("labels", labels=("cancel", "move the meeting", "schedule", "move"))} \
        if constrained else {}
    reference = _replies(tiny, False, 0.0, max_new_tokens=12, **extra)
    assert len(set(reference)) > 2 and len({len(r) for r in reference}) > 1  # varied replies, ending apart
    for grow, shed in ((True, 0.0), (True, 0.25), (True, 0.5), (True, 1.0), (False, 0.5)):
        assert _replies(tiny, grow, shed, max_new_tokens=12, **extra) == reference, (grow, shed)
