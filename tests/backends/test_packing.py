"""Packing is exact, on CPU, along the path ftorch's peft backend takes with train.packing=true.

The path (TRL 1.16, transformers 5.24): `_sft_args` turns packing on in SFTConfig; SFTTrainer then packs the tokenized
examples into bins of up to max_length tokens (strategy "bfd") and uses padding-free mode: its
`DataCollatorForLanguageModeling(padding_free=True)` concatenates the bins of a micro-batch into ONE row, gives
position_ids that restart at 0 at every sequence, sets the label of each sequence's first token to -100 and adds
cu_seq_lens/max_length (read only by varlen kernels). No attention_mask is passed. In the model,
`masking_utils.create_causal_mask` sees position_ids, no 2D mask and no cache (the Trainer sets
`config.use_cache = False`; with a cache it would skip this and leak), finds the sequences where position_ids stop
increasing by one (`find_packed_sequence_indices`) and, for sdpa and eager alike, materialises a [1, 1, N, N]
causal mask restricted to same-sequence pairs (bool for sdpa, which SDPA turns into an additive bias; additive
float for eager). The GPU path swaps this dense mask for a varlen kernel fed by cu_seq_lens; varlen_attn has no CPU
implementation, so CPU tests check the semantics a varlen kernel must reproduce.

Checked here: (a) every example is packed once, with the labels it has unpacked, and per-token losses and LoRA
gradients of a packed row equal those of the same examples in TRL's padded batches (fp32: per-token losses within
2e-5 absolute, seen ~5e-7; the LoRA gradient vector within 1e-5 in relative norm, seen ~1e-7); (b) the labels keep
exactly the assistant tokens of the tokenizer's `return_assistant_tokens_mask` (the {% generation %} blocks,
end-of-turn token included); (c) changing one sequence of a packed row leaves its neighbours' logits unchanged
(within 1e-6; seen exactly 0), for sdpa and eager, while the same change without position_ids does leak (so the
check can fail).
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from ftorch.backends.hf.loading import load_model as _load_model
from ftorch.backends.hf.loading import load_tokenizer as _load_tokenizer
from ftorch.backends.peft.backend import _lora_args, _plain_loss_trainer, _sft_args
from ftorch.config.schema import RunConfig
from ftorch.models import model_path

WORDS = ["book", "a", "call", "with", "ana", "lee", "on", "monday", "friday", "at", "noon", "9am", "3pm", "please",
         "thanks", "sure", "done"]


def chats(n: int = 12) -> list[dict]:
    rnd = random.Random(0)
    rows = []
    for i in range(n):
        messages = [{"role": "system", "content": "You book calls."}] if i % 3 == 0 else []
        for _ in range(1 + i % 2):
            messages += [{"role": "user", "content": " ".join(rnd.choices(WORDS, k=rnd.randint(2, 6)))},
                         {"role": "assistant", "content": " ".join(rnd.choices(WORDS, k=rnd.randint(1, 5)))}]
        rows.append({"messages": messages})
    return rows


def run_config(packing: bool) -> RunConfig:
    return RunConfig.model_validate({
        "provider": {"name": "peft", "device": "cpu"},
        "model": {"name": "tiny", "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_heads": 2}},
        "data": {"train": "unused.jsonl"},
        "train": {"packing": packing, "max_length": 256, "batch_size": 3, "assistant_only_loss": True,
                  "lora": {"dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                              "up_proj", "down_proj"]}}})


def sft_trainer(cfg: RunConfig, rows: list[dict], out: str):
    """The trainer as PeftBackend._train_logged builds it on CPU (fp32, fused_loss=auto: the model's own loss)."""
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from datasets import Dataset

    path = model_path(cfg.model)
    tokenizer = _load_tokenizer(path, cfg)
    args = SFTConfig(output_dir=out, use_cpu=True, bf16=False, fp16=False, **_sft_args(cfg))
    return _plain_loss_trainer(SFTTrainer)(model=_load_model(path, cfg, "fp32"), args=args,
                                           train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                                           peft_config=LoraConfig(**_lora_args(cfg)))


@pytest.fixture(scope="module")
def trainers(offline_env, tmp_path_factory):
    rows = chats()
    packed = sft_trainer(run_config(packing=True), rows, str(tmp_path_factory.mktemp("packed")))
    unpacked = sft_trainer(run_config(packing=False), rows, str(tmp_path_factory.mktemp("unpacked")))
    torch.manual_seed(0)
    for name, p in packed.model.named_parameters():  # a trained-looking adapter, so LoRA takes part
        if "lora_B" in name:
            p.data.normal_(0, 0.05)
    return rows, packed, unpacked


def segments(row: dict) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of each sequence of a packed dataset row."""
    out, start = [], 0
    for n in row["seq_lengths"]:
        out.append((row["input_ids"][start:start + n], row["labels"][start:start + n]))
        start += n
    return out


def packed_batch(trainer) -> dict:
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))][:3])
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    return batch


def bounds(batch: dict) -> list[tuple[int, int]]:
    cu = batch["cu_seq_lens_q"].tolist()
    return list(zip(cu, cu[1:]))


def token_losses(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy (fp32) at every position t predicting token t+1, and where a label exists."""
    logits = model(**batch).logits.float()
    labels = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=-100,
                                             reduction="none")
    return loss, labels != -100


def test_trainer_runs_padding_free_without_a_cache(trainers):
    _, packed, unpacked = trainers
    assert packed.args.packing and packed.args.packing_strategy == "bfd" and packed.data_collator.padding_free
    assert packed.model.config.use_cache is False  # a cache would turn the packed-sequence mask off
    assert packed.model.config._attn_implementation == "sdpa"
    assert not unpacked.data_collator.padding_free
    assert max(len(r["seq_lengths"]) for r in packed.train_dataset) > 1  # bins hold several sequences


