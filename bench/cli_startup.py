"""Wall time of `ftorch --help` and `ftorch plan` for the quickstart recipes (goals: --help <= 0.3 s, `plan
recipe=quickstart` <= 0.5 s, median of 7 on a quiet machine), against `python -c pass` measured in the same run.

With --baseline DIR (a copy of another version's tree, e.g. `git archive COMMIT src | tar -x -C DIR`), each
command also runs with DIR/src first on PYTHONPATH, interleaved with this tree's runs so that a change in the
machine's load hits both, and the table gives after/before as a ratio. Each command's CPU time (user + system,
from the kernel's accounting of the finished child) is reported too: on a busy machine wall time mostly measures
the wait for a core, CPU time much less so.

Usage: python bench/cli_startup.py [--repeat N] [--baseline DIR]"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FTORCH = [sys.executable, "-m", "ftorch"]
COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "ftorch --help": [*FTORCH, "--help"],
    "ftorch plan recipe=quickstart": [*FTORCH, "plan", "recipe=quickstart"],
    "ftorch plan recipe=quickstart-tiny": [*FTORCH, "plan", "recipe=quickstart-tiny"],
}


def env_for(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]).rstrip(":")}


def wall(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, env=env)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="another version's tree (its src/ is imported instead)")
    args = parser.parse_args()
    trees = {"this tree": env_for(ROOT / "src")}
    if args.baseline:
        trees = {"baseline": env_for(args.baseline.resolve() / "src"), **trees}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {(n, t): [] for n in COMMANDS for t in trees}
    for name, command in COMMANDS.items():
        for env in trees.values():
            wall(command, env)  # warm the file cache once
        for _ in range(args.repeat):
            for tree, env in trees.items():  # interleaved
                times[name, tree].append(wall(command, env))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}; median of {args.repeat}")
    for which, label in ((0, "wall"), (1, "CPU")):
        base = statistics.median(t[which] for t in times["python -c pass (baseline)", "this tree"])
        columns = " | ".join(f"{tree}: {label} (s)" for tree in trees)
        ratio = " | this tree / baseline" if args.baseline else ""
        print(f"\n| command | {columns} | this tree x python -c pass{ratio} |")
        print("|---|" + "---|" * (len(trees) + 1 + bool(args.baseline)))
        for name in COMMANDS:
            medians = {tree: statistics.median(t[which] for t in times[name, tree]) for tree in trees}
            cells = " | ".join(f"{medians[tree]:.3f}" for tree in trees)
            extra = f" | {medians['this tree'] / medians['baseline']:.2f}" if args.baseline else ""
            print(f"| `{name}` | {cells} | {medians['this tree'] / base:.1f}x{extra} |")


if __name__ == "__main__":
    main()
