"""Peak memory of one LoRA training step, estimated from the model's shape, and the settings that fill one card.

The estimate counts what autograd keeps alive in a transformers Llama-style decoder with PEFT LoRA (read from
transformers 5.24 / peft 0.21 and checked tensor by tensor with saved-tensor hooks on CPU). T is the tokens of one
micro-batch, s the compute dtype's bytes, h/i/q/kv the hidden, intermediate, query and key-value widths, r the rank.

    weights      frozen parameters in the compute dtype (4-bit: NF4 linears + fp32 rest, as peft's kbit prep leaves it)
    lora         adapter parameters + gradients + optimizer state (+ autocast's bf16 copies of fp32 adapters)
    per layer    T * [ 2*4h (RMSNorm's fp32 inputs) + 2*4 (rstd) + s*(q + 2kv + q) + 4*heads (SDPA q,k,v,out,lse)
                 + s*3i (gate, up, silu) + LoRA inputs (shared: n, n2, down's input; fp32 adapters: one copy each)
                 + s*r per adapted module ]  + a dense mask's s*rows*L^2 when SDPA gets one (+ rows*L^2 bool, once);
                 Liger: RMSNorm inputs in s, SwiGLU keeps 2i
    activations  no checkpointing: layers * per layer (+ final norm, RoPE tables, ids)
                 checkpointing: layers * T*h*s (each layer's input) and the rest as above
    logits       materialised: T*V*12 (fp32 log-softmax output + its two fp32 gradients, the cross-entropy backward);
                 TRL's tiled head / Liger's fused linear cross-entropy: a tile and a hidden-size buffer per token
    backward     T*(i + 2h)*s, the largest gradient working set in a layer's backward; with checkpointing
                 plus the recomputed layer's activations
    total        weights + lora + activations + max(logits, backward)

On CPU (fp32, SDPA) it lands 0.5-4.5% above the measured peak; tests/backends/test_memory.py asserts 15%.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

GiB = 2**30
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# NF4 with double quantization: 4-bit weights, an 8-bit absmax per 64 weights, an fp32 scale per 256 absmax blocks
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
TRL_TILE = (4096, 32768)  # tokens x vocabulary columns of one tile of TRL's fused LM head
Loss = Literal["materialised", "trl_fused", "liger_fused"]
Attention = Literal["causal", "dense_mask", "varlen"]


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool
    head_dim: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        """From a transformers config (config.json as a dict, or `PretrainedConfig.to_dict()`)."""
        c = config["text_config"] if isinstance(config.get("text_config"), Mapping) else config
        heads = c["num_attention_heads"]
        return cls(hidden=c["hidden_size"], layers=c["num_hidden_layers"], heads=heads,
                   kv_heads=c.get("num_key_value_heads") or heads, intermediate=c["intermediate_size"],
                   vocab=c["vocab_size"], tied=bool(c.get("tie_word_embeddings", False)),
                   head_dim=c.get("head_dim") or c["hidden_size"] // heads)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each decoder linear."""
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        """Parameters of the decoder linears (not the LM head)."""
        return self.layers * sum(a * b for a, b in self.linear_dims().values())

    @property
    def params(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return embeddings + self.linear_params + (2 * self.layers + 1) * self.hidden

    def lora_params(self, r: int, targets: Sequence[str]) -> int:
        dims = self.linear_dims()
        return self.layers * sum(r * (dims[t][0] + dims[t][1]) for t in targets)


@dataclass(frozen=True)
class StepSetup:
    """One micro-batch of LoRA training: `rows` rows of `row_tokens` tokens (a packed row holds many sequences)."""

    rows: int
    row_tokens: int
    dtype: str = "bf16"  # compute dtype: bf16 | fp16 | fp32
    lora_r: int = 16
    target_modules: tuple[str, ...] = LINEARS
    adapter_dtype: str = "fp32"
    quantization: str = "none"  # none | 4bit
    gradient_checkpointing: bool = False
    loss: Loss = "materialised"
    kernels: Literal["none", "liger"] = "none"
    attention: Attention = "causal"  # causal: no mask; dense_mask: SDPA with a [rows, L, L] mask; varlen kernel
    optimizer: str = "adamw_torch"

    @property
    def tokens(self) -> int:
        return self.rows * self.row_tokens


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes at the peak of one training step; total = weights + lora + activations + max(logits, backward)."""

    weights: int
    lora: int
    activations: int
    logits: int
    backward: int
    total: int

    def summary(self) -> str:
        parts = ", ".join(f"{name} {gib(getattr(self, name))}" for name in
                          ("weights", "lora", "activations", "logits", "backward"))
        return f"{gib(self.total)} ({parts})"


def gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB"


def resolve_targets(target_modules: Sequence[str] | str) -> tuple[str, ...]:
    names = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    if "all-linear" in names:
        return LINEARS
    unknown = [n for n in names if n not in LINEARS]
    if unknown:
        raise ValueError(f"cannot estimate LoRA on {unknown}: the estimator knows Llama-style modules {list(LINEARS)}")
    return tuple(dict.fromkeys(names))


def _optimizer_bytes(shape: ModelShape, setup: StepSetup, targets: Sequence[str], lora_params: int) -> int:
    adapter = DTYPE_BYTES[setup.adapter_dtype]
    if setup.optimizer == "sgd":  # the Trainer's SGD has no momentum: no state
        return 0
    if setup.optimizer == "adafactor":  # factored second moments: a row and a column vector per matrix, fp32
        dims = shape.linear_dims()
        return 4 * shape.layers * sum(2 * setup.lora_r + dims[t][0] + dims[t][1] for t in targets)
    return 2 * lora_params * adapter  # AdamW: exp_avg and exp_avg_sq in the parameter's dtype


def _per_layer_bytes_per_token(shape: ModelShape, setup: StepSetup, targets: Sequence[str]) -> float:
    s = DTYPE_BYTES[setup.dtype]
    quantized = setup.quantization == "4bit"
    resid = 4 if quantized else s  # kbit prep leaves embeddings and norms in fp32: the residual stream is fp32
    norm_in = resid if setup.kernels == "liger" else 4  # HF RMSNorm saves an fp32 copy of its input
    h, i = shape.hidden, shape.intermediate
    kv = shape.q_dim if setup.attention == "dense_mask" and shape.kv_heads != shape.heads else shape.kv_dim
    total = 2 * (h * norm_in + 4)  # two RMSNorm inputs + rstd
    total += s * (2 * shape.q_dim + 2 * kv) + 4 * shape.heads  # q, k, v, output and log-sum-exp of attention
    total += s * (2 if setup.kernels == "liger" else 3) * i  # gate, up (+ silu(gate) unless Liger recomputes it)
    dims = shape.linear_dims()
    if DTYPE_BYTES[setup.adapter_dtype] == s and not quantized:
        # adapters share their input with the base layer: q/k/v share n, gate/up share n2, o shares the SDPA output
        shared = [("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("down_proj",)]
        total += sum(s * dims[group[0]][0] for group in shared if any(t in targets for t in group))
    else:  # each adapter casts its input to its own dtype first: one copy per adapted module (autocast: s bytes)
        total += sum(s * dims[t][0] for t in targets)
    total += s * setup.lora_r * len(targets)  # lora_A outputs, saved by lora_B
    return total


def estimate(config: Mapping[str, Any] | ModelShape, setup: StepSetup) -> MemoryBreakdown:
    shape = config if isinstance(config, ModelShape) else ModelShape.from_config(config)
    targets = resolve_targets(setup.target_modules)
    s = DTYPE_BYTES[setup.dtype]
    adapter = DTYPE_BYTES[setup.adapter_dtype]
    T, L, h, V = setup.tokens, shape.layers, shape.hidden, shape.vocab

    if setup.quantization == "4bit":
        weights = shape.linear_params * NF4_BYTES + (shape.params - shape.linear_params) * 4
    else:
        weights = shape.params * s
    n_lora = shape.lora_params(setup.lora_r, targets)
    lora = 2 * n_lora * adapter + _optimizer_bytes(shape, setup, targets, n_lora)
    if adapter != s:
        lora += n_lora * s  # autocast caches a compute-dtype copy of each fp32 adapter weight for the step

    layer = T * _per_layer_bytes_per_token(shape, setup, targets)
    mask_float = mask_bool = 0
    if setup.attention == "dense_mask":  # bool mask built once; SDPA converts it to a float bias in every layer
        mask_bool = setup.rows * setup.row_tokens ** 2
        mask_float = mask_bool * s
    resid = 4 if setup.quantization == "4bit" else s
    common = T * (h * (resid if setup.kernels == "liger" else 4) + 4)  # final norm's input and rstd
    common += 2 * setup.row_tokens * shape.head_dim * s + 16 * T  # RoPE cos/sin, input ids and labels
    working = T * (shape.intermediate + 2 * h) * s
    if setup.quantization == "4bit":
        working += max(a * b for a, b in shape.linear_dims().values()) * s  # one dequantized weight at a time
    if setup.gradient_checkpointing:
        activations = L * T * h * resid + mask_bool + common
        backward = layer + mask_float + working
    else:
        activations = L * (layer + mask_float) + common
        backward = working

    if setup.loss == "materialised":
        logits = T * V * 12
    elif setup.loss == "trl_fused":
        logits = T * h * (s + 4) + 2 * min(T, TRL_TILE[0]) * min(V, TRL_TILE[1]) * s + 32 * T
    else:  # Liger: grad_input buffer + chunks of about T*h logits
        logits = T * (3 * h * s + 8)
    total = weights + lora + activations + max(logits, backward)
    return MemoryBreakdown(weights=int(weights), lora=int(lora), activations=int(activations), logits=int(logits),
                           backward=int(backward), total=int(total))


# ---------------------------------------------------------------------------------------------------------------
# Choosing the settings


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
    kernels: str = "auto"

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


def load_model_config(name_or_path: str) -> dict[str, Any] | None:
    """config.json of a local folder, or of a hub id already in the local cache; None if neither (no network)."""
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():  # a local model: its config, or nothing (never a hub lookup for a path)
        local = folder / "config.json"
        return json.loads(local.read_text()) if local.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name_or_path, "config.json")
    except Exception:  # not a valid hub id either
        return None
    return json.loads(Path(cached).read_text()) if isinstance(cached, str) else None


def cuda_device_bytes() -> int | None:
    """Total memory of the current CUDA device, or None without one. Imports torch."""
    import torch

    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory if torch.cuda.is_available() \
        else None
