"""Validation of `ftorch data suspects` by planted noise: corrupt a seeded 10% of the quickstart training labels
(a wrong field value, two fields' values swapped, malformed JSON; in turn), train the recipe on the noisy file, rank
its examples, and measure the share of planted errors in the top 10% and 20% of suspects (precision, recall) for each
ranking (both signals, loss alone, disagreement alone) against random order (recall = the share reviewed). Then the
tuned headline on the test split of the noisy run against the same recipe trained on the clean file (paired, the
same test examples).

Usage: python bench/suspects.py [--recipe quickstart] [--rate 0.1] [--seed 0] [--out /tmp/suspects-bench]
                                [--clean-run RUN]   (a finished run of the same recipe on the clean file: reused)
                                [-- KEY=VALUE ...]  (more overrides for both trainings)
quickstart-tiny runs in a few minutes (a functional check: its random model learns little); quickstart is the real
measurement (SmolLM2-135M-Instruct on CPU: two trainings of 24 steps, 240 answers, two test evaluations)."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "datasets" / "quickstart" / "train.jsonl"
KINDS = ("wrong_value", "swapped_fields", "malformed_json")
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
ACTIONS = ["schedule", "cancel", "move"]


def corrupt(answer: str, kind: str, rng: random.Random, names: list[str]) -> str:
    """One planted error in an answer of the quickstart's JSON shape."""
    fields = json.loads(answer)
    if kind == "wrong_value":
        key = rng.choice(["action", "with", "day", "time"])
        pool = {"action": ACTIONS, "with": names, "day": DAYS,
                "time": [f"{h:02d}:{m:02d}" for h in range(8, 19) for m in (0, 30)]}[key]
        fields[key] = rng.choice([v for v in pool if v != fields[key]])
    elif kind == "swapped_fields":
        pairs = [("with", "day"), ("day", "time"), ("with", "topic")] if fields.get("topic") else [("with", "day"),
                                                                                                  ("day", "time")]
        a, b = rng.choice(pairs)
        fields[a], fields[b] = fields[b], fields[a]
    else:  # malformed: the closing brace gone, or a quote dropped
        text = json.dumps(fields)
        return text[:-1] if rng.random() < 0.5 else text.replace('"day": "', '"day": ', 1)
    return json.dumps(fields)


def plant(source: Path, target: Path, rate: float, seed: int) -> dict[int, str]:
    """Write the noisy copy; returns {line: kind} of the planted errors (lines are 1-based, as ftorch's)."""
    lines = source.read_text().splitlines()
    examples = [json.loads(line) for line in lines]
    names = sorted({json.loads(e["messages"][-1]["content"])["with"] for e in examples})
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(examples)), round(rate * len(examples))))
    planted = {}
    for n, index in enumerate(chosen):
        kind = KINDS[n % len(KINDS)]
        message = examples[index]["messages"][-1]
        message["content"] = corrupt(message["content"], kind, rng, names)
        planted[index + 1] = kind
    target.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples))
    return planted


def ftorch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-m", "ftorch", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        sys.exit(f"ftorch {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def train(recipe: str, data: Path, runs: Path, extra: list[str]) -> Path:
    before = set(runs.glob("*/*/run.json"))
    ftorch("train", f"recipe={recipe}", f"data.train={data}", f"paths.runs={runs}", "eval.enabled=false", *extra)
    (made,) = set(runs.glob("*/*/run.json")) - before
    return made.parent


def test_scores(run_dir: Path) -> list[float | None]:
    from ftorch.eval.curve import tuned_scores
    from ftorch.run.rundir import RunDir

    run = RunDir(run_dir)
    cfg = run.config()
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"enabled": True})})
    return tuned_scores(run, cfg, cfg.eval.headline, None)


def measure(rows: list[dict], planted: set[int]) -> dict:
    from ftorch.data.suspects import Signals, precision_recall, rank

    signals = [Signals(r["line"], r["hash"], r["prompt"], r["label"], r["answer"], r["loss"],
                       None if r["disagreement"] is None else 1.0 - r["disagreement"]) for r in rows]
    result = {}
    for by in ("both", "loss", "disagreement"):
        ranked = [s.line for s in rank(signals, by)]  # type: ignore[arg-type]
        result[by] = {f"top{int(100 * share)}": dict(zip(("precision", "recall"),
                                                         precision_recall(ranked, planted, share)))
                      for share in (0.1, 0.2)}
        by_kind = {}
        top = set(ranked[: round(0.2 * len(ranked))])
        for kind in KINDS:
            lines = {line for line, k in PLANTED.items() if k == kind}
            by_kind[kind] = sum(line in top for line in lines) / len(lines) if lines else None
        result[by]["top20_recall_by_kind"] = by_kind
    return result


