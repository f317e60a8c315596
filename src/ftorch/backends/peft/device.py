"""Where provider=peft trains, in which precision, and the model and tokenizer it trains: one answer for its SFT
and preference runs (its own module so peft/preference.py need not import the backend)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...config.providers import PeftProvider
from ..hf import loading
from ..hf import translate as hf_translate

if TYPE_CHECKING:
    from ...config.schema import RunConfig
    from ...run.rundir import RunDir
    from ..base import Plan


def device_and_precision(cfg: RunConfig) -> tuple[str, str]:
    """Where provider=peft trains (provider.device, auto = cuda when there is one) and in which precision; 4-bit
    needs CUDA. The same for SFT and preference runs."""
    p = cfg.provider_as(PeftProvider)
    device = p.device if p.device != "auto" else ("cuda" if loading.cuda_available() else "cpu")
    if cfg.train.quantization == "4bit":
        loading.require_cuda_for_4bit(device)
    return device, hf_translate.precision(cfg.train.precision, device)


def load_for_training(plan: Plan, run: RunDir, note: str = "") -> tuple[str, str, str, Any, Any]:
    """(device, precision, model path, tokenizer, model) of a peft run, its device and precision said in
    train.log."""
    from ...models import model_path

    cfg = plan.config
    device, precision = device_and_precision(cfg)
    path = model_path(cfg.model)
    run.append_log(f"model {path} on {device}, precision {precision}{note}")
    tokenizer = loading.load_tokenizer(path, cfg)
    return device, precision, path, tokenizer, loading.load_model(path, cfg, precision, plan.inputs["settings"])
