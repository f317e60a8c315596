"""Tokens/s of ftorch's peft backend against a hand-written transformers + PEFT training loop on the same
model, data, steps, batch size, LoRA settings and precision (goal: >= 0.95x on the real model). Both run in this
process, alternating, so the machine's noise hits both alike. The model is the recipe's: `quickstart` is the
real SmolLM2-135M-Instruct, `quickstart-tiny` the tiny random Llama.
Usage: python bench/peft_throughput.py [--recipe quickstart] [--steps 10] [--rounds 2]"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def ftorch_run(steps: int, batch: int, extra: list[str]) -> float:
    """Tokens/s of `ftorch train` (in-process, through the real backend), from its own metrics."""
    from ftorch.config.compose import find_project
    from ftorch.run.lifecycle import prepare
    from ftorch.run.rundir import RunDir

    prepared = prepare(find_project(ROOT), [f"train.max_steps={steps}", f"train.batch_size={batch}",
                                            "train.save_steps=100000", *extra])
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp))
        run.start(recipe="bench", provider="peft", project_root=ROOT, overrides=[])
        from ftorch.backends import get_backend

        get_backend("peft").run(prepared.plan, run)
        rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    # steady state: from the end of step 1 to the last step, like the loop below
    tokens = train[-1]["tokens"] - train[0]["tokens"]
    seconds = train[-1]["time"] - train[0]["time"]
    return tokens / seconds


def loop_run(steps: int, batch: int, prepared_cfg) -> float:
    """The hand-written baseline: tokenize with the same template and assistant mask, pad per batch,
    AdamW on the same LoRA, same learning-rate schedule shape."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.utils.data import DataLoader
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

    from ftorch.backends._hf import model_path

    cfg = prepared_cfg
    torch.manual_seed(cfg.train.seed)
    path = model_path(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    lora = cfg.train.lora
    model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                             target_modules=list(lora.target_modules), task_type="CAUSAL_LM"))
    rows = [json.loads(line) for line in Path(cfg.data.train).read_text().splitlines()]
    from ftorch.chat_masks import assistant_token_mask

    encoded = []
    for row in rows:
        ids, mask = assistant_token_mask(tokenizer, row["messages"])
        ids, mask = ids[: cfg.train.max_length], mask[: cfg.train.max_length]
        encoded.append((ids, [i if m else -100 for i, m in zip(ids, mask)]))

    def collate(items):
        width = max(len(ids) for ids, _ in items)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in items])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in items])
        attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in items])
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}

    loader = DataLoader(encoded, batch_size=batch, shuffle=True, collate_fn=collate, drop_last=False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
    schedule = get_cosine_schedule_with_warmup(optimizer, int(cfg.train.warmup_ratio * steps), steps)
    model.train()
    step, tokens, start = 0, 0, None
    while step < steps:
        for inputs in loader:
            loss = model(**inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step == 1:
                start = time.perf_counter()  # steady state from the end of step 1
            else:
                tokens += int(inputs["attention_mask"].sum())
            if step == steps:
                break
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="quickstart")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import torch

    from ftorch.config.compose import find_project
    from ftorch.run.lifecycle import prepare

    recipe = [f"recipe={args.recipe}", "train.warmup_ratio=0.1"]
    cfg = prepare(find_project(ROOT), [*recipe, f"train.batch_size={args.batch}"]).config
    ours, theirs = [], []
    for _ in range(args.rounds):
        theirs.append(loop_run(args.steps, args.batch, cfg))
        ours.append(ftorch_run(args.steps, args.batch, recipe))
    loop, peft = statistics.median(theirs), statistics.median(ours)
    print(f"recipe: {args.recipe} ({cfg.model.name}), threads: {torch.get_num_threads()}, steps: {args.steps}, "
          f"batch: {args.batch}, rounds: {args.rounds}")
    print("| trainer | median tokens/s | ratio |")
    print("|---|---|---|")
    print(f"| hand-written transformers+PEFT loop | {loop:,.0f} | 1.00× |")
    print(f"| ftorch peft backend | {peft:,.0f} | {peft / loop:.2f}× |")
    print("rounds (loop, ftorch):", [f"{a:,.0f}/{b:,.0f}" for a, b in zip(theirs, ours)])


if __name__ == "__main__":
    main()