PLANTED: dict[int, str] = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/suspects-bench"))
    parser.add_argument("--clean-run", type=Path, help="a finished run of the recipe on the clean file (reused)")
    parser.add_argument("--noisy-run", type=Path, help="a finished run on this bench's noisy file (reused)")
    parser.add_argument("--no-clean", action="store_true", help="rank only: no clean training, no headline")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    args.out.mkdir(parents=True, exist_ok=True)
    noisy_file = args.out / "train.noisy.jsonl"
    PLANTED.update(plant(TRAIN, noisy_file, args.rate, args.seed))
    (args.out / "planted.json").write_text(json.dumps(PLANTED, indent=1))
    print(f"planted {len(PLANTED)} errors in {noisy_file}: "
          + ", ".join(f"{k} {sum(v == k for v in PLANTED.values())}" for k in KINDS), flush=True)
    runs = args.out / "runs"
    noisy = args.noisy_run or train(args.recipe, noisy_file, runs, args.overrides)
    print(f"trained on the noisy file: {noisy}", flush=True)
    if not (noisy / "suspects.jsonl").is_file():
        ftorch("data", "suspects", str(noisy), "--by", "both")
    rows = [json.loads(line) for line in (noisy / "suspects.jsonl").read_text().splitlines()[1:]]
    found = measure(rows, set(PLANTED))
    (args.out / "ranking.json").write_text(json.dumps(found, indent=1))
    print(json.dumps(found, indent=1), flush=True)
    if args.no_clean:
        return
    clean = args.clean_run or train(args.recipe, TRAIN, runs, args.overrides)
    print(f"clean run: {clean}", flush=True)
    noisy_scores, clean_scores = test_scores(noisy), test_scores(clean)
    pairs = [(a, b) for a, b in zip(noisy_scores, clean_scores) if a is not None and b is not None]
    from ftorch.eval.stats import paired_bootstrap

    test = paired_bootstrap([a for a, _ in pairs], [b for _, b in pairs])
    headline = {"noisy": sum(a for a, _ in pairs) / len(pairs), "clean": sum(b for _, b in pairs) / len(pairs),
                "n": len(pairs), "clean_minus_noisy": test}
    result = {"recipe": args.recipe, "planted": len(PLANTED), "examples": len(rows), "rate": args.rate,
              "seed": args.seed, "ranking": found, "random": {"top10": {"precision": args.rate, "recall": 0.1},
                                                               "top20": {"precision": args.rate, "recall": 0.2}},
              "headline": headline, "noisy_run": str(noisy), "clean_run": str(clean)}
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    print(f"{'ranking':14} {'P@10%':>7} {'R@10%':>7} {'P@20%':>7} {'R@20%':>7}   R@20% by kind")
    for by, numbers in found.items():
        kinds = ", ".join(f"{k} {100 * v:.0f}%" for k, v in numbers["top20_recall_by_kind"].items() if v is not None)
        print(f"{by:14} {100 * numbers['top10']['precision']:6.1f}% {100 * numbers['top10']['recall']:6.1f}% "
              f"{100 * numbers['top20']['precision']:6.1f}% {100 * numbers['top20']['recall']:6.1f}%   {kinds}")
    print(f"{'random':14} {100 * args.rate:6.1f}% {10.0:6.1f}% {100 * args.rate:6.1f}% {20.0:6.1f}%")
    print(f"tuned headline on test (n={headline['n']}): clean {100 * headline['clean']:.1f}%, noisy "
          f"{100 * headline['noisy']:.1f}% (clean - noisy {100 * test['mean_diff']:+.1f} points, "
          f"95% CI {100 * test['ci'][0]:+.1f} to {100 * test['ci'][1]:+.1f}, p={test['p_value']:.2g})")
    print(f"results: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
