"""Base + LoRA adapter merged into one plain transformers model (PEFT's merge_and_unload), saved as safetensors
in the chosen dtype with the tokenizer, chat template and generation config: loadable without PEFT."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import Problem
from ..safe_io import write_text
from .source import ExportError, Source


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def merged_model(source: Source, dtype: str = "float32"):
    """(model, tokenizer): the merged model in `dtype` on the CPU, and the tokenizer the adapter was trained with.
    The merge itself runs in float32, then the result is cast once."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..backends.hf.loading import loading

    base_path = source.base_path()
    tokenizer_source = source.adapter if (source.adapter / "tokenizer_config.json").is_file() else Path(base_path)
    with loading(str(tokenizer_source), "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source))
    with loading(base_path, "model"):
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    with loading(str(source.adapter), "LoRA adapter"):
        tuned = PeftModel.from_pretrained(base, str(source.adapter))
    model = tuned.merge_and_unload()
    if any("lora_" in name for name, _ in model.named_parameters()):
        raise ExportError(Problem(str(source.adapter), "the adapter did not merge into the base model",
                                  "only LoRA adapters can be exported"))
    model.config.name_or_path = ""
    _untie_if_trained_apart(model)
    return model.to(torch_dtype(dtype)).eval(), tokenizer


def _untie_if_trained_apart(model) -> None:
    """A base with tied embeddings whose adapter trained embed_tokens and lm_head as separate copies
    (modules_to_save) must be saved untied, or loading would tie them back and change the model."""
    import torch

    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    if not getattr(config, "tie_word_embeddings", False) or outputs is None:
        return
    if inputs.weight is outputs.weight or torch.equal(inputs.weight, outputs.weight):
        return
    config.tie_word_embeddings = False
    model.config.tie_word_embeddings = False
    outputs.weight = torch.nn.Parameter(outputs.weight.detach().clone())


def write_merged(source: Source, folder: Path, dtype: str) -> dict:
    """Save the merged model into `folder` (which export made, empty); what was written."""
    model, tokenizer = merged_model(source, dtype)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    if getattr(tokenizer, "chat_template", None) and not (folder / "chat_template.jinja").is_file():
        write_text(folder / "chat_template.jinja", tokenizer.chat_template)
    base = source.cfg.model.name if source.cfg.model.tiny is None else "tiny"
    info = {"kind": "merged", "dtype": dtype, "base_model": base, "adapter": str(source.adapter),
            "files": sorted(p.name for p in folder.iterdir() if p.name != "INCOMPLETE")}
    write_text(folder / "ftorch-export.json", json.dumps(info, indent=2) + "\n")
    return info


def load_merged(folder: Path, device: str = "cpu"):
    """(model, tokenizer) from an exported folder with plain transformers, in the dtype it was saved in."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model: Any = AutoModelForCausalLM.from_pretrained(str(folder), dtype="auto")  # transformers' stubs: unions
    return model.to(device).eval(), tokenizer
