"""Wall time of `ftorch --help` and `ftorch plan recipe=quickstart` (goals: <= 0.3 s and <= 1 s),
against `python -c pass` measured in the same run. Usage: python bench/cli_startup.py [--repeat N]"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "ftorch --help": [sys.executable, "-m", "ftorch", "--help"],
    "ftorch plan recipe=quickstart": [sys.executable, "-m", "ftorch", "plan", "recipe=quickstart"],
}


def median_wall(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args()
    results = {name: median_wall(cmd, args.repeat) for name, cmd in COMMANDS.items()}
    base = results["python -c pass (baseline)"]
    print(f"| command | median wall (s), {args.repeat} runs | × python -c pass |")
    print("|---|---|---|")
    for name, seconds in results.items():
        print(f"| `{name}` | {seconds:.3f} | {seconds / base:.1f}× |")


if __name__ == "__main__":
    main()
