"""Shared prompt prefixes in the batched greedy decoder (eval/prefix.py, eval/local.py): prompts that start with
the same system prompt and few-shot examples prefill that prefix once, and the greedy replies are token for token
those of the unshared path: in batches, with rows finishing at different steps, and under a constraint. On the
tiny random model always; on the quickstart's real model (SmolLM2-135M-Instruct) when its wheel is installed."""

from __future__ import annotations

import json

import pytest

from ftorch.eval.constrained import Constraint
from ftorch.eval.prefix import common_prefix_length

from conftest import ROOT
from support.decoders import varied_tiny_model
from support.real_model import load_smollm2

SHOTS = [("Move my dentist appointment to Friday", '{"action": "move", "day": "Friday"}'),
         ("Cancel the team sync on Monday", '{"action": "cancel", "day": "Monday"}'),
         ("Book a haircut for Friday afternoon", '{"action": "schedule", "day": "Friday"}')]
REQUESTS = ["Please cancel Monday's standup", "schedule lunch with Ana on Friday", "move it", "Could you put the "
            "quarterly review on Monday morning, and tell the whole finance team about it as well?", "cancel",
            "Friday: gym", "I need the vet visit moved to Monday, since Friday is full"]


def few_shot(request: str, system: str = "You turn scheduling requests into one JSON object with the action "
                                         "and the day. Reply with the JSON object only, nothing else.") -> list:
    messages = [{"role": "system", "content": system}]
    for user, answer in SHOTS:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return messages + [{"role": "user", "content": request}]


class Recorder:
    """Counts the tokens each forward pass runs and keeps the token ids of every reply the decoder returns."""

    def __init__(self, model, monkeypatch):
        self.tokens, self.replies = 0, []
        self.hook = model.model.register_forward_pre_hook(self.count, with_kwargs=True)
        greedy = model._greedy
        monkeypatch.setattr(model, "_greedy", lambda *a, **kw: self.keep(greedy(*a, **kw)))

    def keep(self, replies):
        self.replies += replies
        return replies

    def count(self, module, args, kwargs):
        self.tokens += kwargs["input_ids"].numel()

    def run(self, model, share: bool, conversations, **generate):
        self.tokens, self.replies = 0, []
        model.share_prefix = share
        try:
            texts = model.generate(conversations, **generate)
        finally:
            model.share_prefix = True
        return texts, self.replies, self.tokens


def same_with_and_without(model, monkeypatch, conversations, shared_at_least: int = 40, **generate):
    """Generate both ways; assert identical token ids and texts and fewer tokens run; return the replies' ids."""
    recorder = Recorder(model, monkeypatch)
    plain_texts, plain_ids, plain_tokens = recorder.run(model, False, conversations, **generate)
    shared_texts, shared_ids, shared_tokens = recorder.run(model, True, conversations, **generate)
    recorder.hook.remove()
    assert shared_ids == plain_ids and shared_texts == plain_texts
    shared = common_prefix_length([model._encode(c) for c in conversations], model.min_prefix_saving)
    assert shared >= shared_at_least  # the system prompt and the shots
    batches = -(-len(conversations) // generate["batch_size"])
    assert plain_tokens - shared_tokens >= shared * (len(conversations) - 1) - batches  # the prefix ran once
    return plain_ids


def test_the_common_prefix_is_general_worth_its_pass_and_leaves_every_prompt_a_token():
    assert common_prefix_length([[1, 2, 3, 4, 5], [1, 2, 3, 9], [1, 2, 3, 4]], minimum_saved=2) == 3
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 3, 4]], minimum_saved=2) == 3  # identical prompts keep one
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5]], minimum_saved=4) == 0  # saves 3 tokens: not worth it
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5]] * 2, minimum_saved=4) == 3  # 3 rows x 3 tokens saved
    assert common_prefix_length([[1, 2, 3, 4]], minimum_saved=1) == 0  # one prompt: nothing to share
    assert common_prefix_length([[7, 2, 3], [1, 2, 3]], minimum_saved=0) == 0


@pytest.fixture(scope="module")
def tiny(offline_env):
    """The tiny model, its replies varied and ending at different steps (support/decoders.py)."""
    return varied_tiny_model()


def test_tiny_model_batches_give_the_unshared_replies_token_for_token(tiny, monkeypatch):
    conversations = [few_shot(r) for r in REQUESTS]
    ids = same_with_and_without(tiny, monkeypatch, conversations, max_new_tokens=16, batch_size=3)
    assert len({len(reply) for reply in ids}) > 2 and len({tuple(reply) for reply in ids}) > 4  # varied replies
    assert max(len(reply) for reply in ids) == 16  # some rows ran to max_new_tokens while others had left


