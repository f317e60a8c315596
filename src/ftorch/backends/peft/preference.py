"""provider=peft's preference run (train.method=dpo|orpo|kto|simpo): the model, tokenizer and optional starting
adapter as for SFT, the method's TRL trainer (hf/preference.py knows the methods), through the shared loop
(hf/loop.py)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..base import Result
from ..hf import loading, publish
from ..hf.loop import train_and_publish
from ..hf.preference import adapter_dir, make_trainer
from .device import load_for_training

if TYPE_CHECKING:
    from pathlib import Path

    from ...run.rundir import RunDir
    from ..base import Plan


def train(plan: Plan, run: RunDir, resume_from: str | None) -> Result:
    """One preference run: the same loop as peft's SFT with the method's TRL trainer."""
    from peft import LoraConfig

    cfg = plan.config
    device, precision, path, tokenizer, model = load_for_training(plan, run, f"; method {cfg.train.method}")
    start = adapter_dir(cfg)
    peft_config: LoraConfig | None = LoraConfig(**plan.inputs["lora"])
    if start is not None:
        from peft import PeftModel

        with loading.loading(str(start), "LoRA adapter"):
            model = PeftModel.from_pretrained(model, str(start), is_trainable=True)
        peft_config = None
        run.append_log(f"starting from the adapter in {start}")
    data = plan.data
    assert data is not None  # plan() sets it; training always runs on a checked plan

    def build():
        return make_trainer(cfg.train.method, plan.inputs["preference"], model, tokenizer, data, run, device,
                            precision, peft_config=peft_config)

    def publish_trained(trainer):
        def save_trained(folder: Path) -> None:  # TRL may keep a frozen "ref" adapter beside the trained one
            trainer.model.save_pretrained(str(folder), selected_adapters=["default"])

        return publish.publish_trained(trainer, run, tokenizer, path, save_trained,
                                       quantized=cfg.train.quantization == "4bit")

    done = train_and_publish(run, resume_from, build, publish_trained, model=model,
                             targets=plan.inputs["lora"]["target_modules"])
    return Result(status="succeeded", metrics=done.metrics,
                  artifacts={"adapter": str(run.adapter), "checkpoints": str(run.checkpoints)},
                  extra={"trainable_params": done.trainable, "total_params": done.total, "device": device,
                         "precision": precision, "reload_check": done.reload_check, "method": cfg.train.method,
                         "processes": int(os.environ.get("WORLD_SIZE", "1"))})
