"""A sweep's evaluations with the answer cache: a 4-trial sweep (by default `sweep=lr_rank` on the quickstart, the
real model) from an empty answer cache, each trial's evaluation timed. The first trial generates everything; the
others reuse the base model's answers (the prompting arms, base and prompted on the test split, the suites' base
answers, the base side of drift) and generate only their own tuned answers. Prints each trial's evaluation time
and answers generated/reused, and the sweep's total evaluation time over the first trial's, measured in one run.

    python bench/sweep_eval.py                              (quickstart, sweep=lr_rank: about 10 minutes on 2 cores)
    python bench/sweep_eval.py --recipe quickstart-tiny     (seconds)
    python bench/sweep_eval.py -- train.max_steps=8          (overrides for every trial)

An evaluation's time runs from its folder's creation (its name is the start time) to its report.json being
written. The sweep's console output, with each evaluation stage's time, is kept in WORK/sweep.log.
FTORCH_CACHE is a fresh folder under the work folder, the usual cache's converted models linked in
(bench/answer_cache.py)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from answer_cache import environment, ftorch  # noqa: E402  (bench/answer_cache.py: one way to run ftorch here)


def evaluation_seconds(run: Path) -> float:
    """From the evaluation folder's start (its name) to its report.json."""
    folder = sorted(p for p in (run / "eval").iterdir() if p.is_dir())[-1]
    started = datetime.strptime(folder.name, "%Y-%m-%d_%H-%M-%S_%f")
    return datetime.fromtimestamp((folder / "report.json").stat().st_mtime).timestamp() - started.timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--sweep", default="lr_rank", help="a conf/sweep/ option (4 trials: lr_rank)")
    parser.add_argument("--work", type=Path, help="default: a temporary folder")
    parser.add_argument("overrides", nargs="*", help="key=value for every trial")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-sweep-eval-"))
    env = environment(work)
    ftorch("cache", "clear", "answers", env=env)
    seconds, result = ftorch("train", "-m", f"recipe={args.recipe}", f"sweep={args.sweep}",
                             f"paths.runs={work / 'runs'}", *args.overrides, env=env)
    (work / "sweep.log").write_text(result.stdout + result.stderr)  # each stage's time: "evaluated ... in Ns"
    trials = sorted((p.parent for p in (work / "runs").rglob("run.json")), key=lambda p: p.stat().st_mtime)
    rows = []
    for run in trials:
        record = json.loads((run / "run.json").read_text())
        folder = Path(record["evaluation"]["dir"])
        cache = json.loads((folder / "report.json").read_text()).get("answer_cache") or {}
        systems = cache.get("systems") or {}
        generated = sum(s.get("generated", 0) for s in systems.values())
        reused = sum(s.get("reused", 0) for s in systems.values())
        overrides = (run / ".hydra" / "overrides.yaml").read_text().split("\n") if (run / ".hydra").is_dir() else []
        swept = " ".join(line.removeprefix("- ") for line in overrides if line.startswith("- ") and "sweep=" not in
                         line and "recipe=" not in line and "paths.runs" not in line)
        rows.append((swept, evaluation_seconds(run), generated, reused, cache.get("measures_reused", [])))
    print(f"recipe={args.recipe} sweep={args.sweep} {' '.join(args.overrides)}: {len(rows)} trials, whole sweep "
          f"{seconds:.0f} s")
    print("| trial | evaluation (s) | answers generated | answers reused | measures reused |")
    print("|---|---|---|---|---|")
    for swept, evaluation, generated, reused, measures in rows:
        print(f"| {swept} | {evaluation:.1f} | {generated} | {reused} | {', '.join(measures) or '-'} |")
    total = sum(r[1] for r in rows)
    print(f"total evaluation {total:.1f} s = {total / rows[0][1]:.2f}x the first trial's ({rows[0][1]:.1f} s)")


if __name__ == "__main__":
    main()
