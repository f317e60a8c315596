"""A local model (eval/local.py's LocalModel) whose weights load on first use. What an evaluation asks of it before
generating (its tokenizer, prompt token counts, context length, device and dtype, the files the answer cache
hashes) is answered without the weights, so an evaluation whose answers and measurements all come from the answer
cache (eval/answer_cache.py) never loads them: importing the modelling code and loading the weights were most of a
repeated evaluation's time (bench/answer_cache.py). Anything else loads the model once and is the model's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .local import (
    LocalModel,
    Messages,
    chat_ids,
    default_device,
    dtype_for,
    load_tokenizer,
    merges_adapter,
    model_config,
    positive_length,
)


class LazyLocalModel:
    constraint_kinds = LocalModel.constraint_kinds
    decodes_locally = LocalModel.decodes_locally
    keyed_by_files = LocalModel.keyed_by_files
    takes_drafts = LocalModel.takes_drafts

    def __init__(self, base_path: str, adapter: Path | None, device: str | None = None):
        self.base_path, self.adapter_path = base_path, adapter
        self.has_adapter = adapter is not None
        self.device = device or default_device()
        self.dtype = str(dtype_for(self.device))  # what LocalModel loads the weights in
        self.merge_tuned = merges_adapter(self.device, base_path, adapter)  # as LocalModel decides it
        self.loaded: LocalModel | None = None
        self.own_tokenizer: Any = None
        self.config: Any = None

    def load(self) -> LocalModel:
        if self.loaded is None:
            self.loaded = LocalModel(self.base_path, self.adapter_path, self.device, tokenizer=self.own_tokenizer)
        return self.loaded

    def __getattr__(self, name: str) -> Any:
        """What LocalModel has (its methods, its `model`) loads it; any other name is absent, as on LocalModel
        (hasattr(x, "cache_identity") must not load a model)."""
        if name != "model" and (name.startswith("__") or not hasattr(LocalModel, name)):
            raise AttributeError(name)
        return getattr(self.load(), name)

    @property
    def tokenizer(self) -> Any:
        if self.loaded is not None:
            return self.loaded.tokenizer
        if self.own_tokenizer is None:
            self.own_tokenizer = load_tokenizer(self.base_path, self.adapter_path)
        return self.own_tokenizer

    def prompt_tokens(self, messages: Messages) -> int:
        return len(chat_ids(self.tokenizer, messages))

    @property
    def context_length(self) -> int | None:
        if self.loaded is not None:
            return self.loaded.context_length
        if self.config is None:
            self.config = model_config(self.base_path)
        return positive_length(self.config.get("max_position_embeddings"))

