"""Export pieces without a model: thresholds, folders that never overwrite, chat template families for Ollama,
the Modelfile, and the q/k row order of the GGUF writer."""

from pathlib import Path

import pytest

from ftorch.export.ollama import FAMILIES, modelfile_text, recognise, writes_bos
from ftorch.export.source import ExportError, new_folder
from ftorch.export.verify import default_thresholds, judge
from ftorch.run.rundir import RunDir

SMOLLM2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
           "{{ '<|im_start|>system\n"
           "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
           "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
           "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def summary(identical, adapter, export, n=40):
    return {"n": n, "headline": "field_accuracy", "identical": identical, "adapter_metric": adapter,
            "export_metric": export}


def test_thresholds_per_precision():
    assert judge(summary(1.0, 0.8, 0.8), default_thresholds("float32")) == []
    assert "100% required" in judge(summary(0.975, 0.8, 0.8), default_thresholds("float32"))[0]
    assert judge(summary(0.95, 0.80, 0.79), default_thresholds("bfloat16")) == []
    assert judge(summary(0.95, 0.80, 0.83), default_thresholds("f16"))[0].startswith("field_accuracy 83.0%")
    assert judge(summary(0.20, 0.80, 0.76), default_thresholds("q8_0")) == []  # identity is reported, not required
    assert "dropped 6.0 points" in judge(summary(0.9, 0.80, 0.74), default_thresholds("q8_0"))[0]
    assert judge(summary(0.5, 0.80, 0.70), default_thresholds("q4_0")) == []
    assert judge(summary(None, None, None, n=0), default_thresholds("q4_0"))[0].startswith("no held-out examples")


def test_export_folders_never_overwrite(tmp_path):
    run = RunDir(tmp_path)
    made = [new_folder(run, "gguf-q8_0") for _ in range(3)]
    assert [p.name for p in made] == ["gguf-q8_0", "gguf-q8_0-2", "gguf-q8_0-3"]
    assert all(p.is_dir() and not any(p.iterdir()) for p in made)


def tokenizer(template: str, bos: str):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")),
                                  bos_token=bos, eos_token="<|eos|>")
    tok.chat_template = template
    return tok


def test_chatml_and_llama3_templates_are_recognised():
    import trl

    templates = Path(trl.__file__).parent / "chat_templates"
    smol = tokenizer(SMOLLM2, "<|im_start|>")  # SmolLM2's BOS is <|im_start|>, which ChatML writes itself
    assert recognise(smol).name == "chatml" and writes_bos(smol) is False
    qwen = tokenizer((templates / "qwen2_5.jinja").read_text(), "<|endoftext|>")
    assert recognise(qwen).name == "chatml"
    llama3 = tokenizer((templates / "llama3.jinja").read_text(), "<|begin_of_text|>")
    assert recognise(llama3).name == "llama3" and writes_bos(llama3) is True
    newer = tokenizer((templates / "llama3_1.jinja").read_text(), "<|begin_of_text|>")  # dates in the system turn
    with pytest.raises(ExportError, match="known: chatml, llama3"):
        recognise(newer)
    assert writes_bos(newer) is None


def test_modelfile():
    chatml = next(f for f in FAMILIES if f.name == "chatml")
    text = modelfile_text("m-q8_0.gguf", chatml, "You turn requests into JSON.", "<|im_end|>")
    assert text.splitlines()[1] == "FROM ./m-q8_0.gguf"
    assert 'TEMPLATE """{{- range $i, $_ := .Messages }}' in text and "<|im_start|>{{ .Role }}\n{{ .Content }}" in text
    assert text.count('PARAMETER stop "<|im_end|>"') == 1 and 'PARAMETER stop "<|im_start|>"' in text
    assert text.endswith('SYSTEM """You turn requests into JSON."""\n')
    assert "SYSTEM" not in modelfile_text("m.gguf", chatml, None, "<|im_end|>")
    with pytest.raises(ExportError, match="cannot quote"):
        modelfile_text("m.gguf", chatml, 'say """', None)


def test_gguf_rows_are_permuted_as_transformers_reverses_them():
    import numpy as np
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from ftorch.export.gguf import _permute

    weights = np.arange(24 * 8, dtype=np.float32).reshape(24, 8)  # 6 heads of 4 rows (q); 3 kv heads (k)
    for heads, kv in ((6, 6), (6, 3)):
        rows = weights if heads == kv else weights[: 24 * kv // heads]
        back = LlamaTensorProcessor()._reverse_permute_weights(_permute(rows, heads, kv), heads, kv)
        assert np.array_equal(back, rows)
        assert not np.array_equal(_permute(rows, heads, kv), rows)


def test_gguf_writer_names_what_it_supports():
    from ftorch.export.gguf import check_supported

    class GPT2LMHeadModel:
        config = None

    with pytest.raises(ExportError, match="supported architectures: LlamaForCausalLM"):
        check_supported(GPT2LMHeadModel())
