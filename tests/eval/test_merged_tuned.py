"""'tuned' answers from a copy of the model with the LoRA adapter merged into its weights (eval/local.py,
merges_adapter): the same replies as the adapter's own layers, the base weights never changed (so base answers do
not drift after a tuned block), an outer 'off' block still holding, the policy's limits, and the answer cache
keying merged answers apart from unmerged ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftorch.config.schema import TinyModel
from ftorch.eval import local
from ftorch.eval.answer_cache import LocalDescriber

REQUESTS = ["Please cancel Monday's standup", "schedule lunch with Ana on Friday", "move it",
            "Could you put the quarterly review on Monday morning?", "Friday: gym"]
ASK = [[{"role": "user", "content": r}] for r in REQUESTS]


@pytest.fixture(scope="module")
def folders(tmp_path_factory, offline_env):
    """The tiny model with larger random weights (so replies depend on the request) and a LoRA adapter on every
    projection whose B matrices are random too (so it changes the replies)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ftorch.tiny import ensure_tiny_model

    root = tmp_path_factory.mktemp("merged-tuned")
    source = ensure_tiny_model(TinyModel(hidden_size=64, intermediate_size=128, num_heads=2))
    model = AutoModelForCausalLM.from_pretrained(str(source))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weights in model.parameters():
            weights.copy_(torch.randn(weights.shape, generator=generator) * 0.5)
    model.save_pretrained(root / "base")
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(source)).save_pretrained(root / "base")
    peft_model = get_peft_model(model, LoraConfig(r=4, init_lora_weights=False, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    with torch.no_grad():
        for name, weights in peft_model.named_parameters():
            if "lora_" in name:
                weights.copy_(torch.randn(weights.shape, generator=generator) * 0.3)
    peft_model.save_pretrained(root / "adapter")
    return root / "base", root / "adapter"


def _replies(model: local.LocalModel, system: str) -> list[str]:
    with model.system(system):
        return model.generate(ASK, 12, 2)


def _base_weights(model: local.LocalModel) -> dict:
    return {name: tensor.clone() for name, tensor in model.model.state_dict().items() if "lora_" not in name}


def test_merged_tuned_replies_are_the_adapters_and_base_weights_never_change(folders):
    base, adapter = folders
    merged = local.LocalModel(str(base), adapter, device="cpu")
    assert merged.merge_tuned  # a small model on the CPU
    plain = local.LocalModel(str(base), adapter, device="cpu")
    plain.merge_tuned = False
    before = _base_weights(merged)
    base_replies = _replies(merged, "base")
    tuned = _replies(merged, "tuned")
    assert tuned == _replies(plain, "tuned")  # the merged copy answers as the adapter's own layers do
    assert tuned != base_replies  # the adapter is not a no-op
    after = _base_weights(merged)
    assert before.keys() == after.keys() and all(before[k].equal(after[k]) for k in before)
    assert _replies(merged, "base") == base_replies == _replies(plain, "base")
    assert merged._merged is not None and merged.model is not merged._merged  # the copy, kept for the next block


def test_an_outer_base_block_holds_inside_a_tuned_one(folders):
    base, adapter = folders
    model = local.LocalModel(str(base), adapter, device="cpu")
    with model.system("base"), model.system("tuned"):
        inside = model.generate(ASK, 12, 2)
    assert inside == _replies(model, "base")
    assert model._merged is None  # the merged copy was never needed


def test_the_policy_merges_small_models_on_the_cpu_only(folders, monkeypatch):
    base, adapter = folders
    assert local.merges_adapter("cpu", str(base), adapter)
    assert not local.merges_adapter("cuda", str(base), adapter)  # bf16 kernels; no copy in GPU memory
    assert not local.merges_adapter("cpu", str(base), None)  # nothing to merge
    assert not local.merges_adapter("cpu", "org/a-hub-id", adapter)  # no folder to size
    weights = sum(p.stat().st_size for p in Path(base).glob("*.safetensors"))
    monkeypatch.setattr(local, "MERGED_COPY_MAX_BYTES", weights - 1)
    assert not local.merges_adapter("cpu", str(base), adapter)  # the copy would take too much memory


def test_the_answer_cache_keys_merged_tuned_answers_apart(folders, tmp_path):
    from ftorch.eval.lazy_local import LazyLocalModel

    base, adapter = folders
    lazy = LazyLocalModel(str(base), adapter, device="cpu")
    assert lazy.merge_tuned and lazy.loaded is None  # decided without loading the weights
    merged = LocalDescriber(lazy, base, {})
    assert merged.identity(("tuned",))["merged"] is True
    assert "merged" not in merged.identity(("base",)) and "merged" not in merged.identity(())
    lazy.merge_tuned = False
    assert "merged" not in LocalDescriber(lazy, base, {}).identity(("tuned",))


def test_adapters_that_touch_the_embeddings_are_not_merged(folders, tmp_path):
    """Merging into a weight tied to the embeddings (or swapping in modules trained in full) would change more than
    the adapter's layers: those adapters answer through their own layers."""
    import json

    base, adapter = folders
    config = json.loads((adapter / "adapter_config.json").read_text())
    for change in ({"modules_to_save": ["embed_tokens", "lm_head"]}, {"target_modules": ["q_proj", "lm_head"]},
                   {"target_modules": ".*proj"}, {"trainable_token_indices": [5]}):
        other = tmp_path / "adapter"
        other.mkdir(exist_ok=True)
        (other / "adapter_config.json").write_text(json.dumps({**config, **change}))
        assert not local.merges_adapter("cpu", str(base), other), change


SYSTEM = "You turn scheduling requests into one JSON object with the action, the day and the people; nothing else."


@pytest.mark.parametrize("layout", ["mixed", "shared system prompt"])
def test_assistant_token_losses_equal_the_full_output_layers(folders, layout):
    """The held-out loss runs the output layer only where an assistant token is predicted, batches by length and
    runs a prefix every conversation shares (the system prompt) once; the numbers are those of the full logits of
    each conversation alone, with and without the adapter."""
    import torch

    base, adapter = folders
    model = local.LocalModel(str(base), adapter, device="cpu")
    model.min_prefix_saving = 16
    system = SYSTEM if layout == "shared system prompt" else "Answer in JSON."
    conversations = [[{"role": "system", "content": system}, {"role": "user", "content": r},
                      {"role": "assistant", "content": '{"action": "' + r.split()[0].lower() + '"}'}]
                     for r in REQUESTS]
    if layout == "mixed":
        conversations[1] = conversations[1][1:]  # rows of different lengths and layouts in one batch
    prefix = model._scoring_prefix([model.assistant_labels(m) for m in conversations])
    assert (prefix is not None) == (layout == "shared system prompt")
    if prefix is not None:  # it ends before the first predicted assistant token
        assert prefix.length >= len(model.tokenizer(SYSTEM)["input_ids"])
    for name in ("base", "tuned"):
        with model.system(name):
            fast = model.assistant_token_losses(conversations, batch_size=3)
            expected = []
            for conversation in conversations:
                ids, labels, mask = model.pad_right(*(list(part) for part in zip(model.assistant_labels(conversation))))
                with torch.no_grad():
                    logits = model.model(input_ids=ids, attention_mask=mask).logits.float()
                nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:],
                                                        ignore_index=-100, reduction="none")
                expected.append((nll.sum().item(), int((labels[:, 1:] != -100).sum())))
        assert [count for _, count in fast] == [count for _, count in expected] and all(c > 0 for _, c in fast)
        assert [total for total, _ in fast] == pytest.approx([total for total, _ in expected], rel=1e-5)


