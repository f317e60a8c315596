"""The evaluation of a quickstart run, timed on an idle machine and beside one CPU-bound competitor, with ftorch's
thread policy off (FTORCH_THREADS=off: the libraries' defaults) and on; the contention ratio (beside / idle) of
each is measured in this one run. Goal (issue 28): at most 2.5x with the policy on (it was about 6.7x).

The competitor is one other CPU-bound job as it would run without ftorch: a separate process doing float32
matmuls (1024x1024) in a loop with torch's default threads (one per CPU, OpenMP's default wait policy), the
variables of the policy removed from its environment; `--competitor python` runs a pure-Python busy loop
in one process per CPU instead.

What is timed: the whole `ftorch eval RUN --out TMP` command (start-up, model load, generation, scoring), by
default a short slice (EVAL_ARGS; `--small` a smaller one, `--full` the recipe's whole evaluation). The run: a
run directory given as argument, else one trained here: `--tiny` trains quickstart-tiny (the tiny random model,
about a minute, to check this script), otherwise the real quickstart for 2 steps.

Usage: python bench/contention.py [RUN_DIR] [--tiny] [--small | --full] [--repeat N]
                                  [--competitor torch|python] [--policies off,on,1]"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICY_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME",
               "TOKENIZERS_PARALLELISM", "FTORCH_THREADS", "FTORCH_THREAD_POLICY")
# a short evaluation: the held-out task on 8 examples, the prompting arms on 8 validation examples, no suites
EVAL_ARGS = ["eval.enabled=true", "eval.limit=8", "eval.validation_limit=8", "eval.general=false", "eval.drift=false",
             "eval.safety=false"]
# --small (the default with --tiny): fewer examples, one k-shot arm, short answers
SMALL_EVAL = ["eval.enabled=true", "eval.limit=4", "eval.validation_limit=4", "eval.k_shots=[1]",
             "eval.max_new_tokens=16", "eval.general=false", "eval.drift=false", "eval.safety=false"]
TINY_TRAIN = ["recipe=quickstart-tiny", "model.tiny.hidden_size=64", "model.tiny.intermediate_size=128",
              "model.tiny.num_heads=2", "train.epochs=2", "eval.enabled=false"]
REAL_TRAIN = ["recipe=quickstart", "train.max_steps=2", "eval.enabled=false"]
TORCH_COMPETITOR = """
import torch
a = torch.randn(1024, 1024)
while True:
    a = torch.tanh(a @ a)
"""
PYTHON_COMPETITOR = """
while True:
    pass
"""


def clean_env() -> dict[str, str]:
    """The environment without ftorch's thread policy: what a job started by hand would get."""
    return {k: v for k, v in os.environ.items() if k not in POLICY_VARS}


def train(runs: Path, overrides: list[str]) -> Path:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ftorch", "train", f"paths.runs={runs}", *overrides], cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"training the run to evaluate failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    run = next(p.parent for p in runs.rglob("run.json"))
    print(f"trained {run} in {time.perf_counter() - started:.0f} s", flush=True)
    return run


class Competitor:
    """One CPU-bound job beside the measurement: started on entry, killed (by its own pid) on exit."""

    def __init__(self, kind: str):
        self.kind = kind
        self.children: list[subprocess.Popen] = []

    def __enter__(self) -> Competitor:
        code = TORCH_COMPETITOR if self.kind == "torch" else PYTHON_COMPETITOR
        count = 1 if self.kind == "torch" else len(os.sched_getaffinity(0))
        self.children = [subprocess.Popen([sys.executable, "-c", code], env=clean_env()) for _ in range(count)]
        time.sleep(3)  # let it import torch and reach its loop
        return self

    def __exit__(self, *exc) -> None:
        for child in self.children:
            child.kill()
            child.wait()


def evaluate(run: Path, policy: str, extra: list[str]) -> float:
    env = clean_env()
    if policy != "on":
        env["FTORCH_THREADS"] = policy  # off, or a number
    with tempfile.TemporaryDirectory(prefix="contention-") as out:
        started = time.perf_counter()
        # every measurement generates its answers: the answer cache would serve the second from the first's
        done = subprocess.run([sys.executable, "-m", "ftorch", "eval", str(run), *extra, "eval.answer_cache=false",
                               "--out", out], cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"ftorch eval failed (policy {policy}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", nargs="?", type=Path, help="a finished run (default: train one here)")
    parser.add_argument("--tiny", action="store_true", help="train and evaluate quickstart-tiny (checks the script)")
    parser.add_argument("--full", action="store_true", help="the recipe's whole evaluation, not the short slice")
    parser.add_argument("--small", action="store_true", help="a smaller slice (4 examples, arms with k=1 only)")
    parser.add_argument("--repeat", type=int, default=1, help="measurements of each cell (the median is shown)")
    parser.add_argument("--competitor", choices=("torch", "python"), default="torch")
    parser.add_argument("--policies", default="off,on", help="which policies to measure, in this order: off "
                        "(FTORCH_THREADS=off), on (the policy's own choice) or a number N (FTORCH_THREADS=N)")
    args = parser.parse_args()
    extra = ["eval.enabled=true"] if args.full else SMALL_EVAL if args.tiny or args.small else EVAL_ARGS
    with tempfile.TemporaryDirectory(prefix="contention-runs-") as runs:
        run = args.run_dir or train(Path(runs), TINY_TRAIN if args.tiny else REAL_TRAIN)
        print(f"load average before: {os.getloadavg()[0]:.2f}; {len(os.sched_getaffinity(0))} CPUs; "
              f"competitor: {args.competitor}; evaluation: {' '.join(extra) or 'the whole recipe'}", flush=True)
        rows = []
        for policy in args.policies.split(","):
            idle, busy = [], []
            for _ in range(args.repeat):  # idle and contended alternate, so a drift in load hits both
                idle.append(evaluate(run, policy, extra))
                with Competitor(args.competitor):
                    busy.append(evaluate(run, policy, extra))
                print(f"policy {policy}: idle {idle[-1]:.1f} s, beside the competitor {busy[-1]:.1f} s", flush=True)
            rows.append((policy, statistics.median(idle), statistics.median(busy)))
    print("\n| thread policy | idle (s) | beside one CPU-bound job (s) | ratio |\n|---|---|---|---|")
    for policy, idle_s, busy_s in rows:
        print(f"| {policy} | {idle_s:.1f} | {busy_s:.1f} | {busy_s / idle_s:.2f}x |")


if __name__ == "__main__":
    main()
