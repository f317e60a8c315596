"""The answer cache's effect on `ftorch eval RUN`: a first evaluation with an empty answer cache against a second of
the same run, as a ratio of wall times measured in one run of this script (the box is shared: compare only
within a run), with a check that both give the same numbers. With --profile, a third evaluation runs under
cProfile and the script prints where its time went (what the cache leaves).

Usage: python bench/answer_cache.py                        (trains a short quickstart-tiny run first)
       python bench/answer_cache.py --recipe quickstart --steps 2   (the real model; minutes)
       python bench/answer_cache.py --run RUN_DIR [--profile] [-- eval.key=value ...]
FTORCH_CACHE is a fresh folder under the work folder (the usual cache's converted GGUF models are linked in, so
the real model is not converted again)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAME = ("task", "significance", "significance_by_metric", "general", "safety", "held_out_loss", "drift", "cost")
PROFILED = {"model load (imports included)": "finished.py:{}(_models_for)", "suite": "suite.py:{}(evaluate)",
            "  prompting arms": "selection.py:{}(choose)", "  held-out loss": "suite.py:{}(_held_out_loss)",
            "  drift": "drift.py:{}(drift)", "  general suite": "suite.py:{}(_general)",
            "  safety suite": "suite.py:{}(_safety)", "  prompt-token costs": "suite.py:{}(_cost)",
            "report plot": "report.py:{}(plot)", "trade-off plot": "tradeoff.py:{}(plot)",
            "answer files": "suite.py:{}(save)", "library log (imports)": "library_log.py:{}(attach_log_file)",
            "answer cache: hashing, opening": "answer_cache.py:{}(wrap)"}


def ftorch(*args: str, env: dict, profile: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    command = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else []), "-m", "ftorch", *args]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"ftorch {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return seconds, result


def latest_eval(run: Path) -> Path:
    return sorted(p for p in (run / "eval").iterdir() if p.is_dir())[-1]


def environment(work: Path) -> dict:
    cache = work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    usual = Path(os.environ.get("FTORCH_CACHE", Path.home() / ".cache" / "ftorch")) / "models"
    (cache / "models").mkdir(exist_ok=True)
    for entry in usual.glob("gguf-*") if usual.is_dir() else []:  # converted models, linked one by one: what is
        if not (cache / "models" / entry.name).exists():      # built here (a tiny model) stays here
            (cache / "models" / entry.name).symlink_to(entry)
    return {**os.environ, "FTORCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT / "src")}


def profile_lines(path: Path) -> list[str]:
    import pstats

    stats = pstats.Stats(str(path))
    total = max(entry[3] for entry in stats.stats.values())  # type: ignore[attr-defined]
    lines = [f"  {'whole process':<34} {total:6.1f} s"]
    for label, pattern in PROFILED.items():
        found = [entry[3] for (file, line, name), entry in stats.stats.items()  # type: ignore[attr-defined]
                 if pattern.format(line) == f"{Path(file).name}:{line}({name})"]
        if found:
            lines.append(f"  {label:<34} {max(found):6.1f} s")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="quickstart-tiny")
    parser.add_argument("--steps", type=int, default=20, help="training steps of the run to evaluate")
    parser.add_argument("--run", type=Path, help="evaluate this run instead of training one")
    parser.add_argument("--work", type=Path, help="default: a temporary folder")
    parser.add_argument("--profile", action="store_true", help="a third evaluation under cProfile")
    parser.add_argument("overrides", nargs="*", help="eval.key=value for every evaluation")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-answer-cache-"))
    env = environment(work)
    run = args.run
    if run is None:
        seconds, _ = ftorch("train", f"recipe={args.recipe}", f"train.max_steps={args.steps}", "eval.enabled=false",
                            f"paths.runs={work / 'runs'}", env=env)
        run = next((work / "runs").glob("*/*/run.json")).parent
        print(f"trained {run} in {seconds:.0f} s")
    ftorch("cache", "clear", "answers", env=env)
    first, _ = ftorch("eval", str(run), *args.overrides, env=env)
    first_report = json.loads((latest_eval(run) / "report.json").read_text())
    second, shown = ftorch("eval", str(run), *args.overrides, env=env)
    second_report = json.loads((latest_eval(run) / "report.json").read_text())
    differ = [k for k in SAME if first_report.get(k) != second_report.get(k)]
    rows = len((latest_eval(run) / "predictions.jsonl").read_text().splitlines())
    use = second_report["answer_cache"]
    print(f"first ftorch eval (empty answer cache): {first:6.1f} s; "
          f"{first_report['answer_cache']['systems']}")
    print(f"second ftorch eval (same run):          {second:6.1f} s; {use['systems']}, "
          f"measures reused: {use['measures_reused']}")
    print(f"ratio second / first: {second / first:.2f}; identical numbers: "
          f"{'yes' if not differ else 'NO, differ in ' + ', '.join(differ)}; "
          f"{rows} held-out examples")
    print(next(line for line in shown.stdout.splitlines() if line.startswith("answers:")))
    if args.profile:
        path = work / "third.prof"
        third, _ = ftorch("eval", str(run), *args.overrides, env=env, profile=path)
        print(f"third ftorch eval under cProfile: {third:.1f} s; where the time went:")
        print("\n".join(profile_lines(path)))


if __name__ == "__main__":
    main()
