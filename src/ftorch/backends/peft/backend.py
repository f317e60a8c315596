"""provider=peft: transformers + PEFT LoRA/QLoRA through TRL's SFTTrainer, on CPU or one GPU."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ...config.providers import PeftProvider
from ...errors import ConfigError, Problem
from ...models import check_model_reference, is_gguf
from ...run.library_log import attach_log_file, detach_log_file
from .. import local_eval
from ..base import Plan, Result, no_remote_job
from ..hf import callbacks, checkpoints, publish, varlen
from ..hf import translate as hf_translate
from ..hf.loop import train_and_publish
from ..steps import step_estimate
from .device import load_for_training

if TYPE_CHECKING:
    from ...config.schema import RunConfig
    from ...data.report import DataReport
    from ...run.rundir import RunDir


def _sft_args(cfg: RunConfig, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """provider=peft's SFTConfig: the shared trainer settings (hf_translate) plus its SFT keys. `settings` are
    fit.choose()'s picks for what the config leaves on 'auto' (micro-batch, packing, checkpointing, kernels);
    without them, CPU defaults."""
    from ...config.schema import resolved

    t = cfg.train
    s = settings or {"micro_batch_size": t.fixed_batch_size, "grad_accum": t.grad_accum, "kernels": "none",
                     "packing": resolved(t.packing, False),
                     "gradient_checkpointing": resolved(t.gradient_checkpointing, False)}
    return {**hf_translate.trainer_args(cfg, s["micro_batch_size"], s["grad_accum"]),
            "packing": s["packing"],
            "padding_free": s["packing"],
            "activation_checkpointing": s["gradient_checkpointing"],
            "use_liger_kernel": s["kernels"] == "liger",
            "assistant_only_loss": t.assistant_only_loss,
            "include_num_input_tokens_seen": "non_padding"}


def _lora_args(cfg: RunConfig) -> dict[str, Any]:
    lora = cfg.train.lora
    return {"r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
            "target_modules": list(lora.target_modules), "task_type": "CAUSAL_LM", "bias": "none",
            "modules_to_save": list(lora.modules_to_save) or None}


class PeftBackend:
    name = "peft"
    weights = "adapter"
    unused_settings: dict[str, str] = {}

    def plan(self, cfg: RunConfig, data: DataReport) -> Plan:
        if cfg.data.format != "chat" and not cfg.train.is_preference:
            raise ConfigError(Problem("data.format", f"{cfg.data.format} data needs a preference method",
                                      "set train.method=dpo (or orpo, kto, simpo)"))
        if cfg.train.is_preference:
            from ..hf import preference

            preference.check(cfg)
            if cfg.model.adapter:
                preference.adapter_dir(cfg)
        elif cfg.model.adapter:
            raise ConfigError(Problem("model.adapter", "starting from an earlier adapter is available for "
                                      "preference methods (train.method=dpo, orpo, kto, simpo)",
                                      "remove model.adapter, or set a preference method"))
        p = cfg.provider_as(PeftProvider)
        if cfg.train.quantization == "4bit" and p.device == "cpu":
            raise ConfigError(Problem("train.quantization", "4bit (QLoRA) cannot run with provider.device=cpu",
                                      "use train.quantization=none, or a CUDA GPU"))
        check_model_reference(cfg.model)
        estimates: dict[str, Any] = step_estimate(cfg.train, data.count("train"))
        source = ("built locally (model.tiny) and cached" if cfg.model.tiny else
                  "GGUF, converted once and cached" if is_gguf(cfg.model.name) else "local folder or hub id")
        notes = [f"model: {cfg.model.name} ({source})",
                 f"device: {p.device} (auto = cuda when available, else cpu)",
                 f"loss on assistant tokens only: {cfg.train.assistant_only_loss}"]
        if cfg.train.is_preference:
            return self._plan_preference(cfg, data, notes, estimates)
        if any(m.get("weight") == 0 for e in data.splits["train"].examples for m in e["messages"]):
            notes.append("warning: 'weight: 0' on assistant messages is not honoured by provider=peft; "
                         "those turns are trained on")
        choice = _choose(cfg, _gpu_bytes(p.device))
        notes += choice.reasons
        if choice.estimate is not None:
            estimates["memory_gib"] = round(choice.estimate.total / 2**30, 3)
        return Plan(
            provider=self.name, config=cfg, data=data,
            inputs={"model": {"name": cfg.model.name, "tiny": cfg.model.tiny is not None, "dtype": cfg.model.dtype,
                              "revision": cfg.model.revision, "quantization": cfg.train.quantization,
                              "trust_remote_code": cfg.model.trust_remote_code},
                    "settings": choice.settings, "sft": _sft_args(cfg, choice.settings), "lora": _lora_args(cfg),
                    "preprocess": {"allow_truncation": cfg.train.allow_truncation}},
            estimates=estimates, notes=notes,
        )

    def cancel(self, run: RunDir, cfg: RunConfig) -> str:
        return no_remote_job(self.name, run)

    eval_models = staticmethod(local_eval.eval_models)  # ftorch eval: what is scored, loaded or reached
    check_eval_budget = staticmethod(local_eval.check_eval_budget)

    def _plan_preference(self, cfg: RunConfig, data: DataReport, notes: list[str],
                         estimates: dict[str, Any]) -> Plan:
        """train.method=dpo|orpo|kto|simpo: no packing (pairs are scored side by side), TRL's own loss."""
        from ..hf import preference

        cfg_unpacked = cfg.model_copy(update={"train": cfg.train.model_copy(update={"packing": False,
                                                                                    "fused_loss": "off"})})
        choice = _choose(cfg_unpacked, _gpu_bytes(cfg.provider_as(PeftProvider).device))
        more, memory = preference.plan_notes(cfg, hf_translate.model_shape(cfg), choice)
        notes = notes[:2] + more + [r for r in choice.reasons if "GiB" not in r]  # SFT-sized figures
        estimates = {**estimates, "train_pairs": estimates["train_examples"], **memory}
        sft = _sft_args(cfg_unpacked, choice.settings)
        return Plan(
            provider=self.name, config=cfg, data=data,
            inputs={"model": {"name": cfg.model.name, "tiny": cfg.model.tiny is not None, "dtype": cfg.model.dtype,
                              "revision": cfg.model.revision, "quantization": cfg.train.quantization,
                              "adapter": cfg.model.adapter},
                    "method": cfg.train.method, "settings": choice.settings,
                    "preference": preference.trainer_args(cfg, sft), "lora": _lora_args(cfg)},
            estimates=estimates, notes=notes,
        )

    def preflight(self, cfg: RunConfig) -> None:
        """Nothing to check before the run: models load (or are built) inside it."""

    def run(self, plan: Plan, run: RunDir) -> Result:
        return self._launch(plan, run, resume_from=None)

    def resume(self, plan: Plan, run: RunDir) -> Result:
        return self._launch(plan, run, resume_from=checkpoints.resume_point(run))

    def _launch(self, plan: Plan, run: RunDir, resume_from: str | None) -> Result:
        """One process, or train.num_gpus processes through torchrun (DDP: NCCL on GPUs, gloo on CPU)."""
        if plan.config.train.num_gpus > 1:
            return _launch_distributed(plan, run, resume_from)
        return self.train_in_process(plan, run, resume_from=resume_from)

    def train_in_process(self, plan: Plan, run: RunDir, resume_from: str | None) -> Result:
        """Train in this process: the whole run, or one rank of a distributed one (peft/child.py: ranks other
        than 0 get a RunDir with writes=False)."""
        handler = attach_log_file(run)
        try:
            return self._train_logged(plan, run, resume_from)
        finally:
            detach_log_file(handler)

    def _train_logged(self, plan: Plan, run: RunDir, resume_from: str | None) -> Result:
        if plan.config.train.is_preference:
            from .preference import train

            return train(plan, run, resume_from)
        from peft import LoraConfig
        from trl import SFTConfig, SFTTrainer

        cfg = plan.config
        device, precision, path, tokenizer, model = load_for_training(plan, run)

        train_ds, eval_ds, ready = _datasets(plan, tokenizer, run)
        # the assistant-only mask is already in the tokenized rows (labels, or assistant_masks that TRL folds in)
        sft = {**plan.inputs["sft"], "assistant_only_loss": False}
        args = SFTConfig(output_dir=str(run.checkpoints), use_cpu=device == "cpu", bf16=precision == "bf16",
                         fp16=precision == "fp16", dataset_kwargs={"skip_prepare_dataset": ready}, **sft)
        fused = plan.inputs["settings"]["fused_loss"]
        trainer_cls = SFTTrainer if fused else _plain_loss_trainer(SFTTrainer)
        run.append_log(f"loss: {'TRL tiled LM head (logits never materialised)' if fused else 'model cross-entropy'}")
        def build():
            return trainer_cls(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                               processing_class=tokenizer, peft_config=LoraConfig(**plan.inputs["lora"]),
                               callbacks=[callbacks.metrics_callback(run)])

        def prepare(trainer) -> None:
            if plan.inputs["settings"]["adapter_dtype"] == "bf16" and precision == "bf16":
                _adapters_to_bf16(trainer.model)

        def publish_trained(trainer):
            return publish.publish_trained(trainer, run, tokenizer, path,
                                           lambda folder: trainer.save_model(str(folder)),
                                           collective=True, quantized=cfg.train.quantization == "4bit")

        done = train_and_publish(run, resume_from, build, publish_trained, model=model,
                                 targets=plan.inputs["lora"]["target_modules"], prepare=prepare)
        return Result(status="succeeded", metrics=done.metrics,
                      artifacts={"adapter": str(run.adapter), "checkpoints": str(run.checkpoints)},
                      extra={"trainable_params": done.trainable, "total_params": done.total, "device": device,
                             "precision": precision, "reload_check": done.reload_check,
                             "processes": int(os.environ.get("WORLD_SIZE", "1"))})


