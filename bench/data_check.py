"""`ftorch data check` format-check speed on a generated 100k-example chat file, against a straightforward
per-line json.loads + dict-walking checker written here as the baseline (goal: >= 10x its examples/s).
Token counting (o200k_base) is timed separately. Each measurement runs in a fresh child process so its
peak RSS is its own; rounds alternate so machine noise hits both. Usage: python bench/data_check.py"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROLES = {"system", "developer", "user", "assistant", "tool"}
KEYS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id"}


def baseline_check(path: Path) -> int:
    """What one writes first: json.loads each line and walk the dicts."""
    problems = 0
    with path.open("rb") as handle:
        for raw in handle:
            if not raw.strip():
                continue
            try:
                example = json.loads(raw)
            except ValueError:
                problems += 1
                continue
            messages = example.get("messages") if isinstance(example, dict) else None
            if not isinstance(messages, list) or not messages:
                problems += 1
                continue
            has_assistant = False
            for message in messages:
                if not isinstance(message, dict) or message.get("role") not in ROLES or set(message) - KEYS:
                    problems += 1
                    break
                content = message.get("content")
                if not isinstance(content, str) or not content.strip():
                    problems += 1
                    break
                if message.get("weight") not in (None, 0, 1):
                    problems += 1
                    break
                has_assistant |= message["role"] == "assistant"
            else:
                problems += not has_assistant
    return problems


def generate(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    words = ["the", "a", "model", "answer", "format", "json", "user", "request", "time", "day", "meeting", "price",
             "list", "item", "value"]
    with path.open("w") as handle:
        for i in range(n):
            user = " ".join(rng.choice(words) for _ in range(rng.randint(5, 60)))
            answer = json.dumps({"id": i, "text": " ".join(rng.choice(words) for _ in range(rng.randint(3, 40)))})
            messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
            if rng.random() < 0.7:
                messages.insert(0, {"role": "system", "content": "Reply with JSON only."})
            handle.write(json.dumps({"messages": messages}) + "\n")


def child(mode: str, path: Path) -> None:
    examples = sum(1 for _ in path.open("rb"))  # counted outside the timed part, for both
    if mode == "ftorch-check":
        from ftorch.data.checks import format_issues  # imported outside the timed part, like json
    start = time.perf_counter()
    if mode == "baseline":
        problems = baseline_check(path)
    elif mode == "ftorch-check":
        problems = len(format_issues(path, "chat"))
    else:  # ftorch-tokens: the full inspect (check + profile + o200k_base token counts)
        from ftorch.data.report import inspect_file
        from ftorch.data.tokens import counter_for

        counter = counter_for(None)
        start = time.perf_counter()  # token counting measured without the one-off encoding load
        report = inspect_file(path, "chat", counter)
        problems, examples = len(report.errors), report.profile.examples
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "seconds": seconds, "examples": examples, "problems": problems, "rss_mib": rss}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jsonl"
        generate(path, args.examples)
        size = path.stat().st_size / 2**20
        results: dict[str, list[dict]] = {"baseline": [], "ftorch-check": [], "ftorch-tokens": []}
        for _ in range(args.rounds):
            for mode in results:
                out = subprocess.run([sys.executable, __file__, "--child", mode, str(path)], check=True,
                                     capture_output=True, text=True).stdout
                results[mode].append(json.loads(out))
    base = statistics.median(r["examples"] / r["seconds"] for r in results["baseline"])
    print(f"{args.examples:,} examples, {size:.0f} MiB, median of {args.rounds} alternating rounds")
    print("| checker | examples/s | × baseline | peak RSS (MiB) |")
    print("|---|---|---|---|")
    names = {"baseline": "baseline: json.loads + dict walk", "ftorch-check": "ftorch format check",
             "ftorch-tokens": "ftorch check + profile + o200k token counts"}
    for mode, runs in results.items():
        rate = statistics.median(r["examples"] / r["seconds"] for r in runs)
        rss = max(r["rss_mib"] for r in runs)
        print(f"| {names[mode]} | {rate:,.0f} | {rate / base:.2f}× | {rss:.0f} |")


if __name__ == "__main__":
    main()
