"""The shared preprocessing cache: rows identical to TRL's own preparation, one tokenization per content key."""

import json

import pytest

from ftorch.backends.hf import preprocess as _preprocess
from ftorch.config.schema import TinyModel
from ftorch.tiny import ensure_tiny_model

from conftest import ROOT, chat
from support.masks import runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ensure_tiny_model(TinyModel(hidden_size=64, intermediate_size=128,
                                                                     num_heads=2)))


def quickstart(n=24):
    lines = (ROOT / "datasets" / "quickstart" / "train.jsonl").read_text().splitlines()[:n]
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("max_length", [256, 110])
def test_rows_match_trls_own_preparation(tokenizer, tmp_path, max_length):
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from datasets import Dataset

    examples = quickstart()
    ours = _preprocess.prepare(examples, tokenizer, max_length, True, False, tmp_path).dataset
    model = AutoModelForCausalLM.from_pretrained(tokenizer.name_or_path)
    args = SFTConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, assistant_only_loss=True,
                     max_length=max_length, report_to=[])
    trl = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples),
                     processing_class=tokenizer).train_dataset
    assert ours["input_ids"] == trl["input_ids"]
    assert ours["labels"] == trl["labels"]


def test_one_tokenization_per_content_key(tokenizer, tmp_path):
    examples = quickstart(8)
    first = _preprocess.prepare(examples, tokenizer, 128, True, False, tmp_path)
    again = _preprocess.prepare(examples, tokenizer, 128, True, False, tmp_path)
    assert not first.hit and again.hit and first.key == again.key
    assert again.dataset["input_ids"] == first.dataset["input_ids"]
    changed = [chat("a different", "example"), *examples[1:]]
    keys = {_preprocess.prepare(changed, tokenizer, 128, True, False, tmp_path).key,
            _preprocess.prepare(examples, tokenizer, 110, True, False, tmp_path).key,
            _preprocess.prepare(examples, tokenizer, 128, False, False, tmp_path).key,
            _preprocess.prepare(examples, tokenizer, 128, True, True, tmp_path).key}
    assert len(keys) == 4 and first.key not in keys
    tokenizer.chat_template = tokenizer.chat_template + " "
    try:
        assert _preprocess.prepare(examples, tokenizer, 128, True, False, tmp_path).key != first.key
    finally:
        tokenizer.chat_template = tokenizer.chat_template[:-1]


def test_answers_all_cut_off_is_a_data_error(tokenizer, tmp_path):
    from ftorch.errors import DataError

    with pytest.raises(DataError, match="cut off every answer"):
        _preprocess.prepare(quickstart(4), tokenizer, 64, True, False, tmp_path)


FIXTURES = ROOT / "tests" / "fixtures" / "templates"
SMOLLM2 = (FIXTURES / "smollm2_135m_instruct.jinja").read_text()


@pytest.fixture()
def chatml_tokenizer(tokenizer):
    """A fresh copy of the tiny tokenizer with SmolLM2-135M-Instruct's chat template (no generation markers) and its
    ChatML control tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = SMOLLM2
    return tok


def test_labels_only_on_assistant_tokens_with_a_template_without_markers(chatml_tokenizer, tmp_path):
    examples = quickstart(6) + [{"messages": [
        {"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Sky colour?"},
        {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Grass?"},
        {"role": "assistant", "content": "Green."}]}]
    rows = _preprocess.prepare(examples, chatml_tokenizer, 512, True, False, tmp_path).dataset
    for example, ids, labels in zip(examples, rows["input_ids"], rows["labels"]):
        assert ids == chatml_tokenizer.apply_chat_template(example["messages"], tokenize=True, return_dict=False)
        assert all(label in (token, -100) for token, label in zip(ids, labels))
        trained = runs(chatml_tokenizer, ids, [label != -100 for label in labels])
        answers = [m["content"] for m in example["messages"] if m["role"] == "assistant"]
        assert trained == [a + "<|im_end|>\n" for a in answers]


def test_a_template_that_is_not_prefix_preserving_is_a_data_error(chatml_tokenizer, tmp_path):
    from ftorch.errors import DataError

    chatml_tokenizer.chat_template = (FIXTURES / "mistral_7b_instruct_v0_3.jinja").read_text()
    turn = quickstart(1)[0]["messages"][-2:]  # Mistral's template drops a system message before a final answer
    examples = [{"messages": turn}, {"messages": [{"role": "system", "content": "Be brief."}, *turn]}]
    with pytest.raises(DataError, match=r"example 2: train.assistant_only_loss: .*not prefix-preserving") as info:
        _preprocess.prepare(examples, chatml_tokenizer, 512, True, False, tmp_path)
    assert "train.assistant_only_loss=false" in str(info.value)


def test_training_chat_template_keeps_the_models_own_where_offsets_serve_it(chatml_tokenizer, tokenizer):
    from ftorch.backends.hf.loading import ensure_training_chat_template

    assert ensure_training_chat_template(chatml_tokenizer, "smollm2", True) == "offsets"
    assert chatml_tokenizer.chat_template == SMOLLM2
    assert ensure_training_chat_template(tokenizer, "tiny", True) == "markers"
    assert ensure_training_chat_template(chatml_tokenizer, "smollm2", False) is None


@pytest.mark.parametrize("name", ["qwen3", "glm4moe", "deepseek_r1_distill"])
def test_trls_training_template_where_offsets_cannot_serve(chatml_tokenizer, name):
    """Not prefix-preserving (Qwen3, DeepSeek-R1) or no end-of-turn text (GLM-4): TRL's marked version instead."""
    from importlib.util import find_spec
    from pathlib import Path

    from ftorch.backends.hf.loading import ensure_training_chat_template

    folder = Path(find_spec("trl").submodule_search_locations[0]) / "chat_templates"
    chatml_tokenizer.chat_template = (folder / f"{name}.jinja").read_text()
    assert ensure_training_chat_template(chatml_tokenizer, name, True) == "trl"
    assert chatml_tokenizer.chat_template == (folder / f"{name}_training.jinja").read_text()


