"""Export fidelity on a real run: every export kind `ftorch export` offers, each loaded back and verified against
base + adapter on the same held-out prompts in one process (the reference answers are generated once and shared),
with the share of identical greedy answers, the headline metric of both, file size (as a ratio to the fp32 merged
model) and wall time. Writes the table to stdout and, with --json, the raw summaries.

Usage: python bench/export_verify.py RUN_DIR [--limit 16] [--kinds merged:float32,merged:bfloat16,gguf:f16,...]
(RUN_DIR: a quickstart run, e.g. make train RECIPE=quickstart, or ftorch train recipe=quickstart train.max_steps=8
eval.enabled=false). Each export goes into a new RUN_DIR/export/<kind>-<type>[-N]/ and into run.json."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
KINDS = "merged:float32,merged:bfloat16,gguf:f16,gguf:q8_0,gguf:q4_0"


def size(entry: dict) -> int:
    folder = Path(entry["dir"])
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".safetensors", ".gguf"))


def main() -> None:
    from ftorch.export.run import Request, export
    from ftorch.export.source import VerificationFailed

    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--kinds", default=KINDS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for spec in args.kinds.split(","):
        kind, _, precision = spec.partition(":")
        request = Request(args.run_dir, kind, limit=args.limit,
                          **({"dtype": precision} if kind == "merged" else {"quant": precision}))
        started = time.perf_counter()
        try:
            entry = export(request, announce=lambda line: print("  " + line, flush=True))
        except VerificationFailed:
            from ftorch.run.rundir import RunDir

            entry = RunDir(args.run_dir).read()["export"]
        rows.append({"kind": kind, "precision": precision, "seconds": time.perf_counter() - started,
                     "bytes": size(entry), "dir": entry["dir"], "verification": entry["verification"]})
        print(f"{spec}: {rows[-1]['verification']['identical']:.1%} identical", flush=True)
    baseline = next((r["bytes"] for r in rows if r["precision"] == "float32"), rows[0]["bytes"])
    print("\n| export | identical answers | headline (adapter → export) | passed | size vs fp32 merged | wall s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        v = r["verification"]
        print(f"| {r['kind']} {r['precision']} | {v['identical']:.1%} ({v['n']}) | {v['headline']} "
              f"{v['adapter_metric']:.1%} → {v['export_metric']:.1%} | {'yes' if v['passed'] else 'NO'} | "
              f"{r['bytes'] / baseline:.2f}× | {r['seconds']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
