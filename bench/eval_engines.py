"""Two evaluations of the same run compared (bench/device_check.sh: vLLM's engine against the transformers
decoder): each command's wall seconds, the headline score of base, prompted and tuned, and how many held-out
answers are identical.

Usage: python bench/eval_engines.py NAME=EVAL_OUT_DIR:SECONDS NAME=EVAL_OUT_DIR:SECONDS
(EVAL_OUT_DIR is an `ftorch eval --out` folder; its newest evaluation is read.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SYSTEMS = ("base", "prompted", "tuned")


def newest(folder: Path) -> Path:
    found = sorted(folder.glob("*/report.json")) or ([folder / "report.json"] if (folder / "report.json").is_file()
                                                     else [])
    if not found:
        raise SystemExit(f"no evaluation (report.json) under {folder}")
    return found[-1].parent


def answers(folder: Path) -> list[dict[str, str]]:
    return [{name: system["output"] for name, system in json.loads(line)["systems"].items()}
            for line in (folder / "predictions.jsonl").read_text().splitlines()]


def main(argv: list[str]) -> int:
    runs = {}
    for arg in argv:
        name, _, rest = arg.partition("=")
        folder, _, seconds = rest.rpartition(":")
        runs[name] = (newest(Path(folder)), float(seconds))
    print("| generation | command wall (s) | " + " | ".join(f"{s} (headline)" for s in SYSTEMS) + " |")
    print("|---|---|" + "---|" * len(SYSTEMS))
    for name, (folder, seconds) in runs.items():
        task = json.loads((folder / "report.json").read_text())["task"]
        means = [(task["systems"].get(s, {}).get(task["headline"]) or {}).get("mean") for s in SYSTEMS]
        print(f"| {name} | {seconds:.0f} | " + " | ".join("–" if m is None else f"{m:.3f}" for m in means) + " |")
    (first, t1), (second, t2) = list(runs.values())[:2]
    pairs = [(a[s], b.get(s)) for a, b in zip(answers(first), answers(second)) for s in a]
    names = list(runs)
    print(f"\n{names[0]} / {names[1]} wall: {t1 / t2:.2f}; identical held-out answers: "
          f"{sum(x == y for x, y in pairs)}/{len(pairs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
