"""Issue 11's benchmark: LoRA on a Llama-3.2-1B-shaped model on one GPU, every variant in one run.

    python bench/gpu_lora.py --variants all        # on a CUDA GPU; prints a markdown table (ratios vs A)
    python bench/gpu_lora.py --dry-run             # on CPU: tiny shapes, 4 steps, proves the script's logic

Workload (fixed): LlamaConfig hidden 2048, 16 layers, 32 heads, 8 KV heads, intermediate 8192, vocab 128256, tied,
bf16, random init saved and loaded with from_pretrained; 320 random-token sequences of lengths uniform in
[128, 2048] (seed 0); LoRA r=16, alpha=32, dropout 0 on q,k,v,o,gate,up,down; AdamW lr 1e-4; 16 sequences per
optimizer step; 3 warm-up steps, then the median of 15. Every variant runs in its own process (Liger and Unsloth
patch transformers globally) on the same steps. Useful tokens are the non-pad ones. MFU counts model FLOPs:
4*N_linear (forward + input gradient of frozen linears, LM head included) + 6*N_lora per useful token, plus
6*layers*hidden*L^2 per sequence of length L for causal attention; recomputation is not counted.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # ftorch without installing it (GPU images)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ftorch.backends.hf.fit import TrainRequest, choose  # noqa: E402
from ftorch.backends.hf.memory import LINEARS, ModelShape, StepSetup, estimate  # noqa: E402

H100_BF16_FLOPS = 989e12
FULL = dict(shape=dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                       intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True),
            sequences=320, lengths=(128, 2048), warmup=3, timed=15, matmul=8192)
DRY = dict(shape=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=128, vocab_size=1024, tie_word_embeddings=True),
           sequences=64, lengths=(8, 64), warmup=1, timed=3, matmul=512)
PER_STEP = 16


@dataclass(frozen=True)
class Variant:
    name: str
    packed: bool = False
    checkpointing: bool = True
    adapter_bf16: bool = False
    loss: str = "materialised"  # materialised | trl_fused | liger_fused
    liger: bool = False
    quant4: bool = False
    unsloth: bool = False
    micro: int = PER_STEP  # sequences per forward pass
    note: str = ""


VARIANTS = [
    Variant("A", note="padded HF+PEFT, SDPA, gradient checkpointing (baseline)"),
    Variant("packed", packed=True, note="padding-free packing, varlen attention"),
    Variant("packed+liger", packed=True, liger=True, loss="liger_fused", note="+ Liger kernels and fused CE"),
    Variant("packed+liger+bf16", packed=True, liger=True, loss="liger_fused", adapter_bf16=True,
            note="+ bf16 adapter weights"),
    Variant("packed+liger+bf16-ckpt", packed=True, liger=True, loss="liger_fused", adapter_bf16=True,
            checkpointing=False, note="+ no gradient checkpointing"),
    Variant("ftorch", note="what ftorch's choose() picks for this card"),
    Variant("ftorch-lowmem", packed=True, adapter_bf16=True, loss="trl_fused",
            note="memory saving: packing, fused loss, bf16 adapters, checkpointing"),
    Variant("qlora", packed=True, adapter_bf16=True, loss="trl_fused", quant4=True,
            note="QLoRA (NF4, bitsandbytes) on the packed path"),
    Variant("unsloth", unsloth=True, adapter_bf16=True, note="Unsloth directly (padded, its checkpointing)"),
]


def counted_params(shape: ModelShape, r: int, targets: tuple[str, ...]) -> tuple[int, int]:
    """(N_linear, N_lora): decoder linears plus the LM head, and the adapters."""
    return shape.linear_params + shape.vocab * shape.hidden, shape.lora_params(r, targets)


def step_flops(shape: ModelShape, r: int, targets: tuple[str, ...], lengths: list[int]) -> int:
    n_linear, n_lora = counted_params(shape, r, targets)
    return (4 * n_linear + 6 * n_lora) * sum(lengths) + 6 * shape.layers * shape.hidden * sum(n * n for n in lengths)


def mfu(flops: float, seconds: float, peak_flops: float = H100_BF16_FLOPS) -> float:
    return flops / seconds / peak_flops


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def varlen_kernel() -> str | None:
    """attn_implementation for padding-free rows: FlashAttention when installed, else PyTorch's varlen_attn."""
    import torch

    if has("flash_attn"):
        return "flash_attention_2"
    return "torch_varlen" if hasattr(torch.nn.attention, "varlen") or has("torch.nn.attention.varlen") else None


