"""Cost of one DPO step against one SFT step on provider=unsloth (Unsloth's CPU fallback with provider.allow_cpu,
or its GPU path where there is one), same model, LoRA, batch size and max_length: the counterpart of
bench/dpo_step_cost.py, which measures provider=peft in-process. Unsloth trains in a child process, so each
measurement is whole `ftorch train` runs:
- CPU seconds per step (the figure to read on a shared machine): the process tree's CPU time of a run of
  --steps steps less that of a run of 2 steps, over the difference in steps, so imports, loading and the
  adapter's save and checks cancel out;
- wall seconds per step in steady state, from metrics.jsonl's timestamps of the long run (first step left out).
Runs alternate (SFT, DPO, SFT, DPO, ...) so the machine's noise hits both alike; medians over the rounds.

Run it with the Unsloth environment's interpreter:
    .venv-unsloth/bin/python bench/unsloth_dpo_step_cost.py [--model tiny|smollm2] [--steps 8] [--rounds 2]
        [--batch 4] [--method dpo]"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"tiny": ("quickstart-tiny", "dpo-quickstart-tiny"), "smollm2": ("quickstart", "dpo-quickstart")}


SHORT = 2  # steps of the run whose CPU time is subtracted


def run(recipe: str, steps: int, batch: int, extra: list[str]) -> tuple[float, list[float]]:
    """(CPU seconds of the whole process tree, the train rows' timestamps) of one `ftorch train` run."""
    with tempfile.TemporaryDirectory() as runs:
        command = [sys.executable, "-m", "ftorch", "train", f"recipe={recipe}", "provider=unsloth",
                   "provider.allow_cpu=true", f"train.max_steps={steps}", f"train.batch_size={batch}",
                   f"train.save_steps={steps}", "eval=none", f"paths.runs={runs}", *extra]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        (metrics,) = Path(runs).rglob("metrics.jsonl")
        times = [row["time"] for row in map(json.loads, metrics.read_text().splitlines()) if row["kind"] == "train"]
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return cpu, times


def per_step(recipe: str, steps: int, batch: int, extra: list[str]) -> tuple[float, float]:
    """(CPU, wall) seconds per optimizer step."""
    cpu_long, times = run(recipe, steps, batch, extra)
    cpu_short, _ = run(recipe, SHORT, batch, extra)
    return (cpu_long - cpu_short) / (steps - SHORT), (times[-1] - times[0]) / (len(times) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(RECIPES), default="tiny")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--method", default="dpo", choices=["dpo", "orpo", "kto", "simpo"])
    args = parser.parse_args()
    sft_recipe, pref_recipe = RECIPES[args.model]
    # the same LoRA and sequence budget for both: the preference recipe's
    shared = ["train.max_length=192" if args.model == "smollm2" else "train.max_length=256",
              "train.lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"]
    if args.steps < SHORT + 2:
        raise SystemExit(f"--steps must be at least {SHORT + 2}")
    sft, pref = [], []
    for _ in range(args.rounds):
        sft.append(per_step(sft_recipe, args.steps, args.batch, shared))
        pref.append(per_step(pref_recipe, args.steps, args.batch, [*shared, f"train.method={args.method}"]))
        print(f"round: SFT {sft[-1][0]:.2f} CPU s/step ({sft[-1][1]:.2f} wall), {args.method.upper()} "
              f"{pref[-1][0]:.2f} CPU s/step ({pref[-1][1]:.2f} wall)", flush=True)
    result = {"model": args.model, "provider": "unsloth", "method": args.method, "batch": args.batch,
              "steps": args.steps, "rounds": args.rounds}
    for i, kind in enumerate(("cpu", "wall")):
        s, p = statistics.median(r[i] for r in sft), statistics.median(r[i] for r in pref)
        result.update({f"sft_{kind}_s_per_step": round(s, 3), f"{args.method}_{kind}_s_per_step": round(p, 3),
                       f"{kind}_ratio": round(p / s, 2)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
