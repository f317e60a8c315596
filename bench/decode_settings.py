"""Evaluation generation under different decoding settings, on the quickstart's own prompts: threads (one, or the
policy's two passively waiting ones, or two spinning), batch size, LoRA merged into the weights or not, and
shared prompt prefixes or not.

    python bench/decode_settings.py [--rounds 2] [--settings t2p-b16,t1-b16,...] [--adapter RUN_DIR/adapter]
    python bench/decode_settings.py --prompts suites --settings t2p-b64-noshare,t2p-b64 --adapter RUN/adapter

A setting is `t<threads><p|s>-b<batch>[-merged][-noshare][-concat]`: `t2p` two threads waiting passively (ftorch's
default policy), `t2s` two threads spinning (OpenMP's default), `t1` one thread; `b16` 16 rows decoded together;
`noshare`: no shared prompt prefix (eval/prefix.py); `concat`: the KV cache grows by concatenation and drops each
finished row at once (transformers' DynamicCache, as before eval/kv_cache.py). Each measurement is a fresh process
(OpenMP reads its environment once, at load), timing `LocalModel.generate` after a short warm-up, max_new_tokens 48
(the quickstart's), on the test split's requests, zero-shot (`--prompts task`), or on the general suite's and safety
sets' prompts the quickstart answers (`--prompts suites`: user messages only, behind the chat template's default
system prompt). Settings alternate within each round; the table gives each setting's median seconds and its ratio to
the first setting, and whether its replies equal the first setting's."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

PROBE = """
import json, sys, time
from pathlib import Path
from ftorch.config.compose import find_project
from ftorch.eval.local import LocalModel
from ftorch.models import model_path
from ftorch.run.lifecycle import prepare
batch, merged, adapter, share, prompts, grow = (int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3] or None,
                                                sys.argv[4] == "1", sys.argv[5], sys.argv[6] == "1")
prepared = prepare(find_project(), ["recipe=quickstart"])
cfg = prepared.plan.config
model = LocalModel(model_path(cfg.model), Path(adapter) if adapter else None)
model.share_prefix = share
if not grow:
    model.grow_cache_in_place, model.shed_fraction = False, 0.0
if merged:
    model.model.merge_adapter()  # PEFT: LoRA folded into the base weights
if prompts == "suites":
    from ftorch.eval.finished import _general_and_safety_prompts
    asks = _general_and_safety_prompts(cfg.eval)
else:
    asks = [[m for m in e["messages"] if m["role"] != "assistant"] for e in prepared.data.splits["test"].examples]
model.generate(asks[:2], 4, 2)  # warm-up
started = time.perf_counter()
replies = model.generate(asks, 48, batch)
print(json.dumps({"seconds": time.perf_counter() - started, "replies": replies}))
"""


def parse(setting: str) -> tuple[dict[str, str], int, bool, bool, bool]:
    threads, batch, *rest = setting.split("-")
    env = {"OMP_NUM_THREADS": threads[1]}
    if threads.endswith("s"):
        env["GOMP_SPINCOUNT"] = "30000000000"
        env["OMP_WAIT_POLICY"] = "ACTIVE"
    else:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        env["GOMP_SPINCOUNT"] = "0"
    unknown = set(rest) - {"merged", "noshare", "concat"}
    if unknown:
        sys.exit(f"{setting}: unknown part {sorted(unknown)[0]!r} (merged, noshare, concat)")
    return env, int(batch[1:]), "merged" in rest, "noshare" not in rest, "concat" not in rest


def measure(setting: str, adapter: str, prompts: str) -> tuple[float, list[str]]:
    extra, batch, merged, share, grow = parse(setting)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env.update({"FTORCH_THREADS": extra["OMP_NUM_THREADS"], **extra})
    out = subprocess.run([sys.executable, "-c", PROBE, str(batch), "1" if merged else "0", adapter,
                          "1" if share else "0", prompts, "1" if grow else "0"], env=env, capture_output=True,
                         text=True)
    if out.returncode:
        sys.exit(f"{setting} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["seconds"], result["replies"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settings", default="t2p-b16,t1-b16,t2s-b16,t2p-b48,t1-b48")
    parser.add_argument("--adapter", default="", help="a run's adapter folder (tuned answers); default: the base "
                        "model")
    parser.add_argument("--prompts", choices=("task", "suites"), default="task")
    args = parser.parse_args()
    settings = args.settings.split(",")
    times: dict[str, list[float]] = {s: [] for s in settings}
    replies: dict[str, list[str]] = {}
    for round_ in range(args.rounds):
        for setting in settings:
            seconds, answers = measure(setting, args.adapter, args.prompts)
            times[setting].append(seconds)
            replies.setdefault(setting, answers)
            print(f"round {round_ + 1} {setting}: {seconds:.2f} s", file=sys.stderr, flush=True)
    first = settings[0]
    baseline = statistics.median(times[first])
    print(f"rounds: {args.rounds}, prompts: {args.prompts}, adapter: {args.adapter or 'none (base model)'}")
    print("| setting | median s | ratio to " + first + " | replies equal to " + first + "'s |")
    print("|---|---|---|---|")
    for setting in settings:
        median = statistics.median(times[setting])
        same = sum(a == b for a, b in zip(replies[setting], replies[first]))
        print(f"| {setting} | {median:.2f} | {median / baseline:.2f}x | {same}/{len(replies[first])} |")


if __name__ == "__main__":
    main()
