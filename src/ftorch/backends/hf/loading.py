"""Loading a model and tokenizer for training (peft, and the Unsloth child for its checks): failures that name the
model, PEFT's target-module error rewritten, the chat template that marks the assistant's tokens. Heavy imports
inside."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ...errors import BackendError, ModelError, Problem
from ...threads import configure_torch

if TYPE_CHECKING:
    from ...config.schema import RunConfig

@contextmanager
def loading(path: str, what: str) -> Iterator[None]:
    """Turn a failed from_pretrained into a message that names the model and what to do. torch is made to follow
    the thread policy first (every model ftorch loads comes through here)."""
    configure_torch()
    try:
        yield
    except Exception as exc:  # OSError, ValueError, and a bare Exception from tokenizers for a broken tokenizer.json
        if isinstance(exc, MemoryError):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(Problem("model.name", f"cannot load a {what} from '{path}': {first}",
                                 "give a local model folder, a .gguf file or a hub id (hub ids need network "
                                 "access)")) from None


@contextmanager
def lora_targets_checked(model, targets: list[str]) -> Iterator[None]:
    """PEFT's error for target modules the model lacks, rewritten to name the key and the model's layers."""
    try:
        yield
    except ValueError as exc:
        if "target" not in str(exc).lower():
            raise
        import torch

        names = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                        if isinstance(module, torch.nn.Linear)})
        raise BackendError(Problem("train.lora.target_modules", f"no module of this model matches {targets}",
                                   f"this model's linear layers: {', '.join(names)}")) from None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def require_cuda_for_4bit(device: str) -> None:
    if device != "cuda":
        raise BackendError(Problem("train.quantization", "QLoRA (4bit) needs a CUDA GPU and bitsandbytes; "
                                   "this machine has no CUDA device",
                                   "use train.quantization=none (plain LoRA) on CPU"))


def ensure_training_chat_template(tokenizer, path: str, assistant_only_loss: bool, *,
                                  trl_masks: bool = False) -> str | None:
    """With the loss on assistant turns only, make sure the tokenizer's chat template can tell which tokens are
    the assistant's, and say how: "markers" (the template wraps them in {% generation %}), "offsets" (ftorch finds
    them in the rendered text, ftorch.chat_masks: any prefix-preserving template with an end-of-turn text; the
    model's own template is kept, so training renders exactly what inference does), or "trl" (TRL's training
    version of the template, swapped in where offsets cannot serve it: Qwen3, DeepSeek, Nemotron, GLM-4, ...).
    None when the loss covers every token. trl_masks=True is for a caller that hands raw messages to TRL, which
    needs markers (the Unsloth child). A template none of these serve is a ModelError (exit 2) naming the choices."""
    if not assistant_only_loss:
        return None
    from ...chat_masks import HINT, MaskError, chat_template, has_generation_markers, template_problem

    try:
        template = chat_template(tokenizer)
    except MaskError as exc:
        raise ModelError(Problem("train.assistant_only_loss", f"{path}: {exc}", "set "
                                 "train.assistant_only_loss=false, or give the tokenizer a chat template")) from None
    if has_generation_markers(template):
        return "markers"
    problem = ("TRL tokenizes the conversations itself and needs {% generation %} markers" if trl_masks
               else template_problem(tokenizer))
    if problem is None:
        return "offsets"
    training = _trl_training_template(tokenizer)
    if training is not None:
        tokenizer.chat_template = training
        return "trl"
    hint = ("use provider=peft (ftorch finds the assistant tokens of any prefix-preserving template), or "
            "set train.assistant_only_loss=false") if trl_masks else HINT
    raise ModelError(Problem("train.assistant_only_loss", f"cannot tell the assistant's tokens with the chat "
                             f"template of {path}: {problem}", hint))


def _trl_training_template(tokenizer) -> str | None:
    """TRL's version of this template with {% generation %} markers, if TRL ships one (only for templates identical
    to the originals it knows; for others it raises ValueError "not training-compatible")."""
    from trl.chat_template_utils import get_training_chat_template

    try:
        return get_training_chat_template(tokenizer)
    except Exception:  # that ValueError, or a template that breaks TRL's own rendering checks
        return None


def load_tokenizer(path: str, cfg: RunConfig):
    from transformers import AutoTokenizer

    """The tokenizer at `path`, with a pad token and a chat template that can mark the assistant's tokens."""
    with loading(path, "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(path, revision=cfg.model.revision,
                                                  trust_remote_code=cfg.model.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    how = ensure_training_chat_template(tokenizer, path, cfg.train.assistant_only_loss)
    logging.getLogger("ftorch").info("assistant-only loss: %s", {"markers": "the template's {% generation %} markers",
                                     "offsets": "spans found by ftorch in the model's own template",
                                     "trl": "TRL's training version of the template"}.get(how or "", "off"))
    return tokenizer


def load_model(path: str, cfg: RunConfig, precision: str, settings: dict[str, Any] | None = None):
    """The model at `path` for LoRA training: in `precision` (or model.dtype), 4-bit for QLoRA, with the
    attention kernel fit.choose() picked (`settings`)."""
    import torch
    from transformers import AutoModelForCausalLM

    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    dtype = dtypes[precision] if cfg.model.dtype == "auto" else getattr(torch, cfg.model.dtype)
    kwargs: dict[str, Any] = {"dtype": dtype, "revision": cfg.model.revision,
                              "trust_remote_code": cfg.model.trust_remote_code}
    if cfg.train.quantization == "4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True)
    if settings and settings.get("attention") == "varlen":  # padding-free packed rows, no dense mask
        from importlib.util import find_spec

        from .varlen import register as register_varlen

        kwargs["attn_implementation"] = "flash_attention_2" if find_spec("flash_attn") else register_varlen()
    with loading(path, "model"):
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if cfg.train.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        checkpointing = bool((settings or {}).get("gradient_checkpointing"))
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    return model
