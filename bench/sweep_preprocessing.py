"""Preprocessing time of an 8-trial sweep against one trial's (goal: <= 1.2x), measured in one run.
Each trial tokenizes the training data through ftorch's content-keyed cache; without the cache every trial
would pay the full tokenization (shown for reference). Usage: python bench/sweep_preprocessing.py"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def examples(n: int) -> list[dict]:
    base = [json.loads(line) for line in (ROOT / "datasets/quickstart/train.jsonl").read_text().splitlines()]
    rows = []
    for i in range(n):
        row = json.loads(json.dumps(base[i % len(base)]))
        row["messages"][1]["content"] += f" (ref {i})"
        rows.append(row)
    return rows


def trials(data: list[dict], tokenizer, count: int, cache: Path) -> float:
    from ftorch.backends.hf import preprocess as _preprocess

    start = time.perf_counter()
    for _ in range(count):
        _preprocess.prepare(data, tokenizer, 256, True, False, cache)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=5000)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from ftorch.config.schema import TinyModel
    from ftorch.tiny import ensure_tiny_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_model(TinyModel()))
    data = examples(args.examples)
    with tempfile.TemporaryDirectory() as warm:  # template compilation and imports, paid by neither side
        trials(examples(50), tokenizer, 1, Path(warm))
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as eight:
        single = trials(data, tokenizer, 1, Path(one))
        sweep = trials(data, tokenizer, 8, Path(eight))
    print(f"{args.examples:,} chat examples, tiny-llama tokenizer, max_length 256")
    print("| preprocessing | seconds | × one trial |")
    print("|---|---|---|")
    print(f"| one trial | {single:.2f} | 1.00× |")
    print(f"| 8-trial sweep, shared cache | {sweep:.2f} | {sweep / single:.2f}× |")
    print(f"| 8-trial sweep without a cache (8 × one trial) | {8 * single:.2f} | 8.00× |")


if __name__ == "__main__":
    main()
