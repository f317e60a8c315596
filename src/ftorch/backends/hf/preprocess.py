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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ...chat_masks import HINT, MaskError, assistant_token_mask
from ...errors import DataError, Problem
from ...safe_io import write_text

VERSION = 3  # 3: rows truncated to max_length also with packing (TRL's bfd packing cuts them the same way)
REPORT = "ftorch-truncation.json"
SLACK_TOKENS = 64  # text kept beyond max_length tokens before tokenizing, so the cut cannot move the kept tokens
SHOWN = 20


@dataclass
class Prepared:
    dataset: object  # datasets.Dataset
    key: str
    hit: bool
    seconds: float
    trainer_ready: bool  # True: pass dataset_kwargs={"skip_prepare_dataset": True}
    truncated: list[dict] = field(default_factory=list)  # one per example longer than max_length (see _row)


@contextmanager
def no_dataset_bars() -> Iterator[None]:
    """Silence `datasets`' progress bars (map, save_to_disk): they are not ftorch's progress, and off a TTY each
    refresh would be a line of the console."""
    import datasets as dataset_bars

    was_on = dataset_bars.is_progress_bar_enabled()
    dataset_bars.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            dataset_bars.enable_progress_bars()


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
            cache_dir: Path, *, lines: list[int] | None = None, source: str = "data.train",
            allow_truncation: bool = True, announce=None) -> Prepared:
    """Tokenized rows for `examples`, from the cache or made now. Every example longer than max_length is reported
    (`announce`, default stderr) with its line and what the cut loses; with allow_truncation=False a cut that loses
    assistant (trained) tokens is a DataError listing them all."""
    from datasets import Dataset

    from ...cache import damage, publish

    tell = announce or say
    start = time.perf_counter()
    key = content_key(examples, tokenizer_fingerprint(tokenizer), max_length, assistant_only, packing)
    folder = cache_dir / key
    if folder.exists():
        problem = damage(folder)
        if problem is None:
            try:
                dataset = Dataset.load_from_disk(str(folder))
                truncated = json.loads((folder / REPORT).read_text())
            except Exception as exc:  # sound by its manifest, yet unreadable (written by another version?)
                problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            else:
                _judge(truncated, max_length, lines, source, allow_truncation, tell)
                return Prepared(dataset, key, True, time.perf_counter() - start, not packing, truncated)
        tell(f"ftorch: the tokenized-data cache entry {folder} is damaged ({problem}); tokenizing again")
    budget = (max_length + SLACK_TOKENS) * _longest_token(tokenizer)
    rows, truncated = [], []
    for n, example in enumerate(examples):
        row, cut = _row(example["messages"], tokenizer, max_length, assistant_only, packing, n, budget)
        if cut is not None:
            truncated.append(cut)
        # like TRL: an example whose trained tokens were all cut off by max_length teaches nothing
        if packing or any(label != -100 for label in row["labels"]):
            rows.append(row)
    _judge(truncated, max_length, lines, source, allow_truncation, tell)
    if not rows:
        raise DataError(Problem("train.max_length", f"{max_length} tokens cut off every answer: nothing to train on",
                                "raise train.max_length (ftorch data check FILE --model MODEL shows the lengths)"))
    dataset = Dataset.from_list(rows)

    def save(staging: Path) -> None:
        with no_dataset_bars():
            dataset.save_to_disk(str(staging))
        write_text(staging / REPORT, json.dumps(truncated))

    publish(folder, save, prefix=".tmp-")
    return Prepared(Dataset.load_from_disk(str(folder)), key, False, time.perf_counter() - start, not packing,
                    truncated)


def say(message: str) -> None:
    """The default `announce`: stderr, beside the progress output."""
    import sys

    print(message, file=sys.stderr)