def skip_reason(v: Variant, cuda: bool, kernel: str | None) -> str | None:
    checks = [(v.liger and not has("liger_kernel"), "liger-kernel is not installed"),
              (v.liger and not cuda, "Liger's Triton kernels need CUDA"),
              (v.quant4 and not (cuda and has("bitsandbytes")), "4-bit needs CUDA and the bitsandbytes package"),
              (v.unsloth and not (cuda and has("unsloth")), "Unsloth needs CUDA and the unsloth package"),
              (v.packed and kernel is None, "no varlen attention kernel (flash-attn or torch.nn.attention.varlen)")]
    return next((reason for failed, reason in checks if failed), None)


def resolve(v: Variant, work: dict, cuda: bool, device_bytes: int | None, kernel: str | None
            ) -> tuple[Variant, list[str]]:
    """ftorch's own variants and QLoRA: settings from choose() (ftorch), or the fused loss that is installed."""
    liger, trl = cuda and has("liger_kernel"), has("trl")
    if v.name in ("ftorch-lowmem", "qlora"):  # as ftorch runs them: TRL's fused head, Liger's layer kernels
        fused = "trl_fused" if trl else "liger_fused" if liger else "materialised"
        return replace(v, liger=liger, loss=fused), []
    if v.name != "ftorch":
        return v, []
    req = TrainRequest(batch_size=PER_STEP, grad_accum=1, max_length=work["lengths"][1], lora_r=16,
                       target_modules=LINEARS)
    c = choose(work["shape"], req, device_bytes or 80 * 2**30, fused_available=trl, liger_available=liger,
               varlen_available=kernel is not None)
    s = c.settings
    loss = "trl_fused" if s["fused_loss"] else "materialised"
    return replace(v, packed=s["packing"], checkpointing=s["gradient_checkpointing"], loss=loss,
                   adapter_bf16=s["adapter_dtype"] == "bf16", liger=s["kernels"] == "liger",
                   micro=PER_STEP // s["grad_accum"]), c.reasons


# ---------------------------------------------------------------------------------------------------------------
# Worker: one variant in its own process


def register_torch_varlen() -> None:
    """ftorch's own registration: the benchmark measures what the backend runs."""
    from ftorch.backends.hf import varlen as _varlen

    _varlen.register()


def load(v: Variant, model_dir: str, kernel: str | None, device: str):
    import inspect

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    lora = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=list(LINEARS))
    if v.unsloth:
        from unsloth import FastLanguageModel

        model, _ = FastLanguageModel.from_pretrained(model_dir, dtype=torch.bfloat16, load_in_4bit=False,
                                                     max_seq_length=FULL["lengths"][1])
        return FastLanguageModel.get_peft_model(model, use_gradient_checkpointing="unsloth", random_state=0, **lora)
    if kernel == "torch_varlen":
        register_torch_varlen()
    kwargs = {"dtype": torch.bfloat16, "attn_implementation": kernel if v.packed else "sdpa", "device_map": device}
    if v.quant4:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16,
                                                           bnb_4bit_use_double_quant=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    model.config.use_cache = False
    if v.liger:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        instance = {"model": model} if "model" in inspect.signature(apply_liger_kernel_to_llama).parameters else {}
        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=v.loss == "liger_fused", **instance)
    if v.loss == "trl_fused":
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model)
    if v.quant4:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=v.checkpointing)
    elif v.checkpointing:  # non-reentrant, as the Trainer does; the method was renamed in transformers 5.2x
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora), autocast_adapter_dtype=not v.adapter_bf16)
    if v.adapter_bf16:
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
    return model.train()


