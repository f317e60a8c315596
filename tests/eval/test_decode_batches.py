"""How the local decoder (eval/local.py) cuts a call's prompts into batches: in the fewest batches of one size under
eval.decode_batch_size rows, and fewer rows where the batch's KV cache would pass `decode_cache_bytes`."""

from __future__ import annotations

import pytest

from ftorch.config.schema import TinyModel

ASK = [[{"role": "user", "content": f"Request number {n}: " + "please " * (n % 5)}] for n in range(10)]


@pytest.fixture(scope="module")
def model(offline_env):
    from ftorch.eval.local import LocalModel
    from ftorch.tiny import ensure_tiny_model

    return LocalModel(str(ensure_tiny_model(TinyModel(hidden_size=32, intermediate_size=64, num_heads=2))), None,
                      device="cpu")


def _batches(model, monkeypatch, rows: int, max_new_tokens: int = 4) -> list[int]:
    seen: list[int] = []
    greedy = model._greedy

    def recording(prompts, *args, **kwargs):
        seen.append(len(prompts))
        return greedy(prompts, *args, **kwargs)

    monkeypatch.setattr(model, "_greedy", recording)
    model.generate(ASK, max_new_tokens, rows)
    return seen


def test_batches_are_as_even_as_the_row_limit_allows(model, monkeypatch):
    assert _batches(model, monkeypatch, 64) == [10]
    assert _batches(model, monkeypatch, 4) == [4, 4, 2]  # the fewest batches, of one size
    assert _batches(model, monkeypatch, 10) == [10]


def test_a_batch_holds_no_more_kv_cache_than_the_limit(model, monkeypatch):
    per_token = model._cache_bytes_per_token()
    config = model.model.config
    assert per_token == 2 * config.num_hidden_layers * config.num_key_value_heads * \
        (config.hidden_size // config.num_attention_heads) * 4  # float32 keys and values of every layer
    longest = max(len(model._encode(m)) for m in ASK) + 4
    monkeypatch.setattr(model, "decode_cache_bytes", per_token * longest * 3)  # room for 3 rows
    assert _batches(model, monkeypatch, 64) == [3, 3, 3, 1]
    monkeypatch.setattr(model, "decode_cache_bytes", 1)  # not even one row: one at a time, never none
    assert _batches(model, monkeypatch, 64) == [1] * 10


def test_prefill_groups_pad_least_counting_each_pass():
    from ftorch.eval.prefix import prefill_groups

    assert prefill_groups([]) == []
    assert prefill_groups([5, 5, 5], pass_cost=100) == [(0, 3)]
    assert prefill_groups([10, 10, 100], pass_cost=20) == [(0, 2), (2, 3)]  # 20 + 100 + 40 < 300 + 20
    assert prefill_groups([10, 10, 100], pass_cost=200) == [(0, 3)]  # a pass costs more than the padding saved
    assert prefill_groups([1, 2, 3], pass_cost=0) == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize("shared", [False, True], ids=["whole prompts", "after a shared prefix"])
def test_grouped_prefill_replies_are_the_one_pass_replies(monkeypatch, shared):
    """Prompts of very different lengths prefilled in groups (each padded to its own longest), their caches stacked
    into one batch: the replies are those of one padded pass, in batches whose rows end at different steps."""
    from ftorch.eval import prefix

    from support.decoders import varied_tiny_model

    system = [{"role": "system", "content": "You answer briefly and plainly, in one short sentence. " * 3}]
    asks = [(system if shared else []) + [{"role": "user", "content": "Why? " + "Tell me more about it. " * n}]
            for n in range(0, 24, 3)]
    tiny = varied_tiny_model()
    passes: list = []
    hook = tiny.model.register_forward_pre_hook(lambda m, a, kw: passes.append(kw["input_ids"].shape),
                                                with_kwargs=True)
    try:
        assert bool(prefix.common_prefix_length([tiny._encode(a) for a in asks])) == shared
        monkeypatch.setattr(prefix.prefill_groups, "__defaults__", (10 ** 6,))  # a pass costs too much: one group
        one_pass = tiny.generate(asks, 16, 64)
        assert sum(1 for shape in passes if shape[1] > 1) == 1 + shared  # (the prefix's own pass)
        passes.clear()
        monkeypatch.setattr(prefix.prefill_groups, "__defaults__", (0,))  # a pass costs nothing: groups
        assert tiny.generate(asks, 16, 64) == one_pass
        assert sum(1 for shape in passes if shape[1] > 1) >= 3  # the prefill ran in several groups
    finally:
        hook.remove()


def test_a_prompts_token_ids_are_remembered_per_tokenizer_and_handed_out_as_copies(model):
    from ftorch.eval.local import chat_ids

    calls = []
    template = model.tokenizer.apply_chat_template

    class Counting:
        """The model's tokenizer, counting its chat template's calls."""

        def apply_chat_template(self, *args, **kwargs):
            calls.append(1)
            return template(*args, **kwargs)

    tokenizer = Counting()
    first = chat_ids(tokenizer, ASK[0])
    first.append(-1)  # the caller's copy: the remembered ids stay as they were
    assert chat_ids(tokenizer, ASK[0]) == first[:-1] and len(calls) == 1
    assert chat_ids(tokenizer, ASK[1]) != first[:-1] and len(calls) == 2
    assert chat_ids(Counting(), ASK[0]) == first[:-1] and len(calls) == 3  # another tokenizer: its own template
