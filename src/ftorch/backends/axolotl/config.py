"""provider=axolotl's translation: the one place ftorch's names become Axolotl's (axolotl.yaml), for SFT and for
preference training through Axolotl's `rl:` settings, and the way back (an Axolotl key in an error -> the ftorch
setting it came from). Pure: no process, no Axolotl import; `axolotl.py` runs what this writes."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...config.providers import AxolotlProvider
from ...config.schema import resolved
from ...errors import ConfigError, DataError, Problem
from ...safe_io import ensure_dir, write_text

if TYPE_CHECKING:
    from ...config.schema import RunConfig

LIGER_PLUGIN = "axolotl.integrations.liger.LigerPlugin"
LIGER_KEYS = ("liger_rope", "liger_rms_norm", "liger_glu_activation", "liger_layer_norm")
PREPARED = "axolotl_prepared"  # Axolotl's tokenized-dataset cache, beside output_dir in the run dir
RL_DATA = "axolotl_data"  # preference pairs rewritten in the form Axolotl's rl loader reads, in the run dir

# Axolotl key (a dotted path, '*' for a list index) -> the ftorch key it is made from. Errors from Axolotl's
# schema are reported under the ftorch name; a key set through provider.axolotl is reported as that.
SOURCES: dict[str, str] = {
    "base_model": "model.name", "revision_of_model": "model.revision", "trust_remote_code": "model.trust_remote_code",
    "bfloat16": "model.dtype", "float16": "model.dtype",
    "datasets": "data.train", "test_datasets": "data.validation", "val_set_size": "data.validation",
    "eval_strategy": "data.validation", "chat_template": "data.format",
    "datasets.*.roles_to_train": "train.assistant_only_loss", "datasets.*.train_on_eos": "train.assistant_only_loss",
    "train_on_inputs": "train.assistant_only_loss",
    "adapter": "train.quantization", "load_in_4bit": "train.quantization",
    "lora_r": "train.lora.r", "lora_alpha": "train.lora.alpha", "lora_dropout": "train.lora.dropout",
    "lora_target_modules": "train.lora.target_modules", "lora_modules_to_save": "train.lora.modules_to_save",
    "sequence_len": "train.max_length", "sample_packing": "train.packing", "pad_to_sequence_len": "train.packing",
    "eval_sample_packing": "train.packing", "attn_implementation": "train.packing",
    "micro_batch_size": "train.batch_size", "eval_batch_size": "train.batch_size",
    "gradient_accumulation_steps": "train.grad_accum", "num_epochs": "train.epochs", "max_steps": "train.max_steps",
    "learning_rate": "train.lr", "optimizer": "train.optimizer", "lr_scheduler": "train.scheduler",
    "warmup_ratio": "train.warmup_ratio", "warmup_steps": "train.warmup_ratio", "weight_decay": "train.weight_decay",
    "max_grad_norm": "train.max_grad_norm",
    "seed": "train.seed", "bf16": "train.precision", "fp16": "train.precision",
    "gradient_checkpointing": "train.gradient_checkpointing", "logging_steps": "train.logging_steps",
    "save_strategy": "train.save_steps", "save_steps": "train.save_steps", "save_total_limit": "train.save_total_limit",
    "output_dir": "paths.runs", "dataset_prepared_path": "paths.runs",
    "plugins": "provider.liger", **{key: "provider.liger" for key in LIGER_KEYS},
    "liger_fused_linear_cross_entropy": "train.fused_loss",
    "deepspeed": "provider.distributed", "fsdp_version": "provider.distributed", "fsdp_config": "provider.distributed",
    # preference training (rl:); beta has four Axolotl spellings, and trl.beta would win over rl_beta
    "rl": "train.method", "cpo_alpha": "train.method",
    "rl_beta": "train.preference.beta", "trl.beta": "train.preference.beta", "dpo_beta": "train.preference.beta",
    "orpo_alpha": "train.preference.beta",
    "dpo_loss_type": "train.preference.loss_type", "dpo_loss_weights": "train.preference.sft_weight",
    "dpo_label_smoothing": "train.preference.label_smoothing",
    "precompute_ref_log_probs": "train.preference.reference", "simpo_gamma": "train.preference.simpo_gamma",
}
# TrainConfig/ModelConfig/DataConfig fields with no Axolotl key, and why (shown in the plan's notes).
IGNORED: dict[str, str] = {
    "model.adapter": "refused on provider=axolotl (starting from an adapter is provider=peft's)",
    "train.num_gpus": "not an Axolotl key: ftorch launches through `accelerate launch --num_processes N`",
    "data.test": "held out for ftorch's evaluation after training; Axolotl never sees it",
    "data.train_fraction": "applied by ftorch to the preference pairs it writes for Axolotl; refused below 1.0 "
                           "for SFT, where Axolotl reads the training file whole",
    "data.fraction_seed": "goes with data.train_fraction (the seeded subset ftorch takes)",
    "data.max_line_bytes": "not an Axolotl key: ftorch's own data check refuses longer lines before Axolotl runs",
    "train.allow_truncation": "ftorch's own truncation check runs in provider=peft's preprocessing; Axolotl "
                              "truncates (or drops) long examples by its own rules",
    "train.preference.max_completion_length": "Axolotl 0.19 has no such key for rl: orpo/simpo "
                                              "(train.max_length bounds prompt + answer)",
}
# train.method -> Axolotl's rl: (lora/sft: none). KTO is refused: Axolotl 0.19's KTO loaders (kto.chatml,
# kto.llama3, kto.user_defined) read fixed-format strings, and none renders chat messages with the model's template.
RL = {"dpo": "dpo", "orpo": "orpo", "simpo": "simpo"}
# the dataset `type:` Axolotl 0.19's rl loader applies per method: prompt_strategies/{dpo,orpo}/chat_template.py
RL_TYPE = {"dpo": "chat_template.default", "simpo": "chat_template.default", "orpo": "chat_template.argilla"}
RL_ROLES = ("system", "user", "assistant", "tool")  # the roles chat_template.default maps (no `developer`)
_ZERO_COMMON = {"bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}, "gradient_accumulation_steps": "auto",
                "gradient_clipping": "auto", "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto"}
DISTRIBUTED: dict[str, dict[str, Any]] = {  # Axolotl's own deepspeed_configs/zero*.json and FSDP2 example, inline
    "deepspeed_zero1": {"deepspeed": {"zero_optimization": {"stage": 1, "overlap_comm": True}, **_ZERO_COMMON}},
    "deepspeed_zero2": {"deepspeed": {"zero_optimization": {"stage": 2, "overlap_comm": True,
                                                            "contiguous_gradients": True}, **_ZERO_COMMON}},
    "deepspeed_zero3": {"deepspeed": {"zero_optimization": {
        "stage": 3, "overlap_comm": True, "contiguous_gradients": True, "sub_group_size": 0,
        "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
        "stage3_param_persistence_threshold": "auto", "stage3_max_live_parameters": 0, "stage3_max_reuse_distance": 0,
        "stage3_gather_16bit_weights_on_model_save": True}, **_ZERO_COMMON}},
    "fsdp": {"fsdp_version": 2, "fsdp_config": {"offload_params": False, "state_dict_type": "FULL_STATE_DICT",
                                                 "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                                                 "reshard_after_forward": True}},
}


def translate(cfg: RunConfig, output_dir: str, dataset_paths: dict[str, str], base_model: str | None = None,
              device: str | None = None, resume_from: str | None = None,
              total_steps: int | None = None) -> dict[str, Any]:
    """RunConfig -> axolotl.yaml. `base_model` defaults to model.name (what plan shows); the run passes the local
    folder, and the device the Axolotl environment sees ('cpu' or 'cuda'; None in plan). `dataset_paths` are
    the chat JSONL files (SFT) or the rewritten preference rows (see `rl_rows`); `total_steps` (steps.step_estimate)
    turns train.warmup_ratio into warmup_steps where Axolotl refuses a ratio (rl: simpo). provider.axolotl's keys
    (none of them one ftorch maps: see refuse_mapped_passthrough) are merged last."""
    t, lora, provider = cfg.train, cfg.train.lora, cfg.provider_as(AxolotlProvider)
    gpu, rl = device == "cuda", t.is_preference
    packing = False if rl else resolved(t.packing, gpu)  # 'auto': on GPU; pairs are never packed
    checkpointing = resolved(t.gradient_checkpointing, gpu)
    dataset = _rl_dataset(t.method) if rl else _sft_dataset(t.assistant_only_loss)
    out: dict[str, Any] = {
        "base_model": base_model or cfg.model.name,
        "revision_of_model": cfg.model.revision,
        "trust_remote_code": cfg.model.trust_remote_code,
        **(_rl_settings(cfg) if rl else {}),
        "datasets": [{"path": dataset_paths["train"], **dataset}],
        "chat_template": "tokenizer_default",
        "train_on_inputs": None if rl else not t.assistant_only_loss,
        "dataset_prepared_path": str(Path(output_dir).parent / PREPARED),
        "output_dir": output_dir,
        "adapter": "qlora" if t.quantization == "4bit" else "lora",
        "load_in_4bit": t.quantization == "4bit",
        "lora_r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
        "lora_target_modules": list(lora.target_modules),
        "lora_modules_to_save": list(lora.modules_to_save) or None,
        "sequence_len": t.max_length,
        "sample_packing": packing,
        "micro_batch_size": t.fixed_batch_size, "eval_batch_size": t.fixed_batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "num_epochs": t.fixed_epochs, "max_steps": t.max_steps,
        "learning_rate": t.lr, "optimizer": t.optimizer, "lr_scheduler": t.scheduler,
        "warmup_ratio": t.warmup_ratio, "weight_decay": t.weight_decay, "max_grad_norm": t.max_grad_norm,
        "seed": t.seed,
        **_precision(t.precision, cfg.model.dtype),
        "gradient_checkpointing": checkpointing,
        "logging_steps": t.logging_steps,
        "save_strategy": "steps", "save_steps": t.save_steps, "save_total_limit": t.save_total_limit,
    }
    if t.method == "simpo":  # Axolotl 0.19 refuses warmup_ratio with simpo; transformers rounds the ratio up too
        out.update(warmup_ratio=None, warmup_steps=math.ceil(t.warmup_ratio * (total_steps or 0)))
    if packing:  # sdpa keeps packed samples apart (block-diagonal mask) and runs anywhere
        out.update(pad_to_sequence_len=True, eval_sample_packing=False, attn_implementation="sdpa")
    if "validation" in dataset_paths:
        out.update(test_datasets=[{"path": dataset_paths["validation"], **dataset}], val_set_size=0.0,
                   eval_strategy="epoch")
    else:
        out.update(val_set_size=0.0, eval_strategy="no")
    if provider.liger:  # the fused cross-entropy is SFT's loss; a preference loss has its own
        out.update(plugins=[LIGER_PLUGIN], **{key: True for key in LIGER_KEYS},
                   liger_fused_linear_cross_entropy=t.fused_loss != "off" and not rl)
    if t.num_gpus > 1 and provider.distributed != "none":
        out.update(copy.deepcopy(DISTRIBUTED[provider.distributed]))
    if device == "cpu":  # Axolotl turns its fused LoRA kernels on by itself, and they need CUDA
        out.update({f"lora_{part}_kernel": False for part in ("mlp", "qkv", "o", "embedding")})
    if resume_from:
        out["resume_from_checkpoint"] = resume_from
    out = {key: value for key, value in out.items() if value is not None}
    out.update(provider.axolotl)
    return out


def _sft_dataset(assistant_only_loss: bool) -> dict[str, Any]:
    return {"ds_type": "json", "split": "train", "type": "chat_template", "field_messages": "messages",
            "message_property_mappings": {"role": "role", "content": "content"},
            "message_field_training": "weight",  # OpenAI-style `weight: 0` turns are not trained on
            "roles_to_train": ["assistant"] if assistant_only_loss else ["system", "user", "assistant", "tool"],
            "train_on_eos": "turn" if assistant_only_loss else "all"}


def _rl_dataset(method: str) -> dict[str, Any]:
    """The rl dataset entry: rows as `rl_rows` writes them, rendered with the model's own chat template."""
    if RL_TYPE[method] == "chat_template.default":
        return {"split": "train", "type": RL_TYPE[method], "field_messages": "prompt", "field_chosen": "chosen",
                "field_rejected": "rejected"}
    return {"split": "train", "type": RL_TYPE[method]}  # argilla: chosen/rejected are whole conversations