def batch_for(v: Variant, seqs: list, pad_id: int, device: str) -> dict:
    """Padded rows with an attention mask, or one padding-free row as TRL's collator builds it."""
    import torch

    if v.packed:
        ids = torch.cat(seqs)[None]
        positions = torch.cat([torch.arange(len(s)) for s in seqs])[None]
        labels = ids.clone()
        labels[positions == 0] = -100
        cu = torch.tensor([0, *torch.tensor([len(s) for s in seqs]).cumsum(0).tolist()], dtype=torch.int32)
        out = {"input_ids": ids, "position_ids": positions, "labels": labels, "cu_seq_lens_q": cu, "cu_seq_lens_k": cu}
        out = {k: t.to(device) for k, t in out.items()}
        out["max_length_q"] = out["max_length_k"] = max(len(s) for s in seqs)
        return out
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, :len(s)], mask[row, :len(s)] = s, 1
    labels = ids.masked_fill(mask == 0, -100)
    return {k: t.to(device) for k, t in {"input_ids": ids, "attention_mask": mask, "labels": labels}.items()}


def micro_setup(v: Variant, seqs: list, dtype: str) -> StepSetup:
    lengths = [len(s) for s in seqs]
    rows, row = (1, sum(lengths)) if v.packed else (len(lengths), max(lengths))
    return StepSetup(rows=rows, row_tokens=row, dtype=dtype, adapter_dtype="bf16" if v.adapter_bf16 else "fp32",
                     quantization="4bit" if v.quant4 else "none", gradient_checkpointing=v.checkpointing,
                     loss=v.loss, kernels="liger" if v.liger else "none",  # type: ignore[arg-type]
                     attention="varlen" if v.packed else "dense_mask")


def worker(v: Variant, model_dir: str, work: dict, kernel: str | None) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = ModelShape.from_config(work["shape"])
    torch.manual_seed(0)
    model = load(v, model_dir, kernel, device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    steps = data(work)
    times, useful, flops, losses, est = [], [], [], [], 0
    for i, step in enumerate(steps[:work["warmup"] + work["timed"]]):
        if i == work["warmup"] and device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        targets, step_loss = sum(len(s) - 1 for s in step), 0.0
        for j in range(0, len(step), v.micro):
            seqs = step[j:j + v.micro]
            batch = batch_for(v, seqs, 0, device)
            with torch.autocast(device, dtype=torch.bfloat16):
                fused = {"fused_lm_head": True} if v.loss == "trl_fused" else {}
                loss = model(**batch, **fused).loss * (sum(len(s) - 1 for s in seqs) / targets)  # token mean
            loss.backward()
            step_loss += loss.detach()
            if i >= work["warmup"] and not v.unsloth:
                est = max(est, estimate(shape, micro_setup(v, seqs, "bf16")).total)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        losses.append(float(step_loss))
        if i >= work["warmup"]:
            times.append(time.perf_counter() - start)
            useful.append(sum(len(s) for s in step))
            flops.append(step_flops(shape, 16, LINEARS, [len(s) for s in step]))
    rates = [n / t for n, t in zip(useful, times)]
    return {"tokens_per_s": statistics.median(rates), "step_s": statistics.median(times),
            "flops_per_s": statistics.median(f / t for f, t in zip(flops, times)),
            "peak_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None,
            "estimate_bytes": est or None, "first_loss": losses[0], "last_loss": losses[-1]}


def data(work: dict) -> list:
    """The fixed sequences, grouped 16 per optimizer step."""
    import torch

    g = torch.Generator().manual_seed(0)
    low, high = work["lengths"]
    lengths = torch.randint(low, high + 1, (work["sequences"],), generator=g).tolist()
    seqs = [torch.randint(0, work["shape"]["vocab_size"], (n,), generator=g) for n in lengths]
    return [seqs[i:i + PER_STEP] for i in range(0, len(seqs), PER_STEP)]


# ---------------------------------------------------------------------------------------------------------------
# Driver


def make_model_dir(path: Path, work: dict, device: str) -> None:
    """Random-initialised bf16 Llama saved with save_pretrained, plus a word-level tokenizer for loaders that
    want one (Unsloth)."""
    import torch
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    config = LlamaConfig(**work["shape"], max_position_embeddings=max(4096, work["lengths"][1]), pad_token_id=0,
                         bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path)
    vocab = {f"t{i}": i for i in range(work["shape"]["vocab_size"])}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t3")),
                                        pad_token="t0", bos_token="t1", eos_token="t2", unk_token="t3")
    tokenizer.save_pretrained(path)