def test_tuned_answers_alone_never_load_the_unmerged_model(folders):
    """A sweep's later trial, whose base answers all come from the answer cache, asks only for tuned answers: the
    merged copy is loaded from the files and the unmerged model (base with the adapter attached) never is. Asked
    for base afterwards, it loads then, and answers as a model that loaded it first."""
    base, adapter = folders
    model = local.LocalModel(str(base), adapter, device="cpu")
    assert model.merge_tuned
    tuned = _replies(model, "tuned")
    assert model._unmerged is None and model._merged is not None
    fresh = local.LocalModel(str(base), adapter, device="cpu")
    assert _replies(model, "base") == _replies(fresh, "base") and tuned == _replies(fresh, "tuned")


def test_a_base_block_inside_a_tuned_one_answers_as_base(folders):
    base, adapter = folders
    model = local.LocalModel(str(base), adapter, device="cpu")
    expected = _replies(model, "base")
    with model.system("tuned"):
        assert _replies(model, "base") == expected
        assert model.model is model._merged  # the tuned block holds again after the inner one


def test_drift_with_base_held_and_the_context_length_never_load_the_unmerged_model(folders):
    """A sweep's later trial holds base's side of drift (answer_cache.CachedGenerator.hold) and computes only the
    tuned side: the model's context length is read from its files, so the unmerged model is never loaded for it
    (it once was: a second load of about a second in every later trial). The numbers are those of a model that
    computed both sides."""
    import json

    from ftorch.eval.drift import drift

    base, adapter = folders
    model = local.LocalModel(str(base), adapter, device="cpu")
    expected_length = json.loads((base / "config.json").read_text())["max_position_embeddings"]
    assert model.context_length == expected_length and model._unmerged is None and model._merged is None
    reference = local.LocalModel(str(base), adapter, device="cpu")
    held: dict[str, list] = {}
    expected = drift(reference, 4, keep_base=lambda compute: held.setdefault("base", compute()))
    found = drift(model, 4, keep_base=lambda compute: held["base"])
    assert model._unmerged is None and model._merged is not None
    assert model.context_length == expected_length
    assert found == pytest.approx(expected, rel=1e-5)


def test_load_for_loads_only_the_copies_the_systems_answer_with(folders):
    """`ftorch chat` loads before its first prompt what it answers with (not in the middle of a reply, where the
    loading bar would land in the transcript): the merged copy for tuned alone; with --compare the unmerged model
    for base too."""
    base, adapter = folders
    model = local.LocalModel(str(base), adapter, device="cpu")
    model.load_for(("tuned",))
    assert model._merged is not None and model._unmerged is None
    model.load_for(("base", "tuned"))
    assert model._unmerged is not None