def test_every_example_is_packed_once_with_its_unpacked_labels(trainers):
    rows, packed, unpacked = trainers
    in_bins = Counter((tuple(i), tuple(lab[1:])) for r in packed.train_dataset for i, lab in segments(r))
    alone = Counter((tuple(r["input_ids"]), tuple(r["labels"][1:])) for r in unpacked.train_dataset)
    assert in_bins == alone and sum(alone.values()) == len(rows)
    # the packed collator masks each sequence's first token, which a causal LM never predicts anyway
    assert all(lab[0] == -100 for r in packed.train_dataset for _, lab in segments(r))


def test_packed_losses_and_gradients_equal_unpacked(trainers):
    _, packed, unpacked = trainers
    model = packed.model
    batch = packed_batch(packed)
    loss, kept = token_losses(model, batch)
    spans = bounds(batch)
    assert len(spans) >= 3
    by_ids = {tuple(r["input_ids"]): r for r in unpacked.train_dataset}
    examples = [by_ids[tuple(batch["input_ids"][0, s:e].tolist())] for s, e in spans]
    padded = unpacked.data_collator(examples)
    assert "attention_mask" in padded and "position_ids" not in padded
    ref_loss, ref_kept = token_losses(model, padded)

    worst = 0.0
    for row, (s, e) in enumerate(spans):
        n = e - s
        assert torch.equal(kept[0, s:e - 1], ref_kept[row, :n - 1])  # same supervised tokens
        mine, theirs = loss[0, s:e - 1][kept[0, s:e - 1]], ref_loss[row, :n - 1][ref_kept[row, :n - 1]]
        assert mine.numel() > 0
        worst = max(worst, (mine - theirs).abs().max().item())
    assert worst < 2e-5, f"packed vs unpacked per-token loss differs by {worst:.2e}"
    # the trainer's own loss over the packed row is the mean of those per-token losses
    assert torch.allclose(packed.compute_loss(model, dict(batch)), loss[kept].mean(), atol=1e-6)

    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    grads = []
    for b in (batch, padded):
        model.zero_grad(set_to_none=True)
        total, mask = token_losses(model, b)
        total[mask].sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in lora]))
    model.zero_grad(set_to_none=True)
    assert grads[0].abs().max() > 0
    relative = ((grads[0] - grads[1]).norm() / grads[1].norm()).item()
    print(f"packing: per-token loss max |diff| {worst:.2e}, LoRA gradient relative difference {relative:.2e}")
    assert relative < 1e-5


def test_labels_keep_exactly_the_assistant_tokens(trainers):
    rows, packed, _ = trainers
    tokenizer = packed.processing_class
    by_ids = {tuple(i): lab for r in packed.train_dataset for i, lab in segments(r)}
    for example in rows:
        encoded = tokenizer.apply_chat_template(example["messages"], tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=True)
        ids, mask = encoded["input_ids"], encoded["assistant_masks"]
        labels = by_ids[tuple(ids)]
        assert [lab != -100 for lab in labels] == [bool(m) for m in mask]
        assert 0 < sum(mask) < len(mask)
        kept = tokenizer.decode([i for i, m in zip(ids, mask) if m])
        assert kept == "".join(m["content"] + "<|end|>" for m in example["messages"] if m["role"] == "assistant")


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_no_attention_leaks_across_packed_sequences(trainers, attention):
    from transformers.masking_utils import create_causal_mask

    _, packed, _ = trainers
    model = packed.model
    base = model.get_base_model()
    base.set_attn_implementation(attention)
    try:
        batch = packed_batch(packed)
        spans = bounds(batch)
        # the mask transformers builds from position_ids: causal within a sequence, nothing across sequences
        embeds = base.get_input_embeddings()(batch["input_ids"])
        mask = create_causal_mask(config=base.config, inputs_embeds=embeds, attention_mask=None, cache=None,
                                  position_ids=batch["position_ids"])
        allowed = mask[0, 0] if mask.dtype == torch.bool else mask[0, 0] == 0
        seq = torch.cat([torch.full((e - s,), k) for k, (s, e) in enumerate(spans)])
        n = seq.numel()
        expected = (seq[:, None] == seq[None, :]) & torch.ones(n, n, dtype=torch.bool).tril()
        assert torch.equal(allowed, expected)

        s, e = spans[1]
        changed = dict(batch, input_ids=batch["input_ids"].clone())
        changed["input_ids"][0, s + 1:e] = changed["input_ids"][0, s + 1:e].flip(0)
        with torch.no_grad():
            before, after = model(**batch).logits, model(**changed).logits
            leaky = {k: v for k, v in batch.items() if k in ("input_ids", "labels")}
            leaky_before = model(**leaky).logits
            leaky_after = model(**dict(leaky, input_ids=changed["input_ids"])).logits
        outside = torch.ones(n, dtype=torch.bool)
        outside[s:e] = False
        drift = (before[0, outside] - after[0, outside]).abs().max().item()
        print(f"packing ({attention}): neighbours' logits moved by {drift:.1e} when one sequence changed")
        assert drift <= 1e-6
        assert (before[0, s + 1:e] - after[0, s + 1:e]).abs().max() > 1e-3  # the changed sequence did change
        assert (leaky_before[0, e:] - leaky_after[0, e:]).abs().max() > 1e-3  # without position_ids it leaks
    finally:
        base.set_attn_implementation("sdpa")
