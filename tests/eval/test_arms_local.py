"""Constrained decoding in the batched greedy decoder, on the tiny random model: replies stay in the label set or
conform to the schema, and a batch gives each row the reply it gets alone (the mask follows rows as finished
ones leave the batch)."""

import json

import pytest

from ftorch.config.schema import TinyModel
from ftorch.eval.constrained import Constraint

SCHEMA = {"type": "object", "required": ["action", "day"], "additionalProperties": False,
          "properties": {"action": {"enum": ["schedule", "cancel", "move"]},
                         "day": {"enum": ["Monday", "Friday"]}}}


@pytest.fixture(scope="module")
def tiny(offline_env):
    from ftorch.eval.local import LocalModel
    from ftorch.tiny import ensure_tiny_model

    path = ensure_tiny_model(TinyModel(hidden_size=64, intermediate_size=128, num_heads=2))
    return LocalModel(str(path), None, device="cpu")


def conversations(n):
    return [[{"role": "user", "content": f"Request number {i}: " + "please " * i}] for i in range(n)]


def test_replies_stay_in_the_label_set_and_batches_match_single_rows(tiny):
    labels = Constraint("labels", labels=("cancel", "move", "schedule"))
    batched = tiny.generate(conversations(5), max_new_tokens=12, batch_size=5, constraint=labels)
    assert all(reply in labels.labels for reply in batched)
    alone = [tiny.generate([c], max_new_tokens=12, batch_size=1, constraint=labels)[0] for c in conversations(5)]
    assert batched == alone
    free = tiny.generate(conversations(5), max_new_tokens=12, batch_size=5)
    assert not all(reply in labels.labels for reply in free)  # the random model does not do this on its own


def test_replies_conform_to_the_json_schema(tiny):
    import jsonschema

    replies = tiny.generate(conversations(4), max_new_tokens=40, batch_size=4,
                            constraint=Constraint("json_schema", schema=SCHEMA))
    for reply in replies:
        jsonschema.validate(json.loads(reply), SCHEMA)
