"""Where provider=peft trains and in which precision: one answer for its SFT and preference runs (its own module
so peft/preference.py need not import the backend)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...config.providers import PeftProvider
from ..hf import loading
from ..hf import translate as hf_translate

if TYPE_CHECKING:
    from ...config.schema import RunConfig


def device_and_precision(cfg: RunConfig) -> tuple[str, str]:
    """Where provider=peft trains (provider.device, auto = cuda when there is one) and in which precision; 4-bit
    needs CUDA. The same for SFT and preference runs."""
    p = cfg.provider_as(PeftProvider)
    device = p.device if p.device != "auto" else ("cuda" if loading.cuda_available() else "cpu")
    if cfg.train.quantization == "4bit":
        loading.require_cuda_for_4bit(device)
    return device, hf_translate.precision(cfg.train.precision, device)
