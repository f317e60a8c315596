"""The memory estimator against measured peaks on CPU, the chooser's decisions, and the benchmark's MFU arithmetic.

How the peak is measured: CPU tensors come from c10's CPU allocator, which caches nothing and reports every
allocation and every free (with its size) to the profiler when `torch.profiler.profile(profile_memory=True)` is on.
Sorting those `[memory]` events by time and summing their signed sizes gives the bytes of live tensors at every
moment of the step; its maximum is the peak increase over the start of the step. The bytes alive at the start
(parameters, buffers, optimizer state) are counted exactly by summing their distinct storages. Their sum is what
`torch.cuda.max_memory_allocated` reports on a GPU (live tensor bytes, not the allocator's cache). RSS would add
the allocator's free lists, libraries and Python objects, and moves by megabytes between identical runs.
The step is measured after a warm-up step, so AdamW's state exists, as in steady-state training.
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest
import torch

from ftorch.backends.fit import TrainRequest, choose
from ftorch.backends.memory import LINEARS, GiB, MemoryBreakdown, ModelShape, StepSetup, estimate
from ftorch.config.schema import TinyModel, TrainConfig
from ftorch.tiny import ensure_tiny_model

ROOT = Path(__file__).resolve().parents[2]
TINY = TinyModel(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=688, vocab_size=1024)
ONE_B = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
             intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True)


def live_bytes(tensors) -> int:
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


def peak_increase(fn) -> int:
    """Peak of live CPU tensor bytes while `fn` runs, above the bytes live when it starts."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def lora_model(base, checkpointing: bool):
    from peft import LoraConfig, get_peft_model

    base.config.use_cache = False
    if checkpointing:  # non-reentrant, as the Trainer enables it
        getattr(base, "activation_checkpointing_enable", base.gradient_checkpointing_enable)()
        base.enable_input_require_grads()
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=list(LINEARS),
                                            task_type="CAUSAL_LM"))
    model.train()
    return model


