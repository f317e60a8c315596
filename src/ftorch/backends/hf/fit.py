"""The fastest LoRA training settings that fit one card: packing, kernels, fused loss, adapter dtype, micro-batch and
gradient checkpointing, each left on "auto" picked with its reason from memory.estimate()."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from .memory import Attention, GiB, Loss, MemoryBreakdown, StepSetup, estimate, gib


@dataclass(frozen=True)
class TrainRequest:
    """The train.* values choose() reads. "auto" marks a setting it may pick; anything else is the user's and kept."""

    batch_size: int
    grad_accum: int
    max_length: int
    lora_r: int
    target_modules: tuple[str, ...]
    quantization: str = "none"
    optimizer: str = "adamw_torch"
    precision: str = "auto"
    packing: bool | str = "auto"
    gradient_checkpointing: bool | str = "auto"
    micro_batch_size: int | str = "auto"
    adapter_dtype: str = "auto"
    fused_loss: str = "auto"
    kernels: Literal["auto", "none", "liger"] = "auto"

    @classmethod
    def of(cls, train: Any) -> TrainRequest:
        """From ftorch's TrainConfig. Fields the schema does not have yet count as "auto"."""
        if isinstance(train, cls):
            return train
        values = train.model_dump()
        optional = ("quantization", "optimizer", "precision", "packing", "gradient_checkpointing",
                    "micro_batch_size", "adapter_dtype", "fused_loss", "kernels")
        return cls(batch_size=values["batch_size"], grad_accum=values["grad_accum"], max_length=values["max_length"],
                   lora_r=values["lora"]["r"], target_modules=tuple(values["lora"]["target_modules"]),
                   **{k: values[k] for k in optional if k in values})


@dataclass(frozen=True)
class Choice:
    """Resolved settings (ftorch names), why each was chosen, and the memory estimate they give."""

    settings: dict[str, Any]
    reasons: list[str]
    estimate: MemoryBreakdown | None
    budget: int | None  # bytes the step may use on this card (None: unbounded, e.g. CPU)
    fits: bool


def choose(model_config: Mapping[str, Any] | None, train: Any, device_bytes: int | None, *, fused_available: bool,
           liger_available: bool, varlen_available: bool, device: str = "cuda", bf16_supported: bool = True,
           headroom: float = 0.10, reserve_bytes: int = GiB) -> Choice:
    """Pick the fastest settings that fit: packing on a varlen kernel, Liger kernels when installed, a fused loss,
    adapters in the compute dtype, the largest micro-batch that fits and gradient checkpointing only when nothing
    fits without it. Values set in `train` are kept. The budget is `device_bytes` less `headroom` (allocator
    fragmentation) and `reserve_bytes` (CUDA context, cuBLAS workspaces)."""
    req = TrainRequest.of(train)
    cuda = device == "cuda"
    reasons: list[str] = []
    dtype = req.precision if req.precision != "auto" else ("fp32" if not cuda else "bf16" if bf16_supported else "fp16")
    packing = _pick_packing(req, cuda, varlen_available, reasons)
    attention: Attention = "varlen" if cuda and varlen_available else ("dense_mask" if packing else "causal")
    kernels = req.kernels if req.kernels != "auto" else ("liger" if cuda and liger_available else "none")
    if req.kernels == "auto":
        reasons.append("kernels: Liger (fused RMSNorm, RoPE, SwiGLU)" if kernels == "liger" else
                       f"kernels: none ({'liger-kernel is not installed' if cuda else 'CPU'})")
    # TRL's SFTTrainer always brings its own fused LM head (Liger then only supplies the layer kernels)
    fused = {"on": True, "off": False}.get(req.fused_loss, cuda and fused_available)
    loss: Loss = "trl_fused" if fused else "materialised"
    adapter = req.adapter_dtype
    if adapter == "auto":
        adapter = "bf16" if dtype == "bf16" else "fp32"
        reasons.append("adapters in bf16 (the compute dtype): no fp32 copies of their inputs" if adapter == "bf16"
                       else f"adapters in fp32 ({'fp16 needs fp32 master weights' if dtype == 'fp16' else 'fp32 run'})")
    sequences = req.batch_size * req.grad_accum
    budget = int(device_bytes * (1 - headroom) - reserve_bytes) if device_bytes else None
    base = StepSetup(rows=1, row_tokens=req.max_length, dtype=dtype, lora_r=req.lora_r,
                     target_modules=req.target_modules, adapter_dtype=adapter, quantization=req.quantization,
                     loss=loss, kernels=kernels, attention=attention, optimizer=req.optimizer)

    def setup(micro: int, checkpointing: bool) -> StepSetup:
        rows, row = (1, micro * req.max_length) if packing else (micro, req.max_length)
        mask = attention if attention != "causal" or rows == 1 else "dense_mask"  # padded rows need a mask
        return replace(base, rows=rows, row_tokens=row, attention=mask, gradient_checkpointing=checkpointing)

    settings: dict[str, Any] = {"packing": packing, "attention": "varlen" if attention == "varlen" else "sdpa",
                                "kernels": kernels, "fused_loss": fused, "adapter_dtype": adapter, "precision": dtype}
    if req.micro_batch_size != "auto":
        micros = [int(req.micro_batch_size)]
    elif cuda and budget is not None:
        micros = [m for m in range(sequences, 0, -1) if sequences % m == 0]
    else:
        micros = [req.batch_size]
    checkpointing = [req.gradient_checkpointing] if req.gradient_checkpointing != "auto" else [False, True]
    try:
        if model_config is None:
            raise ValueError("the model's config.json is not available locally")
        picked = _first_fit(micros, checkpointing, setup, model_config, budget)
    except ValueError as exc:  # a shape the estimator does not know: keep the safe defaults
        ckpt = True if req.gradient_checkpointing == "auto" else bool(req.gradient_checkpointing)
        settings.update(gradient_checkpointing=ckpt, micro_batch_size=micros[-1],
                        grad_accum=math.ceil(sequences / micros[-1]))
        return Choice(settings, [*reasons, f"no memory estimate ({exc}); checkpointing {_on(ckpt)}"], None, budget,
                      True)
    micro, ckpt, est, fits = picked
    settings.update(gradient_checkpointing=ckpt, micro_batch_size=micro, grad_accum=math.ceil(sequences / micro))
    smallest = estimate(model_config, setup(micros[-1], False)).total if ckpt else 0
    reasons += _memory_reasons(req, (micro, micros[-1], sequences), ckpt, est, fits, budget, device_bytes, packing,
                               smallest)
    if loss != "materialised":
        saved = estimate(model_config, replace(setup(micro, ckpt), loss="materialised")).logits - est.logits
        reasons.append(f"fused loss (TRL's tiled LM head): logits never materialised ({gib(saved)} saved)")
    return Choice(settings, reasons, est, budget, fits)


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _pick_packing(req: TrainRequest, cuda: bool, varlen: bool, reasons: list[str]) -> bool:
    if req.packing != "auto":
        return bool(req.packing)
    if not cuda:
        reasons.append("packing off: on CPU attention over packed rows costs more than the padding it saves")
        return False
    if not varlen:
        reasons.append("packing off: no varlen attention kernel (flash-attn or torch varlen_attn); a dense block "
                       "mask would cost memory for little speed")
        return False
    reasons.append("packing on: padding-free rows through a varlen attention kernel, no pad tokens")
    return True