def _datasets(plan: Plan, tokenizer, run: RunDir):
    """Train (and validation) data tokenized once per content key and reused by every run that shares it."""
    from ...cache import cache_root
    from ..hf import preprocess

    t = plan.config.train
    assert plan.data is not None  # plan() sets it; training always runs on a checked plan
    splits = plan.data.splits

    def announce(message: str) -> None:
        run.append_log(message)
        preprocess.say(message)

    prepared = {}
    for split in ("train", "validation"):
        if split in splits:
            prepared[split] = preprocess.prepare(splits[split].examples, tokenizer, t.max_length,
                                                  t.assistant_only_loss, plan.inputs["settings"]["packing"],
                                                  cache_root() / "preprocessed", lines=splits[split].lines,
                                                  source=str(splits[split].path),
                                                  allow_truncation=t.allow_truncation or split != "train",
                                                  announce=announce)
    train = prepared["train"]
    run.update(preprocessing={"key": train.key, "cache_hit": train.hit, "seconds": round(train.seconds, 3)})
    run.append_log(f"preprocessing: {'cache hit' if train.hit else 'tokenized'} {train.key} in {train.seconds:.2f} s")
    validation = prepared.get("validation")
    return train.dataset, validation.dataset if validation else None, train.trainer_ready


def _choose(cfg: RunConfig, gpu_bytes: int | None):
    """fit.choose() for this config: the settings left on 'auto', each with its reason (torch-free)."""
    from importlib.util import find_spec

    from ..hf import fit

    shape = hf_translate.model_shape(cfg)
    return fit.choose(shape, cfg.train, gpu_bytes, fused_available=True,
                         liger_available=find_spec("liger_kernel") is not None,
                         varlen_available=find_spec("flash_attn") is not None or varlen.available_without_import(),
                         device="cuda" if gpu_bytes else "cpu")


