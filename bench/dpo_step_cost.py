"""Cost of one DPO step against one SFT step on the same model, through ftorch's peft backend, measured in the
same process, alternating (SFT, DPO, SFT, DPO, ...), so the machine's noise hits both alike.

Both train the same LoRA (rank, targets), batch size, max_length and precision on the quickstart task: SFT on
the chat examples, DPO on the preference pairs built from the same requests (the preferred answer is the SFT
answer). A DPO step scores chosen and rejected (2x the sequences) with gradients, plus the reference model's
forward pass (the adapter-disabled base): about 3x the work of an SFT step of the same batch, with the
backward pass dominating. Seconds per step are the steady state from metrics.jsonl (from the end of the
first step to the last), so model loading and the first step's warm-up do not count.

Usage: python bench/dpo_step_cost.py [--model tiny|smollm2] [--steps 6] [--rounds 2] [--batch 4] [--method dpo]"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"tiny": ("quickstart-tiny", "dpo-quickstart-tiny"), "smollm2": ("quickstart", "dpo-quickstart")}


def seconds_per_step(recipe: str, steps: int, batch: int, extra: list[str]) -> float:
    """Steady-state seconds per optimizer step of `ftorch train recipe=...` run in this process."""
    from ftorch.backends import get_backend
    from ftorch.compose import find_project
    from ftorch.rundir import RunDir
    from ftorch.runner import prepare

    overrides = [f"recipe={recipe}", f"train.max_steps={steps}", f"train.batch_size={batch}",
                 "train.save_steps=100000", "train.logging_steps=1", "train.warmup_ratio=0", "eval=none",
                 "train.lora.modules_to_save=[]", *extra]
    prepared = prepare(find_project(ROOT), overrides)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp))
        run.start(recipe="bench", provider="peft", project_root=ROOT, overrides=[])
        get_backend("peft").run(prepared.plan, run)
        rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    return (train[-1]["time"] - train[0]["time"]) / (len(train) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=tuple(RECIPES), default="tiny")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--method", default="dpo", choices=("dpo", "orpo", "kto", "simpo"))
    args = parser.parse_args()
    import torch

    sft_recipe, dpo_recipe = RECIPES[args.model]
    shared = [f"train.max_length={args.max_length}", "train.lr=1e-4", "train.lora.r=16",
              "train.lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]",
              "train.precision=fp32", "train.packing=false", "train.gradient_checkpointing=false"]
    times: dict[str, list[float]] = {"sft": [], args.method: []}
    for round_ in range(args.rounds):
        times["sft"].append(seconds_per_step(sft_recipe, args.steps, args.batch, shared))
        times[args.method].append(seconds_per_step(dpo_recipe, args.steps, args.batch,
                                                   [*shared, f"train.method={args.method}"]))
        print(f"round {round_ + 1}: sft {times['sft'][-1]:.3f} s/step, {args.method} {times[args.method][-1]:.3f} "
              "s/step", flush=True)
    sft, pref = statistics.median(times["sft"]), statistics.median(times[args.method])
    result = {"model": args.model, "method": args.method, "batch": args.batch, "steps": args.steps,
              "rounds": args.rounds, "max_length": args.max_length, "threads": torch.get_num_threads(),
              "sft_s_per_step": sft, f"{args.method}_s_per_step": pref, "ratio": pref / sft, "all": times}
    print(json.dumps(result, indent=2))
    print(f"\n| trainer | median s / step | ratio |\n|---|---|---|\n| SFT (batch {args.batch}) | {sft:.3f} | 1.00× |\n"
          f"| {args.method.upper()} (batch {args.batch} pairs) | {pref:.3f} | {pref / sft:.2f}× |")


if __name__ == "__main__":
    main()