def test_a_template_nothing_serves_is_a_clear_error(chatml_tokenizer):
    from ftorch.backends.hf.loading import ensure_training_chat_template
    from ftorch.errors import ModelError

    chatml_tokenizer.chat_template = SMOLLM2.replace("{% if add_generation_prompt %}", "{% if false %}")
    with pytest.raises(ModelError, match="train.assistant_only_loss: .*ignores add_generation_prompt") as info:
        ensure_training_chat_template(chatml_tokenizer, "custom", True)
    assert "train.assistant_only_loss=false" in info.value.render()
    chatml_tokenizer.chat_template = SMOLLM2  # fine for ftorch's own masks, not for TRL's (the Unsloth child)
    with pytest.raises(ModelError, match="needs \\{% generation %\\} markers") as info:
        ensure_training_chat_template(chatml_tokenizer, "smollm2", True, trl_masks=True)
    assert "provider=peft" in info.value.render()


def test_text_far_beyond_max_length_is_never_tokenized_and_the_kept_tokens_are_the_same(tokenizer, tmp_path):
    """Clipping the text before tokenizing keeps exactly the tokens a full tokenization would keep."""
    long_user = {"messages": [{"role": "user", "content": "lorem ipsum dolor " * 3000},
                              {"role": "assistant", "content": "ok"}]}
    long_answer = chat("q", "the answer goes on " * 3000)
    for example in (long_user, long_answer):
        full, _ = _preprocess._row(example["messages"], tokenizer, 64, True, False, 0)
        clipped, cut = _preprocess._row(example["messages"], tokenizer, 64, True, False, 0,
                                        budget=(64 + _preprocess.SLACK_TOKENS) * _preprocess._longest_token(tokenizer))
        assert clipped == full and cut["clipped"] and cut["trainable_cut"] > 0
    assert cut["trainable_kept"] > 0


def test_truncation_of_trained_tokens_is_refused_unless_allowed(tokenizer, tmp_path):
    examples = [chat("q", "a"), chat("q " * 200, "a"), chat("q", "b " * 200)]
    with pytest.raises(_preprocess.DataError) as refused:
        _preprocess.prepare(examples, tokenizer, 64, True, False, tmp_path, lines=[3, 5, 9], source="t.jsonl",
                            allow_truncation=False)
    text = refused.value.render()
    assert "t.jsonl:5:" in text and "teaches nothing" in text and "t.jsonl:9:" in text and "t.jsonl:3" not in text
    said = []
    prepared = _preprocess.prepare(examples, tokenizer, 64, True, False, tmp_path, lines=[3, 5, 9],
                                   source="t.jsonl", allow_truncation=True, announce=said.append)
    assert len(prepared.dataset) == 2  # the example with nothing left is dropped
    assert "2 example(s) of t.jsonl are longer than train.max_length=64" in said[0]
    assert max(len(ids) for ids in prepared.dataset["input_ids"]) == 64


def test_caching_the_rows_prints_no_dataset_bars(tokenizer, tmp_path, capfd):
    import datasets

    assert datasets.is_progress_bar_enabled()
    _preprocess.prepare(quickstart(8), tokenizer, 128, True, False, tmp_path)
    assert "Saving the dataset" not in capfd.readouterr().err
    assert datasets.is_progress_bar_enabled()  # put back as found
