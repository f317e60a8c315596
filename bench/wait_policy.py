"""OpenMP's waiting, quiet and beside one CPU-bound job: the thread policy's PASSIVE waiting against the libraries'
default spinning, on the decode-bound part of an evaluation (8 greedy replies of up to 48 tokens from
SmolLM2-135M-Instruct, batch 8, 2 torch threads).

    python bench/wait_policy.py [--rounds 2]

Each measurement is a fresh process (OpenMP reads its environment once, at load). Modes: `passive` (what
ftorch's policy sets: OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT=0), `spin10k` (GOMP_SPINCOUNT=10000, a short spin
then sleep), `default` (FTORCH_THREADS=off: libgomp's own spinning). Then the same beside a competitor: a separate
process doing 1024x1024 matmuls with torch's default threads. Prints seconds per mode, and each mode's contended
time over its quiet time."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

MODES = {"passive": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"},
         "spin10k": {"GOMP_SPINCOUNT": "10000"},
         "default": {"FTORCH_THREADS": "off"}}

PROBE = """
import sys, time
from ftorch.config.compose import find_project
from ftorch.eval.local import LocalModel
from ftorch.models import model_path
from ftorch.run.lifecycle import prepare
cfg = prepare(find_project(), ["recipe=quickstart"]).plan.config
model = LocalModel(model_path(cfg.model), None)
asks = [[{"role": "user", "content": f"Write a short note number {i} about the weather and a meeting at {i} pm."}]
        for i in range(8)]
model.generate(asks[:2], 8, 8)  # warm-up
started = time.perf_counter()
model.generate(asks, 48, 8)
print(time.perf_counter() - started)
"""

COMPETITOR = "import torch\na = torch.randn(1024, 1024)\nwhile True:\n    a = torch.tanh(a @ a)\n"


def measure(mode: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env.update({"OMP_NUM_THREADS": "2", **MODES[mode]})
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    quiet = {m: [] for m in MODES}
    busy = {m: [] for m in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            quiet[mode].append(measure(mode))
    competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR])
    try:
        time.sleep(3)
        for _ in range(args.rounds):
            for mode in MODES:
                busy[mode].append(measure(mode))
    finally:
        competitor.kill()
    print(f"{'mode':10} {'quiet s':>8} {'beside a job s':>15} {'ratio':>6}")
    for mode in MODES:
        q, b = statistics.median(quiet[mode]), statistics.median(busy[mode])
        print(f"{mode:10} {q:8.2f} {b:15.2f} {b / q:6.2f}")


if __name__ == "__main__":
    main()
