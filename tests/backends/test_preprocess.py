"""The shared preprocessing cache: rows identical to TRL's own preparation, one tokenization per content key."""

import json

import pytest

from conftest import ROOT, chat
from ftorch.backends import _preprocess
from ftorch.schema import TinyModel
from ftorch.tiny import ensure_tiny_model

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
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

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