def test_tiny_model_constrained_rows_finish_at_different_steps_and_match(tiny, monkeypatch):
    labels = Constraint("labels", labels=("cancel", "move the meeting", "schedule a new meeting for the whole team",
                                          "schedule", "move"))
    conversations = [few_shot(r) for r in REQUESTS]
    ids = same_with_and_without(tiny, monkeypatch, conversations, max_new_tokens=16, batch_size=4,
                                constraint=labels)
    assert len({len(reply) for reply in ids}) > 1  # rows left their batch at different steps


def test_prompts_without_a_long_common_prefix_take_the_unshared_path(tiny, monkeypatch):
    conversations = [[{"role": "user", "content": r}] for r in REQUESTS[:4]]
    recorder = Recorder(tiny, monkeypatch)
    _, plain, plain_tokens = recorder.run(tiny, False, conversations, max_new_tokens=4, batch_size=2)
    _, shared, shared_tokens = recorder.run(tiny, True, conversations, max_new_tokens=4, batch_size=2)
    recorder.hook.remove()
    assert plain == shared and plain_tokens == shared_tokens


def quickstart_prompts(n: int) -> list:
    """The quickstart's held-out requests behind its system prompt and three training examples (a 3-shot arm)."""
    train = [json.loads(line)["messages"] for line in (ROOT / "datasets/quickstart/train.jsonl").read_text()
             .splitlines()[:3]]
    test = [json.loads(line)["messages"] for line in (ROOT / "datasets/quickstart/test.jsonl").read_text()
            .splitlines()[:n]]
    shots = [m for example in train for m in example if m["role"] != "system"]
    return [[m for m in example if m["role"] == "system"] + shots + [example[-2]] for example in test]


@pytest.fixture(scope="module")
def smollm2(offline_env):
    return load_smollm2()


@pytest.mark.slow
def test_smollm2_replies_are_the_unshared_ones_token_for_token(smollm2, monkeypatch):
    conversations = quickstart_prompts(5)
    conversations.append(conversations[0][:-1] + [{"role": "user", "content": "What is the capital of France?"}])
    ids = same_with_and_without(smollm2, monkeypatch, conversations, max_new_tokens=40, batch_size=4)
    assert len({len(reply) for reply in ids}) > 1  # real replies end at different steps


@pytest.mark.slow
def test_smollm2_user_only_prompts_share_the_templates_default_system_prompt(smollm2, monkeypatch):
    """The general suite's prompts carry no system message: SmolLM2's template adds its default one, about 24
    tokens, which a call of many prompts prefills once."""
    from ftorch.eval.instructions import load_suite

    conversations = [[{"role": "user", "content": item.prompt}] for item in load_suite(8)]
    same_with_and_without(smollm2, monkeypatch, conversations, shared_at_least=16, max_new_tokens=24,
                          batch_size=4)


@pytest.mark.slow
def test_smollm2_under_a_json_schema_constraint_matches_the_unshared_path(smollm2, monkeypatch):
    schema = json.loads((ROOT / "datasets/quickstart/schema.json").read_text())
    same_with_and_without(smollm2, monkeypatch, quickstart_prompts(3), max_new_tokens=40, batch_size=2,
                          constraint=Constraint("json_schema", schema=schema))


def test_only_plain_full_attention_caches_share_a_prefix():
    from transformers import LlamaConfig, MistralConfig

    from ftorch.eval.prefix import supported

    shape = dict(hidden_size=64, intermediate_size=128, num_attention_heads=2, num_hidden_layers=2, vocab_size=300)
    assert supported(LlamaConfig(**shape))
    assert not supported(MistralConfig(sliding_window=16, **shape))  # keys kept by window, not by position


def test_the_tuned_system_shares_a_prefix_computed_with_its_adapter(tiny, tmp_path, monkeypatch):
    """A LoRA adapter with non-zero weights: 'tuned' prefills its prefix with the adapter on, 'base' with it off;
    each matches its own unshared replies, and the two differ (the adapter is not a no-op)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ftorch.eval.local import LocalModel

    base = tmp_path / "base"  # the fixture's model (larger weights, more stop tokens) as a folder
    tiny.model.save_pretrained(base)
    tiny.tokenizer.save_pretrained(base)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, weights in peft_model.named_parameters():
            if "lora_" in name:
                weights.copy_(torch.randn(weights.shape, generator=generator) * 0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    model = LocalModel(str(base), tmp_path / "adapter", device="cpu")
    model.merge_tuned = False  # the adapter's own layers (the merged copy: tests/eval/test_merged_tuned.py)
    conversations = [few_shot(r) for r in REQUESTS[:4]]
    replies = {}
    for system in ("base", "tuned"):
        with model.system(system):
            replies[system] = same_with_and_without(model, monkeypatch, conversations, max_new_tokens=10,
                                                    batch_size=2)
    assert replies["base"] != replies["tuned"]
