"""Code shared by the Hugging Face based backends (peft now, unsloth later). Heavy imports stay inside."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import BackendError, ConfigError, Problem
from ..rundir import RunDir
from ..schema import ModelConfig

PROBE = [{"role": "user", "content": "Book a call with Ana Monday 9am."}]


def model_path(cfg: ModelConfig) -> str:
    """A local folder (the tiny model is built and cached on first use) or a hub id."""
    if cfg.tiny is not None:
        from ..tiny import ensure_tiny_model

        return str(ensure_tiny_model(cfg.tiny))
    return cfg.name


def check_model_reference(cfg: ModelConfig) -> None:
    """A name that looks like a local path must exist (cheap, so plan can tell before a run starts)."""
    if cfg.tiny is None and cfg.name.startswith(("/", "./", "../", "~")) and not Path(cfg.name).expanduser().is_dir():
        raise ConfigError(Problem("model.name", f"no model folder at '{cfg.name}'",
                                  "give an existing local folder or a hub id"))


@contextmanager
def loading(path: str, what: str) -> Iterator[None]:
    """Turn a failed from_pretrained into a message that names the model and what to do."""
    try:
        yield
    except (OSError, ValueError) as exc:
        raise BackendError(Problem("model.name", f"cannot load a {what} from '{path}': {str(exc).splitlines()[0]}",
                                   "give a local model folder or a hub id (hub ids need network access)")) from None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def attach_log_file(run: RunDir) -> logging.Handler:
    """Send transformers/peft/trl/ftorch log records to train.log for the life of the run."""
    handler = logging.FileHandler(run.log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    for name in ("transformers", "peft", "trl", "ftorch"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    for name in ("transformers", "peft", "trl", "ftorch"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def metrics_callback(run: RunDir):
    """A TrainerCallback writing one metrics.jsonl row per log event, with tokens/s between logs."""
    from transformers import TrainerCallback

    class MetricsRecorder(TrainerCallback):
        def __init__(self) -> None:
            self.last = (time.perf_counter(), None)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            row: dict[str, Any] = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "time": time.time()}
            if "loss" in logs:
                row.update(kind="train", loss=logs["loss"], lr=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"))
                tokens = state.num_input_tokens_seen or None
                then, then_tokens = self.last
                moment = time.perf_counter()
                if tokens is not None:
                    row["tokens"] = tokens
                    if then_tokens is not None and moment > then:
                        row["tokens_per_s"] = round((tokens - then_tokens) / (moment - then), 1)
                    self.last = (moment, tokens)
                if "mean_token_accuracy" in logs:  # only with TRL's fused loss
                    row["token_accuracy"] = logs["mean_token_accuracy"]
            elif "eval_loss" in logs:
                row.update(kind="eval", eval_loss=logs["eval_loss"])
            elif "train_runtime" in logs:
                row.update(kind="summary", **{k: v for k, v in logs.items() if isinstance(v, (int, float))})
            else:
                return
            with run.metrics.open("a") as handle:
                handle.write(json.dumps(row) + "\n")

        def on_save(self, args, state, control, **kwargs):
            run.append_log(f"checkpoint saved at step {state.global_step}")
            run.update(last_checkpoint_step=state.global_step)

    return MetricsRecorder()


def latest_checkpoint(run: RunDir) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(run.checkpoints)) if run.checkpoints.is_dir() else None


def reload_check(trained, base_path: str, adapter_dir: Path, tokenizer) -> dict[str, Any]:
    """Load base + saved adapter from disk and compare logits with the in-memory trained model,
    and with the plain base model: the adapter must reload exactly and must change the output."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    device = next(trained.parameters()).device
    ids = tokenizer.apply_chat_template(PROBE, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ids = {k: v.to(device) for k, v in ids.items()}
    trained.eval()
    with torch.no_grad():
        expected = trained(**ids).logits.float()
        base = AutoModelForCausalLM.from_pretrained(base_path, dtype=expected.dtype).to(device).eval()
        base_logits = base(**ids).logits.float()
        reloaded = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
        got = reloaded(**ids).logits.float()
    reload_diff = (got - expected).abs().max().item()
    base_diff = (got - base_logits).abs().max().item()
    result = {"max_abs_diff_vs_trained": reload_diff, "max_abs_diff_vs_base": base_diff,
              "matches_trained": reload_diff < 1e-3, "changes_base_output": base_diff > 1e-4}
    if not result["matches_trained"]:
        raise BackendError(Problem(str(adapter_dir), f"the saved adapter does not reproduce the trained model "
                                   f"(max logit difference {reload_diff:.3g})"))
    return result


def require_cuda_for_4bit(device: str) -> None:
    if device != "cuda":
        raise BackendError(Problem("train.quantization", "QLoRA (4bit) needs a CUDA GPU and bitsandbytes; "
                                   "this machine has no CUDA device",
                                   "use train.quantization=none (plain LoRA) on CPU"))