def describe(cut: dict, max_length: int) -> str:
    """What truncation does to one example, in words."""
    size = f"{'at least ' if cut['clipped'] else ''}{cut['tokens']:,} tokens"
    lost = cut["tokens"] - max_length
    if cut["trainable_kept"] == 0 and cut["trainable_cut"]:
        what = "all of its trained (assistant) tokens: the example teaches nothing"
    elif cut["trainable_cut"]:
        what = (f"{'at least ' if cut['clipped'] else ''}{cut['trainable_cut']:,} of its trained (assistant) tokens "
                f"({cut['trainable_kept']:,} kept)")
    else:
        what = "no trained (assistant) tokens"
    return f"{size}, longer than train.max_length={max_length}: truncation cuts {'at least ' * cut['clipped']}" \
           f"{lost:,} tokens off its end, {what}"


def _judge(truncated: list[dict], max_length: int, lines: list[int] | None, source: str, allow: bool,
           tell) -> None:
    if not truncated:
        return

    def where(cut: dict) -> str:
        return f"{source}:{lines[cut['index']]}" if lines else f"{source}: example {cut['index'] + 1}"

    losing = [c for c in truncated if c["trainable_cut"]]
    if losing and not allow:
        problems = [Problem(where(c), describe(c, max_length)) for c in losing]
        raise DataError(problems, hint=f"{len(losing)} example(s) would lose trained tokens to train.max_length="
                        f"{max_length}: raise train.max_length, shorten or drop those examples, or set "
                        "train.allow_truncation=true to train on what is left of them")
    tell(f"{len(truncated)} example(s) of {source} are longer than train.max_length={max_length} and were truncated"
        + (f" ({len(losing)} lose trained tokens; train.allow_truncation=true)" if losing else ""))
    for cut in truncated[:SHOWN]:
        tell(f"  {where(cut)}: {describe(cut, max_length)}")
    if len(truncated) > SHOWN:
        tell(f"  ... and {len(truncated) - SHOWN} more")


def _longest_token(tokenizer) -> int:
    """An upper bound on the characters one token covers (byte-level vocabularies: bytes, which is more)."""
    try:
        return max(8, max(len(token) for token in tokenizer.get_vocab()))
    except (AttributeError, TypeError, ValueError):
        return 64


def _clip(messages: list[dict], budget: int) -> tuple[list[dict], bool]:
    """The conversation with its text cut to `budget` characters in all (each message keeps at least one), so that
    a 50 MB example is never tokenized whole: max_length tokens cannot cover more than max_length times the longest
    token's characters, so the tokens kept are the same."""
    used, out, clipped = 0, [], False
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            keep = max(budget - used, 1)
            if len(content) > keep:
                message, clipped = {**message, "content": content[:keep]}, True
            used += len(message["content"])
        elif isinstance(content, list):
            parts = []
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    keep = max(budget - used, 1)
                    if len(text) > keep:
                        part, clipped = {**part, "text": text[:keep]}, True
                    used += len(part["text"])
                parts.append(part)
            message = {**message, "content": parts}
        out.append(message)
    return out, clipped


def _row(messages: list[dict], tokenizer, max_length: int, assistant_only: bool, packing: bool, index: int,
         budget: int | None = None) -> tuple[dict, dict | None]:
    """One example's row (at most max_length tokens), and what truncation cut from it (None: nothing)."""
    clipped = False
    if budget is not None:
        messages, clipped = _clip(messages, budget)
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
    cut = None
    if len(ids) > max_length or clipped:
        kept = sum(mask[:max_length])
        cut = {"index": index, "tokens": len(ids), "clipped": clipped, "trainable_kept": kept,
               "trainable_cut": sum(mask) - kept}
        if clipped and budget is not None and not cut["trainable_cut"]:  # was any trained text beyond the clip?
            cut["trainable_cut"] = int(any(m.get("role") == "assistant" for m in messages[_first_clipped(messages,
                                                                                                     budget):]))
    ids, mask = ids[:max_length], mask[:max_length]
    if packing:
        return {"input_ids": ids, "assistant_masks": mask}, cut
    return {"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]}, cut


def _first_clipped(messages: list[dict], budget: int) -> int:
    """Index of the first message whose text reaches past `budget` characters."""
    used = 0
    for i, message in enumerate(messages):
        content = message.get("content")
        text = content if isinstance(content, str) else "".join(
            p.get("text", "") for p in content or [] if isinstance(p, dict) and isinstance(p.get("text"), str))
        used += len(text)
        if used >= budget:
            return i
    return len(messages)