def measured_peak(model, batch: dict) -> int:
    """Peak bytes of one steady-state training step, as the Trainer runs it (outputs dropped before backward)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    static = live_bytes([*model.parameters(), *model.buffers(),
                         *(t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t))])
    return static + peak_increase(step)


def test_peak_measurement_sees_a_known_allocation():
    def fn() -> None:
        a = torch.ones(1 << 20)  # 4 MiB, freed at once
        del a
        b = torch.ones(1 << 19)  # 2 MiB
        c = torch.ones(1 << 19)  # 2 MiB: 4 MiB live together
        del b, c

    assert peak_increase(fn) == 4 * 2**20


@pytest.fixture(scope="module")
def tiny_path(offline_env):
    return ensure_tiny_model(TINY)


CASES = [  # name, rows, row tokens, packed (position ids restart every 128), checkpointing, GQA + 8k vocabulary
    ("4x128", 4, 128, False, False, False),
    ("packed-1x512", 1, 512, True, False, False),
    ("2x256-checkpointing", 2, 256, False, True, False),
    ("packed-1x512-checkpointing", 1, 512, True, True, False),
    ("gqa-vocab8k-2x256", 2, 256, False, False, True),
    ("gqa-vocab8k-4x128-checkpointing", 4, 128, False, True, True),
]


@pytest.mark.parametrize("name,rows,row,packed,checkpointing,gqa", CASES, ids=[c[0] for c in CASES])
def test_estimate_within_15_percent_of_measured_peak(tiny_path, name, rows, row, packed, checkpointing, gqa):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if gqa:  # a shape whose peak is dominated by the logits, with fewer key-value heads than query heads
        base = LlamaForCausalLM(LlamaConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                            num_key_value_heads=2, intermediate_size=352, vocab_size=8192,
                                            tie_word_embeddings=True, attn_implementation="sdpa"))
    else:
        base = AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.float32, attn_implementation="sdpa")
    model = lora_model(base, checkpointing)
    ids = torch.randint(10, base.config.vocab_size, (rows, row), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "labels": ids}
    if packed:
        batch["position_ids"] = (torch.arange(row) % 128)[None]
    measured = measured_peak(model, batch)
    est = estimate(base.config.to_dict(), StepSetup(rows=rows, row_tokens=row, dtype="fp32", adapter_dtype="fp32",
                                                    gradient_checkpointing=checkpointing,
                                                    attention="dense_mask" if packed else "causal"))
    ratio = est.total / measured
    print(f"{name}: estimate {est.total / 2**20:.2f} MiB, measured {measured / 2**20:.2f} MiB, ratio {ratio:.3f}")
    assert 0.85 <= ratio <= 1.15, f"{name}: estimate {est.summary()} vs measured {measured / 2**20:.1f} MiB"


def test_breakdown_adds_up_and_moves_the_right_way():
    base = StepSetup(rows=1, row_tokens=8192, adapter_dtype="bf16")
    est = estimate(ONE_B, base)
    assert est.total == est.weights + est.lora + est.activations + max(est.logits, est.backward)
    assert estimate(ONE_B, StepSetup(rows=1, row_tokens=16384, adapter_dtype="bf16")).activations > est.activations
    assert estimate(ONE_B, StepSetup(rows=1, row_tokens=8192, adapter_dtype="bf16",
                                     gradient_checkpointing=True)).total < est.total
    assert estimate(ONE_B, StepSetup(rows=1, row_tokens=8192, loss="liger_fused", kernels="liger",
                                     adapter_dtype="bf16")).logits < est.logits / 50
    # NF4 linears; peft's kbit preparation leaves the embeddings (a fifth of this model) in fp32
    assert estimate(ONE_B, StepSetup(rows=1, row_tokens=8192, quantization="4bit", adapter_dtype="bf16")).weights \
        < est.weights * 0.7
    # fp32 adapters under bf16 autocast keep a copy of every adapted input: more than bf16 adapters
    assert estimate(ONE_B, StepSetup(rows=1, row_tokens=8192, adapter_dtype="fp32")).activations > est.activations
    shape = ModelShape.from_config(ONE_B)
    assert shape.params == 1_235_814_400  # Llama-3.2-1B's parameter count
    assert shape.lora_params(16, LINEARS) == 11_272_192


def request(**kw) -> TrainRequest:
    values = dict(batch_size=16, grad_accum=1, max_length=2048, lora_r=16, target_modules=LINEARS)
    return TrainRequest(**{**values, **kw})


def pick(device_gb: float | None, req: TrainRequest | None = None, liger: bool = True, varlen: bool = True,
         device: str = "cuda"):
    return choose(ONE_B, req or request(), None if device_gb is None else int(device_gb * GiB),
                  fused_available=True, liger_available=liger, varlen_available=varlen, device=device)


def test_chooser_on_a_large_card_packs_fuses_and_skips_checkpointing():
    c = pick(80)
    assert c.settings == {"packing": True, "attention": "varlen", "kernels": "liger", "fused_loss": True,
                          "adapter_dtype": "bf16", "precision": "bf16", "gradient_checkpointing": False,
                          "micro_batch_size": 16, "grad_accum": 1}
    assert c.fits and c.estimate.total <= c.budget
    assert any(re.fullmatch(r"checkpointing off: \d+\.\d GiB of 80 GiB needed", r) for r in c.reasons), c.reasons


def test_chooser_shrinks_the_micro_batch_before_checkpointing():
    c = pick(24)
    assert c.settings["gradient_checkpointing"] is False
    micro = c.settings["micro_batch_size"]
    assert micro < 16 and 16 % micro == 0 and c.settings["grad_accum"] == 16 // micro
    bigger = [m for m in (16, 8, 4, 2) if m > micro]
    assert bigger and all(estimate(ONE_B, StepSetup(rows=1, row_tokens=m * 2048, adapter_dtype="bf16",
                                                    kernels="liger", loss="trl_fused", attention="varlen")).total
                          > c.budget for m in bigger)


def test_chooser_turns_checkpointing_on_only_when_nothing_fits_without():
    c = pick(6, liger=False)  # 2048 tokens without checkpointing need 5.7 GiB; 4.4 GiB usable
    assert c.settings["gradient_checkpointing"] is True and c.fits and c.settings["micro_batch_size"] > 1
    assert any(r.startswith("checkpointing on: ") and "without it even at micro-batch 1" in r for r in c.reasons)
    roomier = pick(8, liger=False)
    assert roomier.settings["gradient_checkpointing"] is False and roomier.settings["micro_batch_size"] == 1


def test_chooser_keeps_explicit_values():
    c = pick(80, request(gradient_checkpointing=True, micro_batch_size=4, packing=False, adapter_dtype="fp32",
                         kernels="none", fused_loss="off"))
    s = c.settings
    assert (s["gradient_checkpointing"], s["micro_batch_size"], s["grad_accum"]) == (True, 4, 4)
    assert (s["packing"], s["adapter_dtype"], s["kernels"], s["fused_loss"]) == (False, "fp32", "none", False)
    assert any(r.startswith("checkpointing on: set in config") for r in c.reasons)
    assert any("set in config" in r and r.startswith("micro-batch: 4 rows of 2048") for r in c.reasons)


def test_chooser_without_a_model_config_keeps_safe_defaults():
    c = choose(None, request(), 80 * GiB, fused_available=True, liger_available=False, varlen_available=True)
    assert c.estimate is None and c.settings["gradient_checkpointing"] is True
    assert any(r.startswith("no memory estimate (the model's config.json") for r in c.reasons)


def test_chooser_says_when_nothing_fits():
    c = pick(2, liger=False)
    assert not c.fits and c.settings["gradient_checkpointing"] is True and c.settings["micro_batch_size"] == 1
    assert any(r.startswith("does not fit: ") for r in c.reasons)


def test_chooser_without_varlen_or_on_cpu():
    c = pick(80, varlen=False, liger=False)
    assert c.settings["packing"] is False and c.settings["attention"] == "sdpa" and c.settings["fused_loss"] is True
    cpu = pick(None, request(batch_size=8, grad_accum=2, max_length=512), device="cpu")
    assert cpu.settings == {"packing": False, "attention": "sdpa", "kernels": "none", "fused_loss": False,
                            "adapter_dtype": "fp32", "precision": "fp32", "gradient_checkpointing": False,
                            "micro_batch_size": 8, "grad_accum": 2}


def test_request_from_ftorch_train_config():
    req = TrainRequest.of(TrainConfig(batch_size=4, grad_accum=2, max_length=512))
    assert (req.batch_size, req.grad_accum, req.max_length, req.lora_r) == (4, 2, 512, 16)
    assert req.target_modules == ("q_proj", "v_proj") and req.precision == "auto"
    assert isinstance(pick(40, req).estimate, MemoryBreakdown)


def bench_module():
    spec = importlib.util.spec_from_file_location("gpu_lora", ROOT / "bench" / "gpu_lora.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_lora"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_mfu_arithmetic():
    bench = bench_module()
    shape = ModelShape.from_config(dict(hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                        num_key_value_heads=1, intermediate_size=16, vocab_size=32,
                                        tie_word_embeddings=True))
    # per layer q 8x8, k 8x4, v 8x4, o 8x8, gate/up/down 8x16 each: 576; 2 layers + LM head 32x8 = 1408
    n_linear, n_lora = 2 * 576 + 256, shape.lora_params(2, LINEARS)
    assert bench.counted_params(shape, 2, LINEARS) == (n_linear, n_lora)
    lengths = [3, 5]
    expected = (4 * n_linear + 6 * n_lora) * 8 + 6 * 2 * 8 * (3**2 + 5**2)
    assert bench.step_flops(shape, 2, LINEARS, lengths) == expected
    assert math.isclose(bench.mfu(expected, 0.5, peak_flops=1e3), expected / 0.5 / 1e3)
