"""Tokenized training data, cached on disk by a content key, so the trials of a sweep tokenize once.

The key covers everything the cached rows depend on: the examples' bytes (sha256), the tokenizer (its
vocabulary/merges, special tokens and chat template), the loss mask (assistant-only or not), max_length and
whether TRL packs afterwards. Change any of them and the key changes. Without packing the rows are
trainer-ready (input_ids + labels, truncated) and TRL's own preparation is skipped; with packing the rows
carry input_ids + assistant_masks and TRL packs them. The assistant-only mask comes from ftorch.chat_masks, so it
works for any prefix-preserving chat template, with or without {% generation %} markers."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..chat_masks import HINT, MaskError, assistant_token_mask
from ..errors import DataError, Problem

VERSION = 2  # 2: assistant masks from ftorch.chat_masks (any prefix-preserving template)


@dataclass
class Prepared:
    dataset: object  # datasets.Dataset
    key: str
    hit: bool
    seconds: float
    trainer_ready: bool  # True: pass dataset_kwargs={"skip_prepare_dataset": True}


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    special = json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str)
    return hashlib.sha256((vocab + special + (tokenizer.chat_template or "")).encode()).hexdigest()


def content_key(examples: list[dict], tokenizer_print: str, max_length: int, assistant_only: bool,
                packing: bool) -> str:
    data = hashlib.sha256(json.dumps(examples, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    payload = {"version": VERSION, "data": data, "tokenizer": tokenizer_print, "max_length": max_length,
               "assistant_only": assistant_only, "packing": packing}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def prepare(examples: list[dict], tokenizer, max_length: int, assistant_only: bool, packing: bool,
            cache_dir: Path) -> Prepared:
    from datasets import Dataset

    start = time.perf_counter()
    key = content_key(examples, tokenizer_fingerprint(tokenizer), max_length, assistant_only, packing)
    folder = cache_dir / key
    if (folder / "dataset_info.json").is_file():
        return Prepared(Dataset.load_from_disk(str(folder)), key, True, time.perf_counter() - start, not packing)
    rows = [_row(e["messages"], tokenizer, max_length, assistant_only, packing, n) for n, e in enumerate(examples)]
    # like TRL: an example whose trained tokens were all cut off by max_length teaches nothing
    rows = [r for r in rows if packing or any(label != -100 for label in r["labels"])]
    if not rows:
        raise DataError(Problem("train.max_length", f"{max_length} tokens cut off every answer: nothing to train on",
                                "raise train.max_length (ftorch data check --model MODEL shows the lengths)"))
    dataset = Dataset.from_list(rows)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    try:
        dataset.save_to_disk(str(staging))
        try:
            staging.rename(folder)
        except OSError:  # another trial wrote the same key first: identical content
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Prepared(Dataset.load_from_disk(str(folder)), key, False, time.perf_counter() - start, not packing)


def _row(messages: list[dict], tokenizer, max_length: int, assistant_only: bool, packing: bool, index: int) -> dict:
    if assistant_only:
        try:
            ids, mask = assistant_token_mask(tokenizer, messages)
        except MaskError as exc:
            raise DataError(Problem(f"example {index + 1}", f"train.assistant_only_loss: {exc}", HINT)) from None
        if 1 not in mask:
            raise DataError(Problem(f"example {index + 1}", "train.assistant_only_loss: no assistant tokens after "
                                    "applying the chat template", HINT))
    else:
        ids = list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))
        mask = [1] * len(ids)
    if packing:
        return {"input_ids": ids, "assistant_masks": mask}
    ids, mask = ids[:max_length], mask[:max_length]
    return {"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]}
