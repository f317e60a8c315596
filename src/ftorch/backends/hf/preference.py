"""train.method=dpo|orpo|kto|simpo on provider=peft: TRL's preference trainers with LoRA.

The one place ftorch's train.preference.* names become TRL's (TRL 1.16: DPOTrainer and KTOTrainer in `trl`,
ORPOTrainer and CPOTrainer, which gives SimPO as loss_type="simpo" with cpo_alpha=0, in `trl.experimental`),
the reference-model handling, the memory estimate with and without a reference copy, and the training loop
around them (checkpoints, metrics.jsonl, the adapter's publication and reload check as for SFT)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError, Problem
from .preprocess import no_dataset_bars

if TYPE_CHECKING:

    from ...config.schema import RunConfig
    from ...data.report import DataReport
    from ...run.rundir import RunDir
    from ..base import Plan

# what each method needs: a reference model (dpo, kto) or none (orpo, simpo: reference-free objectives)
USES_REFERENCE = {"dpo": True, "kto": True, "orpo": False, "simpo": False}
TRL_TRAINER = {"dpo": "trl.DPOTrainer", "kto": "trl.KTOTrainer", "orpo": "trl.experimental.orpo.ORPOTrainer",
               "simpo": "trl.experimental.cpo.CPOTrainer (loss_type=simpo, cpo_alpha=0)"}
APPLIES = {"loss_type": {"dpo"}, "label_smoothing": {"dpo"}, "reference": {"dpo", "kto"}, "simpo_gamma": {"simpo"},
           "max_completion_length": {"orpo", "simpo"}, "sft_weight": {"dpo"}}


def check(cfg: RunConfig) -> None:
    """Refuse settings that do nothing for this method (a setting that silently does nothing is a bug)."""
    from ...config.schema import PreferenceSettings

    method, p = cfg.train.method, cfg.train.preference
    defaults = PreferenceSettings()
    wrong = [k for k, methods in APPLIES.items() if method not in methods and getattr(p, k) != getattr(defaults, k)]
    if wrong:
        key = wrong[0]
        raise ConfigError(Problem(f"train.preference.{key}", f"does not apply to train.method={method}",
                                  f"it applies to method={'/'.join(sorted(APPLIES[key]))}; remove it"))
    if p.label_smoothing and p.loss_type != "robust":
        raise ConfigError(Problem("train.preference.label_smoothing", "only loss_type=robust reads it",
                                  "set train.preference.loss_type=robust, or remove label_smoothing"))
    if cfg.train.assistant_only_loss is False:
        raise ConfigError(Problem("train.assistant_only_loss", "preference training scores the answers only",
                                  "remove train.assistant_only_loss=false"))


def trainer_args(cfg: RunConfig, shared: dict[str, Any]) -> dict[str, Any]:
    """The method's config keyword arguments: the provider's training settings (`shared`: hf_translate's
    trainer_args plus the provider's own keys, e.g. peft._sft_args) less any SFT-only ones, plus the method's own."""
    common = {k: v for k, v in shared.items() if k not in ("packing", "padding_free", "assistant_only_loss",
                                                              "include_num_input_tokens_seen")}
    method, p = cfg.train.method, cfg.train.preference
    common["beta"] = p.beta
    if cfg.train.num_gpus > 1:  # DDP: every LoRA weight takes part in each step (the reference is adapter-off)
        common["ddp_find_unused_parameters"] = False
    if method == "dpo":
        common.update(loss_type=[p.loss_type], label_smoothing=p.label_smoothing,
                      precompute_ref_log_probs=p.reference == "precomputed")
        if p.sft_weight:
            common.update(loss_type=[p.loss_type, "sft"], loss_weights=[1.0, p.sft_weight])
    elif method == "kto":
        common.update(precompute_ref_log_probs=p.reference == "precomputed")
    elif method == "simpo":
        common.update(loss_type="simpo", cpo_alpha=0.0, simpo_gamma=p.simpo_gamma,
                      max_completion_length=p.max_completion_length)
    elif method == "orpo":
        common.update(max_completion_length=p.max_completion_length)
    return common


def classes(method: str):
    """(config class, trainer class) of the installed TRL, imported only here."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer
    if method == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    if method == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    return CPOConfig, CPOTrainer


def adapter_dir(cfg: RunConfig):
    """model.adapter as a folder holding adapter_config.json: RUN_DIR/adapter, or the folder itself."""
    from pathlib import Path

    if cfg.model.adapter is None:
        return None
    given = Path(cfg.model.adapter).expanduser()
    for folder in (given / "adapter", given):
        if (folder / "adapter_config.json").is_file():
            return folder
    raise ConfigError(Problem("model.adapter", f"no LoRA adapter in {given} (no adapter_config.json there or in "
                              f"{given / 'adapter'})", "give the run directory of a finished peft run, or its "
                              "adapter folder"))


def plan_notes(cfg: RunConfig, shape: dict | None, choice) -> tuple[list[str], dict[str, Any]]:
    """What plan shows about the method, and the memory estimates with and without a reference copy."""
    method, p = cfg.train.method, cfg.train.preference
    notes = [f"method: {method} through {TRL_TRAINER[method]}, LoRA"]
    settings: dict[str, Any] = {"beta": p.beta}
    if method == "dpo":
        settings.update(loss_type=p.loss_type, label_smoothing=p.label_smoothing, sft_weight=p.sft_weight)
    if method == "simpo":
        settings.update(simpo_gamma=p.simpo_gamma)
    if method in ("orpo", "simpo"):
        settings["max_completion_length"] = p.max_completion_length
    notes.append("preference settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    start = f"the adapter in {cfg.model.adapter}" if cfg.model.adapter else "a new LoRA adapter on the base"
    notes.append(f"starts from {start}")
    if USES_REFERENCE[method]:
        if p.reference == "precomputed":
            ref = "log-probs computed once before training, then no reference forward passes"
        elif cfg.model.adapter:
            ref = "a frozen copy of the starting adapter on the same weights (no second model)"
        else:
            ref = "the same weights with the LoRA adapter disabled (no second model)"
        notes.append(f"reference model: {ref}")
    else:
        notes.append(f"reference model: none ({method} is reference-free)")
    notes.append(f"each step scores chosen and rejected: {2 * choice.settings['micro_batch_size']} sequences per "
                 f"micro-batch of {choice.settings['micro_batch_size']} pairs; train.max_length="
                 f"{cfg.train.max_length} bounds prompt + answer")
    estimates: dict[str, Any] = {}
    if cfg.model.adapter:
        notes.append("LoRA rank, targets and modules come from the starting adapter (train.lora.* does not apply)")
    if shape is not None and choice.estimate is not None:
        with_ref, without = memory_gib(shape, cfg, choice)
        estimates["memory_gib"] = round(without, 3)
        if USES_REFERENCE[method]:
            estimates["memory_gib_with_reference_copy"] = round(with_ref, 3)
            notes.append(f"memory estimate: {without:.2f} GiB as planned (no second model); {with_ref:.2f} GiB "
                         "with a separate reference model in memory")
        else:
            notes.append(f"memory estimate: {without:.2f} GiB (no reference model)")
    return notes, estimates


def memory_gib(shape: dict, cfg: RunConfig, choice) -> tuple[float, float]:
    """(with a separate reference copy, as planned) in GiB. The policy's step runs on 2x the rows (chosen and
    rejected); a reference forward pass adds its logits (no saved activations: no gradient); a separate
    reference model adds its weights."""
    from . import memory

    s = choice.settings
    setup = memory.StepSetup(rows=2 * s["micro_batch_size"], row_tokens=cfg.train.max_length,
                             dtype=s["precision"], lora_r=cfg.train.lora.r,
                             target_modules=tuple(cfg.train.lora.target_modules), adapter_dtype=s["adapter_dtype"],
                             quantization=cfg.train.quantization,
                             gradient_checkpointing=bool(s["gradient_checkpointing"]),
                             loss="materialised", attention="dense_mask")  # padded rows: SDPA gets a mask
    policy = memory.estimate(shape, setup)
    model = memory.ModelShape.from_config(shape)
    reference_pass = 0
    if USES_REFERENCE[cfg.train.method] and cfg.train.preference.reference != "precomputed":
        reference_pass = setup.tokens * model.vocab * 4  # fp32 logits of the no-grad reference forward
    planned = policy.total + reference_pass
    return (planned + policy.weights) / memory.GiB, planned / memory.GiB


def datasets(plan: Plan):
    """train (and validation) as TRL's conversational prompt/chosen/rejected rows."""
    assert plan.data is not None  # plan() sets it; training always runs on a checked plan
    return datasets_of(plan.data)


def datasets_of(data: DataReport):
    """datasets() from a checked DataReport (the Unsloth child checks the data itself)."""
    from datasets import Dataset

    from ...data.preference import trl_row

    splits = data.splits
    built = {name: Dataset.from_list([trl_row(e) for e in splits[name].examples])
             for name in ("train", "validation") if name in splits}
    return built["train"], built.get("validation")


def make_trainer(method: str, args: dict[str, Any], model, tokenizer, data: DataReport, run: RunDir, device: str,
                 precision: str, peft_config=None):
    """The method's TRL trainer on the checked data, logging to metrics.jsonl. `args` is the plan's
    trainer_args(); `model` is the base (with `peft_config`) or a model that already carries its LoRA (Unsloth's
    get_peft_model, a starting adapter): TRL then takes the reference as that model with its adapter disabled."""
    from . import callbacks

    unknown_args(method, args)
    config_cls, trainer_cls = classes(method)
    config = config_cls(output_dir=str(run.checkpoints), use_cpu=device == "cpu", bf16=precision == "bf16",
                        fp16=precision == "fp16", **args)
    train_ds, eval_ds = datasets_of(data)
    with no_dataset_bars():
        return trainer_cls(model=model, args=config, train_dataset=train_ds, eval_dataset=eval_ds,
                           processing_class=tokenizer, peft_config=peft_config,
                           callbacks=[callbacks.metrics_callback(run)])


def unknown_args(method: str, args: dict[str, Any]) -> None:
    """A BackendError naming the keys the installed TRL's config for the method lacks (an environment older or
    newer than the one ftorch's translation was written for), instead of TypeError from inside TRL."""
    import dataclasses
    from importlib.metadata import version

    from ...errors import BackendError

    config_cls, _ = classes(method)
    unknown = sorted(set(args) - {f.name for f in dataclasses.fields(config_cls)})
    if unknown:
        raise BackendError(Problem(f"train.method={method}", f"TRL {version('trl')} in this environment has no "
                                   f"{config_cls.__name__} field {', '.join(unknown)}",
                                   "install the TRL version of ftorch's constraints.txt in this environment"))