def _rl_settings(cfg: RunConfig) -> dict[str, Any]:
    """train.method and train.preference.* -> Axolotl's rl keys (0.19: core/builders/rl.py, trainers/dpo)."""
    method, p = cfg.train.method, cfg.train.preference
    out: dict[str, Any] = {"rl": RL[method], "rl_beta": p.beta}
    if method == "dpo":
        out["dpo_loss_type"] = [p.loss_type, "sft"] if p.sft_weight else [p.loss_type]
        if p.sft_weight:
            out["dpo_loss_weights"] = [1.0, p.sft_weight]
        if p.label_smoothing:
            out["dpo_label_smoothing"] = p.label_smoothing
        if p.reference == "precomputed":
            out["precompute_ref_log_probs"] = True
        # adapter_disabled: with an adapter Axolotl passes no reference model, and TRL disables the LoRA instead
    elif method == "simpo":  # CPO's loss_type=simpo; cpo_alpha=0 leaves SimPO without CPO's behaviour cloning term
        out.update(simpo_gamma=p.simpo_gamma, cpo_alpha=0.0)
    return out


def _precision(precision: str, dtype: str) -> dict[str, Any]:
    """ftorch's precision -> Axolotl's flags. auto = bf16 where the GPU has it, else fp32 (never fp16 on CPU)."""
    table: dict[str, dict[str, Any]] = {"auto": {"bf16": "auto", "fp16": False}, "bf16": {"bf16": True, "fp16": False},
                                        "fp16": {"bf16": False, "fp16": True}, "fp32": {"bf16": False, "fp16": False}}
    flags = table[precision]
    if dtype in ("bfloat16", "float16"):
        flags = {**flags, dtype: True}
    return flags


