"""ftorch's caches (tiny model, GGUF conversions, tokenized data) find a damaged entry by its manifest, say so, and
rebuild it instead of failing with a traceback."""

import json
from pathlib import Path

import pytest

from ftorch import cache as cache_check
from ftorch import models
from ftorch.config.schema import TinyModel

from conftest import chat

SMALL = TinyModel(hidden_size=16, intermediate_size=32, num_heads=2, num_layers=1, vocab_size=300)


def _truncate(path: Path, keep: int = 100) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def test_manifest_finds_truncation_missing_files_and_changed_content(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text("{}")
    cache_check.write_manifest(tmp_path)
    assert cache_check.damage(tmp_path) is None
    (tmp_path / "a.bin").write_bytes(b"y" * 1000)
    assert cache_check.damage(tmp_path) == "a.bin's content changed"
    _truncate(tmp_path / "a.bin")
    assert cache_check.damage(tmp_path) == "a.bin has 100 bytes, 1,000 expected"
    (tmp_path / "sub" / "b.json").unlink()
    cache_check.write_manifest(tmp_path)
    (tmp_path / cache_check.MANIFEST).write_text("{tru")
    assert "unreadable" in cache_check.damage(tmp_path)


def test_damaged_tiny_model_is_rebuilt(tmp_path, monkeypatch):
    from ftorch.tiny import ensure_tiny_model

    monkeypatch.setenv("FTORCH_CACHE", str(tmp_path))
    folder = ensure_tiny_model(SMALL)
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    _truncate(weights)
    said = []
    assert ensure_tiny_model(SMALL, announce=said.append) == folder
    assert len(said) == 1 and str(folder) in said[0] and "model.safetensors has 100 bytes" in said[0]
    assert weights.stat().st_size == size and cache_check.damage(folder) is None
    (folder / cache_check.MANIFEST).unlink()  # an entry from before manifests: built again
    ensure_tiny_model(SMALL, announce=said.append)
    assert "older ftorch" in said[1] and cache_check.damage(folder) is None


def _fake_conversion(gguf: Path, out: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.arange(4096, dtype=np.float32)}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (out / ".complete").touch()


def test_damaged_gguf_conversion_is_converted_again(tmp_path, monkeypatch):
    monkeypatch.setenv("FTORCH_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(models, "check_reference", lambda name: None)
    monkeypatch.setattr(models, "convert_gguf", _fake_conversion)
    said = []
    folder = Path(models.local_path(str(gguf), announce=said.append))
    assert "converting m.gguf" in said[0] and cache_check.damage(folder) is None
    assert models.local_path(str(gguf), announce=said.append) == str(folder) and len(said) == 1  # sound: reused
    _truncate(folder / "model.safetensors")
    assert models.local_path(str(gguf), announce=said.append) == str(folder)
    assert "is damaged (model.safetensors has 100 bytes" in said[1]
    assert cache_check.damage(folder) is None


def test_gguf_conversion_from_before_manifests_is_checked_by_its_safetensors_header(tmp_path):
    folder = tmp_path / "entry"
    folder.mkdir()
    _fake_conversion(Path("x.gguf"), folder)
    assert models._cache_damage(folder) is None and cache_check.has_manifest(folder)  # adopted
    (folder / cache_check.MANIFEST).unlink()
    _truncate(folder / "model.safetensors", keep=200)
    assert "model.safetensors has 200 bytes" in models._cache_damage(folder)
    (folder / ".complete").unlink()
    assert models._cache_damage(folder) == "the conversion did not finish"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from ftorch.tiny import ensure_tiny_model

    return AutoTokenizer.from_pretrained(ensure_tiny_model(TinyModel(hidden_size=64, intermediate_size=128,
                                                                     num_heads=2)))


def test_damaged_tokenized_data_is_tokenized_again(tokenizer, tmp_path):
    from ftorch.backends.hf import preprocess as _preprocess

    examples = [chat(f"q{i}", f"a{i}") for i in range(8)]
    first = _preprocess.prepare(examples, tokenizer, 64, True, False, tmp_path, announce=print)
    expected = list(first.dataset["input_ids"])  # read now: the dataset maps the file
    entry = tmp_path / first.key
    arrow = next(entry.glob("*.arrow"))
    _truncate(arrow)
    said = []
    again = _preprocess.prepare(examples, tokenizer, 64, True, False, tmp_path, announce=said.append)
    assert not again.hit and str(entry) in said[0] and arrow.name in said[0]
    assert list(again.dataset["input_ids"]) == expected
    assert _preprocess.prepare(examples, tokenizer, 64, True, False, tmp_path).hit