def matmul_rate(n: int, device: str) -> float:
    """FLOP/s of an n x n x n matrix product in bf16 (fp32 on CPU): the best this card does, measured now."""
    import torch

    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
            for _ in range(2))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for reps in (3, 10):  # warm-up, then timed
        sync()
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
    return 2 * n**3 * reps / (time.perf_counter() - start)


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("torch", "transformers", "peft", "trl", "liger-kernel", "flash-attn", "bitsandbytes", "unsloth"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


def table(results: dict[str, dict], matmul: float, dry: bool) -> str:
    base = results.get("A", {})
    rows = ["| variant | useful tok/s | x A | peak alloc | x A | MFU (989 TF) | MFU (measured matmul) | estimate "
            "| est/peak | loss, step 1 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if "tokens_per_s" not in r:
            rows.append(f"| {name} | {r.get('skipped') or 'failed: ' + r['error']} |" + " |" * 8)
            continue
        peak, est = r["peak_bytes"], r["estimate_bytes"]
        cells = [name, f"{r['tokens_per_s']:,.0f}", ratio(r["tokens_per_s"], base.get("tokens_per_s")), gb(peak),
                 ratio(peak, base.get("peak_bytes")), f"{100 * mfu(r['flops_per_s'], 1.0):.1f}%",
                 f"{100 * r['flops_per_s'] / matmul:.1f}%", gb(est), f"{est / peak:.2f}" if est and peak else "",
                 f"{r['first_loss']:.4f}"]
        rows.append("| " + " | ".join(cells) + " |")
    if dry:
        rows.append("\n(dry run on CPU: tiny shapes, fallback attention; the numbers only prove the script runs)")
    return "\n".join(rows)


def ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value and base else ""


def gb(n: int | None) -> str:
    return f"{n / 2**30:.2f} GiB" if n else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="all", help="comma-separated names, or all: "
                        + ", ".join(v.name for v in VARIANTS))
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes and 4 steps on CPU")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = DRY if args.dry_run else FULL
    if args.worker:  # child process: one variant, JSON on the last line of stdout
        v = Variant(**json.loads(args.worker))
        print(json.dumps(worker(v, args.model_dir, work, varlen_kernel())))
        return 0

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("error: bench/gpu_lora.py measures a GPU and this machine has no CUDA device; "
              "run it on a CUDA machine, or use --dry-run to check the script on CPU", file=sys.stderr)
        return 2
    device = "cuda" if cuda else "cpu"
    chosen = VARIANTS if args.variants == "all" else [v for v in VARIANTS if v.name in args.variants.split(",")]
    unknown = set(args.variants.split(",")) - {v.name for v in VARIANTS} - {"all"}
    if unknown:
        print(f"error: unknown variants {sorted(unknown)}", file=sys.stderr)
        return 2
    kernel = varlen_kernel() if cuda or args.dry_run else None
    device_bytes = torch.cuda.get_device_properties(0).total_memory if cuda else None
    card = torch.cuda.get_device_name(0) if cuda else "CPU (dry run)"
    print(f"# {card}, {datetime.date.today()}, {versions()}; varlen kernel: {kernel}", flush=True)
    matmul = matmul_rate(work["matmul"], device)
    print(f"measured {'bf16' if cuda else 'fp32'} matmul: {matmul / 1e12:.3f} TFLOP/s", flush=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        make_model_dir(Path(tmp), work, device)
        for v in chosen:
            v, reasons = resolve(v, work, cuda, device_bytes, kernel)
            for reason in reasons:
                print(f"  {v.name}: {reason}")
            reason = skip_reason(v, cuda, kernel)
            if reason:
                results[v.name] = {"skipped": f"skipped: {reason}"}
                print(f"{v.name}: skipped ({reason})", flush=True)
                continue
            results[v.name] = run_worker(v, tmp, args.dry_run)
            print(f"{v.name}: {json.dumps(results[v.name])}", flush=True)
    print(table(results, matmul, args.dry_run))
    if args.out:
        args.out.write_text(json.dumps({"card": card, "versions": versions(), "matmul_flops": matmul,
                                        "results": results}, indent=2))
    return 0


def run_worker(v: Variant, model_dir: str, dry: bool) -> dict:
    command = [sys.executable, __file__, "--worker", json.dumps(asdict(v)), "--model-dir", model_dir]
    done = subprocess.run(command + (["--dry-run"] if dry else []), capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "settings": asdict(v)}


if __name__ == "__main__":
    sys.exit(main())