def check_preference(cfg: RunConfig) -> None:
    """Refuse what Axolotl's rl: cannot do as asked, naming the ftorch key (the method's own applicability
    rules are provider=peft's too: preference.check)."""
    from ..hf import preference

    method, t = cfg.train.method, cfg.train
    if method not in RL:
        raise ConfigError(Problem("train.method", f"train.method={method} is not translated for provider=axolotl: "
                                  "Axolotl 0.19's KTO loaders (kto.chatml, kto.llama3, kto.user_defined) read "
                                  "fixed-format strings, not chat messages rendered with the model's template",
                                  "use provider=peft for kto, or train.method=dpo, orpo or simpo here"))
    preference.check(cfg)
    if t.packing is True:
        raise ConfigError(Problem("train.packing", "preference pairs are not packed (Axolotl refuses sample_packing "
                                  "with rl:)", "remove train.packing=true"))
    if t.fused_loss == "on":
        raise ConfigError(Problem("train.fused_loss", f"train.fused_loss=on is SFT's fused cross-entropy; "
                                  f"train.method={method} has its own loss", "remove train.fused_loss=on"))


def rl_rows(method: str, split) -> list[dict[str, Any]]:
    """A split's preference pairs as the rows Axolotl's loader for `method` reads: TRL's conversational
    prompt/chosen/rejected (data.preference.trl_row) for chat_template.default; for ORPO's chat_template.argilla,
    a `system` string and chosen/rejected conversations that alternate user and assistant turns. A pair the
    loader cannot read is a DataError naming its file and line."""
    from ...data.preference import trl_row

    rows, problems = [], []
    for example, line in zip(split.examples, split.lines):
        row = trl_row(example)
        roles = [m["role"] for m in row["prompt"]]
        where = f"{split.path}:{line}"
        if not set(roles) <= set(RL_ROLES):
            problems.append(Problem(where, f"a prompt role provider=axolotl cannot pass to Axolotl's {RL_TYPE[method]} "
                                    f"loader: {sorted(set(roles) - set(RL_ROLES))}", "use system instead of developer"))
            continue
        if method == "orpo":
            system = row["prompt"][0]["content"] if roles[:1] == ["system"] else None
            turns = row["prompt"][1:] if system is not None else row["prompt"]
            if [m["role"] for m in turns] != ["user", "assistant"] * (len(turns) // 2) + ["user"]:
                problems.append(Problem(where, "Axolotl's ORPO loader (chat_template.argilla) reads a prompt of "
                                        "user and assistant turns in turn, ending with the user's, after an "
                                        "optional system message", "use train.method=dpo or simpo for this data"))
                continue
            row = {"chosen": turns + row["chosen"], "rejected": turns + row["rejected"],
                   **({"system": system} if system is not None else {})}
        rows.append(row)
    if problems:
        raise DataError(problems)
    return rows


def rl_paths(folder: str) -> dict[str, str]:
    return {split: str(Path(folder) / RL_DATA / f"{split}.jsonl") for split in ("train", "validation")}


def write_rl_data(method: str, splits: dict, folder: Path) -> dict[str, str]:
    """Write the train (and validation) rows into folder/axolotl_data; their paths by split."""
    paths = rl_paths(str(folder))
    written = {}
    for name in ("train", "validation"):
        if name in splits:
            path = Path(paths[name])
            ensure_dir(path.parent)  # a symlink planted at axolotl_data/ is refused
            write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rl_rows(method,
                                                                                                splits[name])))
            written[name] = str(path)
    return written