def _gpu_bytes(device: str) -> int | None:
    """The first GPU's memory from nvidia-smi (no torch import in plan); None on CPU or with device=cpu."""
    import shutil
    import subprocess

    if device == "cpu" or not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10)
        return int(out.stdout.split()[0]) * 2**20 if out.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def _adapters_to_bf16(model) -> None:
    """LoRA weights in the compute dtype: no fp32 copies of their inputs under autocast."""
    import torch

    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.to(torch.bfloat16)


def _plain_loss_trainer(sft_trainer: type) -> type:
    """SFTTrainer with the model's own cross-entropy on the prebuilt (assistant-only) labels instead of TRL's
    tiled log-prob head: on CPU and small vocabularies the tiles cost more than the logits they avoid."""
    from transformers import Trainer

    class PlainLossSFTTrainer(sft_trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return PlainLossSFTTrainer


def _launch_distributed(plan: Plan, run: RunDir, resume_from: str | None) -> Result:
    """torchrun starting the peft child (peft/child.py) on every rank, under child.py's supervision."""
    import sys

    from .. import child

    cfg = plan.config
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(cfg.train.num_gpus), "-m", "ftorch.backends.peft.child", str(run.path),
               *([resume_from] if resume_from else [])]
    run.append_log("launching: " + " ".join(command))
    ended = child.supervise(command, run, what="torchrun")
    return child.outcome(ended, where="train.num_gpus", log=run.log)
