"""Publishing a trained adapter: written beside the run, renamed into place (a kill never leaves half an adapter),
then reloaded with plain transformers + PEFT and compared with the trained model. Heavy imports inside."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import BackendError, Problem
from ...safe_io import fresh_dir, remove

if TYPE_CHECKING:
    from ...run.rundir import RunDir

PROBE = [{"role": "user", "content": "Book a call with Ana Monday 9am."}]


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