def _first_fit(micros: list[int], checkpointing: list[Any], setup: Any, model_config: Mapping[str, Any],
               budget: int | None) -> tuple[int, bool, MemoryBreakdown, bool]:
    """Without checkpointing first, the largest micro-batch first: the first that fits within the budget."""
    for ckpt in checkpointing:
        for micro in micros:
            est = estimate(model_config, setup(micro, bool(ckpt)))
            if budget is None or est.total <= budget:
                return micro, bool(ckpt), est, True
    micro, ckpt = micros[-1], bool(checkpointing[-1])
    return micro, ckpt, estimate(model_config, setup(micro, ckpt)), False


def _memory_reasons(req: TrainRequest, micros: tuple[int, int, int], ckpt: bool, est: MemoryBreakdown, fits: bool,
                    budget: int | None, device_bytes: int | None, packing: bool, without_ckpt: int) -> list[str]:
    micro, smallest, sequences = micros
    need = f"{gib(est.total)} of {device_bytes / GiB:.0f} GiB needed" if device_bytes else \
        f"{gib(est.total)} estimated, no device limit given"
    reasons = []
    if not fits:
        reasons.append(f"does not fit: {need} at the smallest micro-batch (usable {gib(budget or 0)}); lower "
                       "train.max_length, use train.quantization=4bit or a larger card")
    if req.gradient_checkpointing != "auto":
        reasons.append(f"checkpointing {_on(ckpt)}: set in config ({need})")
    elif not ckpt:
        reasons.append(f"checkpointing off: {need}")
    else:
        reasons.append(f"checkpointing on: {gib(without_ckpt)} without it even at micro-batch {smallest}, over the "
                       f"usable {gib(budget or 0)}; {need} with it")
    unit = "packed bins of up to" if packing else "rows of"
    tokens = f"{micro} {unit} {req.max_length} tokens ({micro * req.max_length:,} tokens)"
    how = "set in config" if req.micro_batch_size != "auto" else (
        "all of an optimizer step in one pass" if micro == sequences else "the largest divisor of the step that fits")
    reasons.append(f"micro-batch: {tokens}, {math.ceil(sequences / micro)} accumulation step(s): {how}")
    return reasons
