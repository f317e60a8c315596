"""ftorch's train.* as the Hugging Face stack's arguments, for the providers that drive TRL themselves (peft,
unsloth): the trainer settings every TRL config reads (transformers' TrainingArguments plus TRL's max_length),
the precision a device gets, and the model's shape for the memory estimate. Each provider adds its own
method- and library-specific keys on top, in its own module; nothing here knows a provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import BackendError, Problem

if TYPE_CHECKING:
    from ...config.schema import RunConfig


def trainer_args(cfg: RunConfig, micro_batch_size: int, grad_accum: int) -> dict[str, Any]:
    """The keys SFTConfig, DPOConfig, KTOConfig, ORPOConfig and CPOConfig all take, with the micro-batch and
    accumulation the provider decided (train.batch_size and train.grad_accum, or a memory-driven pick)."""
    t = cfg.train
    return {
        "learning_rate": t.lr,
        "num_train_epochs": t.fixed_epochs,
        "max_steps": t.max_steps or -1,
        "per_device_train_batch_size": micro_batch_size,
        "per_device_eval_batch_size": micro_batch_size,
        "gradient_accumulation_steps": grad_accum,
        "max_length": t.max_length,
        "warmup_steps": t.warmup_ratio,  # a float in [0, 1) is a ratio of total steps in transformers 5
        "lr_scheduler_type": t.scheduler,
        "weight_decay": t.weight_decay,
        "optim": t.optimizer,
        "max_grad_norm": t.max_grad_norm,
        "seed": t.seed,
        "data_seed": t.seed,
        "logging_steps": t.logging_steps,
        "save_strategy": "steps",
        "save_steps": t.save_steps,
        "save_total_limit": t.save_total_limit,
        "eval_strategy": "epoch" if cfg.data.validation else "no",
        "report_to": [],
        "dataset_num_proc": None,
    }


def precision(requested: str, device: str) -> str:
    """train.precision resolved for the device: auto is bf16 (fp16 without bf16 support) on CUDA, fp32 on CPU."""
    if requested != "auto":
        if requested == "fp16" and device == "cpu":
            raise BackendError(Problem("train.precision", "fp16 training needs a GPU", "use fp32 or bf16 on CPU"))
        return requested
    if device == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def model_shape(cfg: RunConfig) -> dict | None:
    """The model's config.json numbers (the tiny model's from its settings), without loading it."""
    from ...models import shape

    t = cfg.model.tiny
    return ({"hidden_size": t.hidden_size, "num_hidden_layers": t.num_layers, "num_attention_heads": t.num_heads,
             "num_key_value_heads": t.num_heads, "intermediate_size": t.intermediate_size,
             "vocab_size": t.vocab_size, "tie_word_embeddings": True} if t else shape(cfg.model.name))
