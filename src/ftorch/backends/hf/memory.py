"""Peak memory of one LoRA training step, estimated from the model's shape (fit.py picks the settings
that fill one card from it).

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
        activations: float = L * T * h * resid + mask_bool + common
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
