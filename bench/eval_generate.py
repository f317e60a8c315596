"""Evaluation generation speed: batched (left padding, KV cache, greedy) against one-at-a-time `generate`
on the same tiny model and held-out prompts, in one run, with identical outputs (goal: >= 4x at batch 16
on CPU). The model is the quickstart's tiny Llama after a short LoRA run, so replies are not empty.
Usage: python bench/eval_generate.py"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def trained_adapter(tmp: Path) -> tuple[str, Path]:
    from ftorch.backends import get_backend
    from ftorch.backends._hf import model_path
    from ftorch.compose import find_project
    from ftorch.rundir import RunDir
    from ftorch.runner import prepare

    prepared = prepare(find_project(ROOT), ["train.max_steps=40", "train.save_steps=1000", "eval=none"])
    run = RunDir(tmp)
    run.start(recipe="bench", provider="peft", project_root=ROOT, overrides=[])
    get_backend("peft").run(prepared.plan, run)
    return model_path(prepared.config.model), run.adapter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--fixed-length", action="store_true",
                        help="every reply exactly max-new-tokens long: the engine's throughput, not the model's EOS")
    args = parser.parse_args()
    import torch

    from ftorch.eval.local import LocalModel

    with tempfile.TemporaryDirectory() as tmp:
        base, adapter = trained_adapter(Path(tmp))
        model = LocalModel(base, adapter)
        lines = (ROOT / "datasets/quickstart/test.jsonl").read_text().splitlines()[: args.examples]
        prompts = [json.loads(line)["messages"][:2] for line in lines]
        model.generate(prompts[:2], 4, 2)  # warm-up
        fixed = args.max_new_tokens if args.fixed_length else 0
        start = time.perf_counter()
        single = model.generate(prompts, args.max_new_tokens, 1, min_new_tokens=fixed)
        one_at_a_time = time.perf_counter() - start
        start = time.perf_counter()
        batched = model.generate(prompts, args.max_new_tokens, args.batch, min_new_tokens=fixed)
        batched_s = time.perf_counter() - start
    same = sum(a == b for a, b in zip(single, batched))
    print(f"threads: {torch.get_num_threads()}, {len(prompts)} prompts, max_new_tokens {args.max_new_tokens}"
          + (" (fixed length)" if args.fixed_length else " (stopping at end of turn)"))
    print("| generation | examples/s | ratio |")
    print("|---|---|---|")
    print(f"| one at a time | {len(prompts) / one_at_a_time:.2f} | 1.00× |")
    print(f"| batched ({args.batch}) | {len(prompts) / batched_s:.2f} | {one_at_a_time / batched_s:.2f}× |")
    print(f"identical outputs: {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