def ftorch_key(axolotl_key: str, passthrough: dict[str, Any]) -> str:
    """The ftorch setting an Axolotl key (dotted, from an error) comes from."""
    parts = axolotl_key.split(".") if axolotl_key else []
    if parts and parts[0] in passthrough:
        return "provider.axolotl." + axolotl_key
    generic = ".".join("*" if p.isdigit() else p for p in parts)
    for depth in range(len(parts), 0, -1):
        candidate = ".".join(generic.split(".")[:depth])
        if candidate in SOURCES:
            return SOURCES[candidate]
    return f"axolotl.yaml:{axolotl_key}" if axolotl_key else "axolotl.yaml"


def refuse_mapped_passthrough(passthrough: dict[str, Any]) -> None:
    """provider.axolotl is for Axolotl keys ftorch does not set: one that ftorch maps would silently win over
    the ftorch setting, so it is an error naming the key to use. Nested keys count too (trl.beta)."""
    keys = [key for key in passthrough if key in SOURCES]
    keys += [f"{key}.{sub}" for key, value in passthrough.items() if isinstance(value, dict)
             for sub in value if f"{key}.{sub}" in SOURCES]
    problems = [Problem(f"provider.axolotl.{key}", f"ftorch sets Axolotl's '{key}' from {SOURCES[key]}",
                        f"set {SOURCES[key]} instead (provider.axolotl is for keys ftorch does not map)")
                for key in keys]
    if problems:
        raise ConfigError(problems)


