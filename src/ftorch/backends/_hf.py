"""Code shared by the Hugging Face based backends (peft, unsloth, and axolotl for model paths). Heavy imports inside."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from ..errors import BackendError, ModelError, Problem
from ..run.rundir import RunDir
from ..safe_io import fresh_dir, remove
from .checkpoints import checkpoint_problem, resume_point, step_of  # noqa: F401  (one rule: checkpoints.py)

if TYPE_CHECKING:
    from ..config.schema import RunConfig

PROBE = [{"role": "user", "content": "Book a call with Ana Monday 9am."}]


@contextmanager
def loading(path: str, what: str) -> Iterator[None]:
    """Turn a failed from_pretrained into a message that names the model and what to do."""
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


def metrics_callback(run: RunDir):
    """A TrainerCallback writing one metrics.jsonl row per log event, with tokens/s between logs."""
    from transformers import TrainerCallback

    from ..run import metrics_log

    class MetricsRecorder(TrainerCallback):
        def __init__(self) -> None:
            self.last = (time.perf_counter(), None)

        def on_log(self, args, state, control, logs=None, **kwargs) -> None:
            if not state.is_world_process_zero:
                return
            logs = {**(logs or {}), "epoch": round(state.epoch or 0.0, 4)}
            extra: dict[str, Any] = {"time": time.time()}
            tokens = state.num_input_tokens_seen or None
            if "loss" in logs and tokens is not None:
                then, then_tokens = self.last
                moment = time.perf_counter()
                extra["tokens"] = tokens
                if then_tokens is not None and moment > then:
                    extra["tokens_per_s"] = round((tokens - then_tokens) / (moment - then), 1)
                self.last = (moment, tokens)
            row = metrics_log.from_trainer_logs(state.global_step, logs, **extra)
            if row is not None:
                metrics_log.append(run.metrics, row)

        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            run.append_log(f"checkpoint saved at step {state.global_step}")
            run.update(last_checkpoint_step=state.global_step)

    return MetricsRecorder()


def quiet_progress(trainer, stream=None) -> None:
    """On a terminal, the trainer's progress bar with loss and lr on it instead of a dict printed every step (the
    numbers are in metrics.jsonl). Into a file or a pipe (CI, nohup, a launcher's log), where every bar refresh
    would be a line: one plain line every tenth of the run instead."""
    from transformers.trainer_callback import ProgressCallback, TrainerCallback

    stream = stream or sys.stderr

    class BarWithLoss(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{logs['loss']:.4g}", lr=f"{logs.get('learning_rate', 0):.3g}")

    class LinePerTenth(TrainerCallback):
        def __init__(self) -> None:
            self.started, self.loss = time.monotonic(), None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = logs["loss"]

        def on_step_end(self, args, state, control, **kwargs):
            every = max(1, state.max_steps // 10)
            if state.is_world_process_zero and (state.global_step % every == 0 or state.global_step == state.max_steps):
                loss = f"  loss {self.loss:.4g}" if self.loss is not None else ""
                elapsed = time.monotonic() - self.started
                print(f"step {state.global_step}/{state.max_steps}{loss}  {elapsed:.0f}s", file=stream, flush=True)

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(BarWithLoss() if stream.isatty() else LinePerTenth())


def training_finished(checkpoint: str | None) -> TypeGuard[str]:
    """Whether this checkpoint was saved at the last step (what is left is only saving the adapter)."""
    if checkpoint is None:
        return False
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    return 0 < state.get("max_steps", 0) <= state.get("global_step", 0)


def restore_finished(trainer, checkpoint: str, run: RunDir) -> None:
    """Killed while the adapter was saved: the last checkpoint holds the trained weights and state; load them
    instead of training one step more (every backend that runs a transformers Trainer)."""
    from transformers import TrainerState

    note = f"training had finished at {os.path.basename(checkpoint)}; saving its adapter without training further"
    run.append_log(note)
    if trainer.is_world_process_zero():
        print(note, flush=True)
    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))


def publish_adapter(run: RunDir, write: Callable[[Path], None], main: bool = True) -> None:
    """Write the adapter into RUN/.adapter.partial, then rename it to RUN/adapter: a kill leaves either the
    old folder, no folder, or the complete new one, never a half-written adapter/."""
    partial = run.path / ".adapter.partial"
    if main:
        fresh_dir(partial)  # made here: a symlink planted at its name is removed, never written through
    write(partial)
    if not main:
        return
    if run.adapter.exists():
        old = run.path / ".adapter.old"
        remove(old)  # a symlink planted at its name is unlinked, never followed
        os.replace(run.adapter, old)
        os.replace(partial, run.adapter)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, run.adapter)


def publish_trained(trainer, run: RunDir, tokenizer, base_path: str, save_model: Callable[[Path], None],
                    collective: bool = False, quantized: bool = False) -> dict[str, Any] | None:
    """After training, on every rank: rank 0 saves the model with `save_model(folder)` and the tokenizer,
    publishes the adapter and checks that it reloads. A `collective` save (the Trainer's own, which gathers a
    sharded model on all ranks and writes on rank 0) runs on every rank. Returns the reload check on rank 0,
    None on the others."""
    main = trainer.is_world_process_zero()

    def write(folder: Path) -> None:
        if collective or main:
            save_model(folder)
        if main:
            tokenizer.save_pretrained(str(folder))

    publish_adapter(run, write, main=main)
    if not main:
        return None
    check = reload_check(trainer.model, base_path, run.adapter, tokenizer, quantized=quantized)
    run.append_log(f"reload check: {check}")
    return check


def reload_check(trained, base_path: str, adapter_dir: Path, tokenizer, quantized: bool = False) -> dict[str, Any]:
    """Load base + saved adapter from disk (plain transformers + PEFT, as `ftorch eval` does) and compare logits
    with the in-memory trained model, and with the plain base model: the adapter must reload and must change
    the output. fp32 must match to 1e-3; 16-bit runs to 2% of the largest logit; a 4-bit run cannot be
    reloaded bit-exactly in another precision, so its differences are recorded, not judged."""
    inputs, expected = probe_logits(trained, tokenizer)
    frozen = next(p for p in trained.parameters() if not p.requires_grad)
    dtype = str(frozen.dtype).removeprefix("torch.")
    if quantized or dtype not in ("float32", "bfloat16", "float16"):
        return peft_reload_check(expected, inputs, base_path, adapter_dir, "bfloat16", None, str(frozen.device))
    atol = 1e-3 if dtype == "float32" else 0.02 * expected.abs().max().item()
    return peft_reload_check(expected, inputs, base_path, adapter_dir, dtype, atol, str(frozen.device))


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
    from ..chat_masks import HINT, MaskError, chat_template, has_generation_markers, template_problem

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


def probe_logits(model, tokenizer) -> tuple[dict[str, Any], Any]:
    """The PROBE conversation's input ids (on CPU) and the model's logits for it (float32, on CPU)."""
    import torch

    device = next(model.parameters()).device
    inputs = tokenizer.apply_chat_template(PROBE, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    inputs = {k: v.cpu() for k, v in inputs.items()}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()
    model.train(was_training)
    return inputs, logits


def compare_reload(expected, got, base, atol: float | None) -> dict[str, Any]:
    """reload_check's verdict from three sets of logits. atol=None records the differences without judging
    them (a reload in another precision or without 4-bit cannot match exactly)."""
    reload_diff = (got - expected).abs().max().item()
    base_diff = (got - base).abs().max().item()
    result: dict[str, Any] = {"max_abs_diff_vs_trained": reload_diff, "max_abs_diff_vs_base": base_diff,
                              "same_top_token": bool((got.argmax(-1) == expected.argmax(-1)).all()),
                              "tolerance": atol}
    if atol is not None:
        result.update(matches_trained=reload_diff < atol, changes_base_output=base_diff > atol / 10)
    return result


def peft_reload_check(expected, inputs: dict[str, Any], base_path: str, adapter_dir: Path, dtype: str,
                      atol: float | None, device: str = "cpu") -> dict[str, Any]:
    """Load the base model with plain transformers and the adapter with plain PEFT, as `ftorch eval` does, and
    compare with logits recorded from the trained model (possibly in another process or library)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    inputs = {k: v.to(device) for k, v in inputs.items()}
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=getattr(torch, dtype))
        # transformers types PreTrainedModel.to through a wrapper that loses `self` (it takes a device at run time)
        base = base.to(device).eval()  # type: ignore[arg-type]
        base_logits = base(**inputs).logits.float().cpu()
        reloaded = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
        got = reloaded(**inputs).logits.float().cpu()
    result = compare_reload(expected, got, base_logits, atol)
    if atol is not None and not result["matches_trained"]:
        raise BackendError(Problem(str(adapter_dir), "the saved adapter, loaded with plain transformers + PEFT, "
                                   f"does not reproduce the trained model (max logit difference "
                                   f"{result['max_abs_diff_vs_trained']:.3g})"))
    return result


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

        from ._varlen import register as register_varlen

        kwargs["attn_implementation"] = "flash_attention_2" if find_spec("flash_attn") else register_varlen()
    with loading(path, "model"):
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if cfg.train.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        checkpointing = bool((settings or {}).get("gradient_checkpointing"))
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    return model
