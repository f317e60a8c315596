"""Cost of one DPO step against one SFT step on the same model, through ftorch's peft backend, measured in the
same process, alternating (SFT, DPO, SFT, DPO, ...), so the machine's noise hits both alike.

Both train the same LoRA (rank, targets), batch size, max_length and precision on the quickstart task: SFT on
the chat examples, DPO on the preference pairs built from the same requests (the preferred answer is the SFT
answer). A DPO step scores chosen and rejected (2x the sequences) with gradients, plus the reference model's
forward pass (the adapter-disabled base): about 3x the work of an SFT step of the same batch, with the
backward pass dominating. Seconds per step are the steady state from metrics.jsonl (from the end of the
first step to the last), so model loading and the first step's warm-up do not count.

The CPU seconds of the process per step (one torch thread by default) are the figure to read on a shared
machine; wall seconds are printed beside them.

Usage: python bench/dpo_step_cost.py [--model tiny|smollm2] [--steps 6] [--rounds 2] [--batch 4] [--method dpo]
       [--threads 1]"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"tiny": ("quickstart-tiny", "dpo-quickstart-tiny"), "smollm2": ("quickstart", "dpo-quickstart")}


def seconds_per_step(recipe: str, steps: int, batch: int, extra: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds per optimizer step of `ftorch train recipe=...` run in this process, steady state
    (the first step left out). CPU seconds are this process's, all threads: on a shared machine they move far
    less than wall time when other work competes for the cores."""
    from ftorch.backends import _hf, get_backend
    from ftorch.config.compose import find_project
    from ftorch.run.lifecycle import prepare
    from ftorch.run.rundir import RunDir

    cpu: list[float] = []
    original = _hf.metrics_callback

    def timed_callback(run):
        recorder = original(run)
        base = type(recorder)

        class Timed(base):
            def on_step_begin(self, args, state, control, **kwargs):
                self.started = time.process_time()

            def on_step_end(self, args, state, control, **kwargs):
                cpu.append(time.process_time() - self.started)

        recorder.__class__ = Timed
        return recorder

    _hf.metrics_callback = timed_callback
    overrides = [f"recipe={recipe}", f"train.max_steps={steps}", f"train.batch_size={batch}",
                 "train.save_steps=100000", "train.logging_steps=1", "train.warmup_ratio=0", "eval=none",
                 "train.lora.modules_to_save=[]", *extra]
    prepared = prepare(find_project(ROOT), overrides)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp))
        run.start(recipe="bench", provider="peft", project_root=ROOT, overrides=[])
        try:
            get_backend("peft").run(prepared.plan, run)
        finally:
            _hf.metrics_callback = original
        rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    return (train[-1]["time"] - train[0]["time"]) / (len(train) - 1), statistics.median(cpu[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=tuple(RECIPES), default="tiny")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=None, help="default: 384 for tiny (its small BPE vocabulary "
                        "makes the quickstart's examples up to ~300 tokens; nothing may be cut, or DPO would train "
                        "on shorter rows than SFT), 192 for smollm2 (examples ~110 tokens)")
    parser.add_argument("--method", default="dpo", choices=("dpo", "orpo", "kto", "simpo"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 (default) keeps the CPU seconds "
                        "free of idle OpenMP threads spinning while they wait for a busy core")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    sft_recipe, dpo_recipe = RECIPES[args.model]
    args.max_length = args.max_length or {"tiny": 384, "smollm2": 192}[args.model]
    shared = [f"train.max_length={args.max_length}", "train.lr=1e-4", "train.lora.r=16",
              "train.lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]",
              "train.precision=fp32", "train.packing=false", "train.gradient_checkpointing=false"]
    times: dict[str, list[tuple[float, float]]] = {"sft": [], args.method: []}
    for round_ in range(args.rounds):
        times["sft"].append(seconds_per_step(sft_recipe, args.steps, args.batch, shared))
        times[args.method].append(seconds_per_step(dpo_recipe, args.steps, args.batch,
                                                   [*shared, f"train.method={args.method}"]))
        (sw, sc), (pw, pc) = times["sft"][-1], times[args.method][-1]
        print(f"round {round_ + 1}: sft {sw:.3f} s/step wall, {sc:.3f} CPU; {args.method} {pw:.3f} wall, {pc:.3f} CPU",
              flush=True)

    def median(name: str, index: int) -> float:
        return statistics.median(t[index] for t in times[name])

    sft_wall, sft_cpu, wall, cpu = median("sft", 0), median("sft", 1), median(args.method, 0), median(args.method, 1)
    result = {"model": args.model, "method": args.method, "batch": args.batch, "steps": args.steps,
              "rounds": args.rounds, "max_length": args.max_length, "threads": torch.get_num_threads(),
              "sft_wall_s_per_step": sft_wall, "sft_cpu_s_per_step": sft_cpu,
              f"{args.method}_wall_s_per_step": wall, f"{args.method}_cpu_s_per_step": cpu,
              "ratio_wall": wall / sft_wall, "ratio_cpu": cpu / sft_cpu, "all": times}
    print(json.dumps(result, indent=2))
    print(f"\n| trainer | median wall s / step | ratio | median CPU s / step | ratio |\n|---|---|---|---|---|\n"
          f"| SFT (batch {args.batch}) | {sft_wall:.3f} | 1.00× | {sft_cpu:.3f} | 1.00× |\n"
          f"| {args.method.upper()} (batch {args.batch} pairs) | {wall:.3f} | {wall / sft_wall:.2f}× | {cpu:.3f} | "
          f"{cpu / sft_cpu:.2f}× |")


if __name__ == "__main__":
    main()
