"""Drafted decoding (eval/drafts.py) as a sweep's later trial meets it: trial B's tuned replies to the quickstart's
held-out requests and to its general-suite and safety prompts, decoded without drafts and with the drafts the
answer cache would hand over (trial A's tuned replies and the base model's, newest first; or the base model's
alone, as in a sweep's first trial). One process, the settings alternating within each round; medians, forward
passes, and replies compared with the undrafted ones.

    python bench/drafted_decoding.py --adapters SWEEP/trial_0/adapter SWEEP/trial_1/adapter [--rounds 3]

Needs two adapters of the quickstart (e.g. `ftorch train -m recipe=quickstart sweep=lr_rank`, or
bench/sweep_eval.py's work folder)."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", nargs=2, type=Path, required=True, metavar=("EARLIER", "LATER"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from ftorch.config.compose import find_project
    from ftorch.eval.finished import _general_and_safety_prompts
    from ftorch.eval.local import LocalModel
    from ftorch.models import model_path
    from ftorch.run.lifecycle import prepare

    prepared = prepare(find_project(), ["recipe=quickstart"])
    cfg = prepared.plan.config
    prompts = {"40 held-out requests": [[m for m in e["messages"] if m["role"] != "assistant"]
                                        for e in prepared.data.splits["test"].examples],
               "72 suite prompts": _general_and_safety_prompts(cfg.eval)}
    earlier = LocalModel(model_path(cfg.model), args.adapters[0])
    later = LocalModel(model_path(cfg.model), args.adapters[1])
    sources = {}
    for name, asks in prompts.items():
        with earlier.system("base"):
            base = earlier.generate(asks, cfg.eval.max_new_tokens, cfg.eval.decode_batch_size)
        with earlier.system("tuned"):
            tuned = earlier.generate(asks, cfg.eval.max_new_tokens, cfg.eval.decode_batch_size)
        sources[name] = {"none": None, "base's": [[b] for b in base],
                         "earlier trial's and base's": [[t, b] for t, b in zip(tuned, base)]}
    passes: list[int] = []
    hook = None
    rows = []
    with later.system("tuned"):
        later.generate(prompts["40 held-out requests"][:2], 4, 2)  # warm-up, and the merged copy loaded
        hook = later.model.register_forward_pre_hook(lambda *a: passes.append(1))
        for name, asks in prompts.items():
            times: dict[str, list[float]] = {s: [] for s in sources[name]}
            counts: dict[str, int] = {}
            replies: dict[str, list[str]] = {}
            for round_ in range(args.rounds):
                for setting, drafts in sources[name].items():
                    passes.clear()
                    started = time.perf_counter()
                    replies[setting] = later.generate(asks, cfg.eval.max_new_tokens, cfg.eval.decode_batch_size,
                                                      drafts=drafts)
                    times[setting].append(time.perf_counter() - started)
                    counts[setting] = len(passes)
                    print(f"round {round_ + 1} {name}, drafts {setting}: {times[setting][-1]:.2f} s", flush=True)
            plain = statistics.median(times["none"])
            for setting in sources[name]:
                median = statistics.median(times[setting])
                same = sum(a == b for a, b in zip(replies[setting], replies["none"]))
                rows.append(f"| {name} | {setting} | {median:.2f} | {median / plain:.2f}x | {counts[setting]} | "
                            f"{same}/{len(asks)} |")
    if hook is not None:
        hook.remove()
    print(f"rounds: {args.rounds}, later trial: {args.adapters[1]}")
    print("| prompts | drafts | median s | ratio to none | forward passes | replies equal to undrafted |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