def notes(cfg: RunConfig) -> list[str]:
    """What plan shows beside the generated axolotl.yaml."""
    t, provider = cfg.train, cfg.provider_as(AxolotlProvider)
    shown = [f"model: {cfg.model.name} ({'built locally (model.tiny)' if cfg.model.tiny else 'local folder or hub id'}"
             "; axolotl.yaml gets its folder at run time)",
             f"runs in the Axolotl environment: {provider.python or '.venv-axolotl (ftorch setup axolotl)'}"]
    if t.is_preference:
        shown += _preference_notes(cfg)
    else:
        shown.append(f"loss on assistant tokens only: {t.assistant_only_loss} (roles_to_train, train_on_inputs); "
                     "OpenAI-style 'weight: 0' turns are not trained on")
    shown.append(f"precision {t.precision}: " + {"auto": "bf16 where the GPU supports it, else fp32",
                                                 "bf16": "bf16", "fp16": "fp16 (GPU)", "fp32": "fp32"}[t.precision])
    sft_only = {} if t.is_preference else {"train.method": "always LoRA (train.quantization picks lora or qlora)"}
    ignored = {**IGNORED, **sft_only}
    shown += [f"ignored: {key}: {why}" for key, why in ignored.items()]
    if t.quantization == "4bit":
        shown.append("qlora (4bit) needs a CUDA GPU and bitsandbytes")
    if t.num_gpus > 1:
        how = "plain DDP" if provider.distributed == "none" else provider.distributed
        shown.append(f"{t.num_gpus} GPUs through accelerate launch, {how}")
        if provider.distributed.startswith("deepspeed"):
            shown.append("deepspeed must be installed in the Axolotl environment: .venv-axolotl/bin/pip install "
                         "deepspeed")
    elif provider.distributed != "none":
        shown.append(f"ignored: provider.distributed={provider.distributed}: train.num_gpus=1")
    if provider.liger:
        shown.append("Liger plugin: fused kernels for rope, rms_norm, glu, layer_norm"
                     + (", fused linear cross-entropy" if t.fused_loss != "off" and not t.is_preference else "")
                     + " (GPU)")
    if t.packing == "auto" or t.gradient_checkpointing == "auto":
        shown.append("train.packing / gradient_checkpointing = auto: on when Axolotl's environment sees a GPU, "
                     "off on CPU" + ("; preference pairs are never packed" if t.is_preference else ""))
    if t.packing is True:
        shown.append("sample_packing with sdpa attention (samples kept apart); pays off on GPU, slower on CPU")
    shown += [f"passthrough: provider.axolotl.{key}" for key in provider.axolotl]
    return shown


def _preference_notes(cfg: RunConfig) -> list[str]:
    from ..hf import preference

    method, p = cfg.train.method, cfg.train.preference
    shown = [f"method: {method} through Axolotl's rl: {RL[method]} ({preference.TRL_TRAINER[method]}), LoRA; "
             f"pairs rewritten into <run dir>/{RL_DATA} for Axolotl's {RL_TYPE[method]} loader, rendered with the "
             "model's chat template"]
    if preference.USES_REFERENCE[method]:
        shown.append("reference model: " + ("log-probs computed once before training (precompute_ref_log_probs)"
                                            if p.reference == "precomputed" else
                                            "the same weights with the LoRA adapter disabled (no second model)"))
    else:
        shown.append(f"reference model: none ({method} is reference-free)")
    shown.append(f"train.max_length={cfg.train.max_length} (sequence_len) bounds prompt + answer; Axolotl drops "
                 "longer pairs")
    return shown
