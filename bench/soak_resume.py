"""Soak test of crash-consistent resume (issue 15): N cycles of `ftorch train` killed with SIGKILL at a seeded
point (mid-step, half-written checkpoint file, half-written adapter, adapter written but not renamed), then
`ftorch resume` to the end; counts the cycles whose adapter is byte-identical to an uninterrupted run's, and
checks run.json after every kill. Uses the fault-injection harness of tests/support/crash.py.

    .venv/bin/python bench/soak_resume.py [-n 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]  # the crash harness: tests/support/crash.py
os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "TOKENIZERS_PARALLELISM": "false", "FTORCH_ROOT": str(ROOT)})


def main() -> int:
    import support.crash as harness

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="cycles (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ftorch-soak-"))
    start = time.time()
    assert harness.run_cli_forked(["train", f"paths.runs={work / 'reference'}", *harness.ARGS]) == 0
    reference = harness.adapter_bytes(harness.the_run(work / "reference"))
    reached, killed, problems = 0, 0, []
    for cycle, point in enumerate(harness.kill_points(args.seed, args.n)):
        runs = work / f"c{cycle}"
        try:
            code = harness.run_cli_forked(["train", f"paths.runs={runs}", *harness.ARGS], kill=point)
            run_dir = harness.the_run(runs)
            if code == -signal.SIGKILL:
                killed += 1
                harness.assert_truthful_after_kill(run_dir)
                assert harness.run_cli_forked(["resume", str(run_dir)]) == 0, "resume failed"
            else:
                assert code == 0, f"exit {code}"
            harness.assert_finished_like(run_dir, reference)
            reached += 1
        except Exception as exc:  # a failed assertion, a timeout, a torn file: this cycle failed, the soak goes on
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            problems.append(f"cycle {cycle} {point}: {type(exc).__name__}: {first}")
        shutil.rmtree(runs, ignore_errors=True)
        print(f"\r{cycle + 1}/{args.n} cycles, {reached} reached the reference adapter", end="", flush=True)
    print(f"\n{reached}/{args.n} cycles reached the uninterrupted adapter byte for byte; {killed} of them were "
          f"killed and resumed, the others finished before their kill point ({time.time() - start:.0f} s, "
          f"seed {args.seed})")
    for problem in problems:
        print("  " + problem)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if reached == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
