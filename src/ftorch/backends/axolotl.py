"""provider=axolotl: Axolotl, run as a child process in its own environment (.venv-axolotl).

ftorch writes one axolotl.yaml per run (`_axolotl_config` is the only translator), checks it with Axolotl's own
schema in the child environment (`axolotl_child.py`), then runs `python -m axolotl.cli.train axolotl.yaml`,
streaming its output to the console and train.log and its step logs to metrics.jsonl.
"""

from __future__ import annotations

import ast
import codecs
import copy
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .. import metrics_log
from ..errors import BackendError, ConfigError, MissingExtra, Problem
from ..schema import resolved
from ..secrets import scrub, scrub_tree
from .base import Plan, Result, no_remote_job
from .steps import step_estimate

if TYPE_CHECKING:
    from ..data.report import DataReport
    from ..rundir import RunDir
    from ..schema import RunConfig

CHILD = Path(__file__).with_name("axolotl_child.py")
LIGER_PLUGIN = "axolotl.integrations.liger.LigerPlugin"
LIGER_KEYS = ("liger_rope", "liger_rms_norm", "liger_glu_activation", "liger_layer_norm")
PREPARED = "axolotl_prepared"  # Axolotl's tokenized-dataset cache, beside output_dir in the run dir
ADAPTER_FILES = re.compile(r"^(adapter_(config\.json|model\.(safetensors|bin))|tokenizer(_config)?\.json"
                           r"|tokenizer\.model|special_tokens_map\.json|added_tokens\.json|chat_template\.jinja"
                           r"|vocab\.json|merges\.txt)$")

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
    "warmup_ratio": "train.warmup_ratio", "weight_decay": "train.weight_decay", "max_grad_norm": "train.max_grad_norm",
    "seed": "train.seed", "bf16": "train.precision", "fp16": "train.precision",
    "gradient_checkpointing": "train.gradient_checkpointing", "logging_steps": "train.logging_steps",
    "save_strategy": "train.save_steps", "save_steps": "train.save_steps", "save_total_limit": "train.save_total_limit",
    "output_dir": "paths.runs", "dataset_prepared_path": "paths.runs",
    "plugins": "provider.liger", **{key: "provider.liger" for key in LIGER_KEYS},
    "liger_fused_linear_cross_entropy": "train.fused_loss",
    "deepspeed": "provider.distributed", "fsdp_version": "provider.distributed", "fsdp_config": "provider.distributed",
}
# TrainConfig/ModelConfig/DataConfig fields with no Axolotl key, and why (shown in the plan's notes).
IGNORED: dict[str, str] = {
    "train.method": "always LoRA (train.quantization picks lora or qlora); preference methods are refused",
    "train.preference": "preference methods (train.method=dpo, ...) are refused on provider=axolotl for now",
    "model.adapter": "refused on provider=axolotl (starting from an adapter is provider=peft's)",
    "train.num_gpus": "not an Axolotl key: ftorch launches through `accelerate launch --num_processes N`",
    "data.test": "held out for ftorch's evaluation after training; Axolotl never sees it",
    "train.allow_truncation": "ftorch's own truncation check runs in provider=peft's preprocessing; Axolotl "
                              "truncates (or drops) long examples by its own rules",
}
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


def _axolotl_config(cfg: RunConfig, output_dir: str, dataset_paths: dict[str, str], base_model: str | None = None,
                    device: str | None = None, resume_from: str | None = None) -> dict[str, Any]:
    """The one place ftorch's names become Axolotl's. `base_model` defaults to model.name (what plan shows);
    the run passes the local folder, and the device the Axolotl environment sees ('cpu' or 'cuda'; None in
    plan). provider.axolotl's keys (none of them one ftorch maps: see refuse_mapped_passthrough) are merged last."""
    t, lora, provider = cfg.train, cfg.train.lora, cfg.provider
    gpu = device == "cuda"
    packing, checkpointing = resolved(t.packing, gpu), resolved(t.gradient_checkpointing, gpu)  # 'auto': on GPU
    dataset = {"ds_type": "json", "split": "train", "type": "chat_template", "field_messages": "messages",
               "message_property_mappings": {"role": "role", "content": "content"},
               "message_field_training": "weight",  # OpenAI-style `weight: 0` turns are not trained on
               "roles_to_train": ["assistant"] if t.assistant_only_loss else ["system", "user", "assistant", "tool"],
               "train_on_eos": "turn" if t.assistant_only_loss else "all"}
    out: dict[str, Any] = {
        "base_model": base_model or cfg.model.name,
        "revision_of_model": cfg.model.revision,
        "trust_remote_code": cfg.model.trust_remote_code,
        "datasets": [{"path": dataset_paths["train"], **dataset}],
        "chat_template": "tokenizer_default",
        "train_on_inputs": not t.assistant_only_loss,
        "dataset_prepared_path": str(Path(output_dir).parent / PREPARED),
        "output_dir": output_dir,
        "adapter": "qlora" if t.quantization == "4bit" else "lora",
        "load_in_4bit": t.quantization == "4bit",
        "lora_r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
        "lora_target_modules": list(lora.target_modules),
        "lora_modules_to_save": list(lora.modules_to_save) or None,
        "sequence_len": t.max_length,
        "sample_packing": packing,
        "micro_batch_size": t.batch_size, "eval_batch_size": t.batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "num_epochs": t.epochs, "max_steps": t.max_steps,
        "learning_rate": t.lr, "optimizer": t.optimizer, "lr_scheduler": t.scheduler,
        "warmup_ratio": t.warmup_ratio, "weight_decay": t.weight_decay, "max_grad_norm": t.max_grad_norm,
        "seed": t.seed,
        **_precision(t.precision, cfg.model.dtype),
        "gradient_checkpointing": checkpointing,
        "logging_steps": t.logging_steps,
        "save_strategy": "steps", "save_steps": t.save_steps, "save_total_limit": t.save_total_limit,
    }
    if packing:  # sdpa keeps packed samples apart (block-diagonal mask) and runs anywhere
        out.update(pad_to_sequence_len=True, eval_sample_packing=False, attn_implementation="sdpa")
    if "validation" in dataset_paths:
        out.update(test_datasets=[{"path": dataset_paths["validation"], **dataset}], val_set_size=0.0,
                   eval_strategy="epoch")
    else:
        out.update(val_set_size=0.0, eval_strategy="no")
    if provider.liger:
        out.update(plugins=[LIGER_PLUGIN], **{key: True for key in LIGER_KEYS},
                   liger_fused_linear_cross_entropy=t.fused_loss != "off")
    if t.num_gpus > 1 and provider.distributed != "none":
        out.update(copy.deepcopy(DISTRIBUTED[provider.distributed]))
    if device == "cpu":  # Axolotl turns its fused LoRA kernels on by itself, and they need CUDA
        out.update({f"lora_{part}_kernel": False for part in ("mlp", "qkv", "o", "embedding")})
    if resume_from:
        out["resume_from_checkpoint"] = resume_from
    out = {key: value for key, value in out.items() if value is not None}
    out.update(provider.axolotl)
    return out


def _precision(precision: str, dtype: str) -> dict[str, Any]:
    """ftorch's precision -> Axolotl's flags. auto = bf16 where the GPU has it, else fp32 (never fp16 on CPU)."""
    flags: dict[str, Any] = {"auto": {"bf16": "auto", "fp16": False}, "bf16": {"bf16": True, "fp16": False},
                             "fp16": {"bf16": False, "fp16": True}, "fp32": {"bf16": False, "fp16": False}}[precision]
    if dtype in ("bfloat16", "float16"):
        flags = {**flags, dtype: True}
    return flags


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


def default_python() -> Path:
    from ..compose import find_project
    from ..setup_envs import axolotl_python

    return axolotl_python(find_project().root)


def child_python(cfg: RunConfig) -> Path:
    """provider.python, else $FTORCH_AXOLOTL_PYTHON, else <project>/.venv-axolotl/bin/python."""
    chosen = cfg.provider.python or os.environ.get("FTORCH_AXOLOTL_PYTHON")
    return Path(chosen).expanduser() if chosen else default_python()


class AxolotlBackend:
    name = "axolotl"
    unused_settings = {"train.allow_truncation": IGNORED["train.allow_truncation"]}

    def plan(self, cfg: RunConfig, data: DataReport) -> Plan:
        from . import _hf

        if cfg.data.format != "chat":
            raise ConfigError(Problem("data.format", "provider=axolotl trains on chat data (SFT) in ftorch; "
                                      f"{cfg.data.format} (DPO) data is not translated yet",
                                      "preference methods (train.method=dpo, orpo, kto, simpo) run on provider=peft"))
        if cfg.train.fused_loss == "on" and not cfg.provider.liger:
            raise ConfigError(Problem("train.fused_loss", "train.fused_loss=on has no effect with provider=axolotl "
                                      "unless provider.liger=true", "set provider.liger=true (Liger's fused linear "
                                      "cross-entropy), or leave train.fused_loss=auto"))
        refuse_mapped_passthrough(cfg.provider.axolotl)
        _hf.check_model_reference(cfg.model)
        paths = {split: str(chat.path.resolve()) for split, chat in data.splits.items()}
        config = _axolotl_config(cfg, "<run dir>/checkpoints", paths)
        return Plan(provider=self.name, config=cfg, data=data,
                    inputs={"axolotl_yaml": config, "launch": _launch_command("<python>", "axolotl.yaml", cfg)},
                    estimates=step_estimate(cfg.train, data.count("train")),
                    notes=_notes(cfg))

    def cancel(self, run: RunDir, cfg: RunConfig) -> str:
        return no_remote_job(self.name, run)

    def preflight(self, cfg: RunConfig) -> None:
        python = child_python(cfg)
        if python.is_file() and os.access(python, os.X_OK):
            return
        if cfg.provider.python or os.environ.get("FTORCH_AXOLOTL_PYTHON"):
            where = "provider.python" if cfg.provider.python else "FTORCH_AXOLOTL_PYTHON"
            raise MissingExtra(Problem(where, f"no Python interpreter at {python}",
                                       "point it at the python of an environment with axolotl installed, "
                                       "or remove it to use the one `ftorch setup axolotl` makes"))
        raise MissingExtra(Problem("provider=axolotl", f"the Axolotl environment is missing ({python.parent.parent})",
                                   "set it up once with: ftorch setup axolotl   (a separate venv with torch and "
                                   "axolotl, ~2 min, ~4.3 GB; Axolotl cannot share ftorch's environment)"))

    def run(self, plan: Plan, run: RunDir) -> Result:
        return self._train(plan, run, resume_from=None)

    def resume(self, plan: Plan, run: RunDir) -> Result:
        checkpoint = latest_checkpoint(run.checkpoints)
        run.append_log(f"resuming from {checkpoint}" if checkpoint else "no checkpoint found: starting from step 0")
        return self._train(plan, run, resume_from=checkpoint)

    def _train(self, plan: Plan, run: RunDir, resume_from: Path | None) -> Result:
        from . import _hf

        cfg = plan.config
        self.preflight(cfg)
        python = str(child_python(cfg))
        env = probe(python)
        device = "cuda" if env["cuda"] else "cpu"
        run.append_log(f"axolotl {env['axolotl']}, torch {env['torch']}, {env['gpus']} CUDA device(s)")
        if cfg.train.quantization == "4bit":
            _hf.require_cuda_for_4bit(device)
        if cfg.train.num_gpus > max(env["gpus"], 1):
            raise BackendError(Problem("train.num_gpus", f"{cfg.train.num_gpus} GPUs asked for, but the Axolotl "
                                       f"environment sees {env['gpus']}", "lower train.num_gpus"))
        base = _hf.model_path(cfg.model)
        paths = {split: str(chat.path.resolve()) for split, chat in plan.data.splits.items()}
        config = _axolotl_config(cfg, str(run.checkpoints), paths, base_model=base, device=device,
                                 resume_from=str(resume_from) if resume_from else None)
        config_path = run.path / "axolotl.yaml"
        config_path.write_text(yaml.safe_dump(scrub_tree(config), sort_keys=False))  # keys come from the env
        run.append_log(f"axolotl config: {config_path}; python: {python}; model: {base}")
        validate(python, config_path, cfg.provider.axolotl)
        command = _launch_command(python, str(config_path), cfg)
        run.append_log("launch: " + " ".join(command))
        start = _step_of(resume_from) if resume_from else 0
        code, tail = stream(command, _child_env(base), run, logging_steps=cfg.train.logging_steps, start_step=start)
        if code != 0:
            raise BackendError(Problem("provider=axolotl", f"axolotl train exited with code {code}; "
                                       "its last lines:\n" + "\n".join(f"    | {line}" for line in tail),
                                       f"full output: {run.log}"))
        return _finish(run, {"axolotl_python": python, "device": device, "axolotl_version": env["axolotl"]})


def probe(python: str) -> dict[str, Any]:
    """What the Axolotl environment has: {"cuda", "gpus", "bf16", "torch", "axolotl"} (imports torch only)."""
    try:
        done = subprocess.run([python, str(CHILD), "--probe"], capture_output=True, text=True, timeout=120,
                              env=_quiet_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        done, detail = None, str(exc)
    if done is not None and done.returncode == 0 and done.stdout.strip():
        return json.loads(done.stdout.strip().splitlines()[-1])
    detail = "\n".join(done.stderr.splitlines()[-10:]) if done is not None else detail
    raise BackendError(Problem("provider=axolotl", f"the Axolotl environment at {python} does not work: {detail}",
                               "rebuild it: ftorch setup axolotl --force"))


def validate(python: str, config_path: Path, passthrough: dict[str, Any]) -> None:
    """Axolotl's own schema, in its environment; problems come back under ftorch's key names."""
    try:
        done = subprocess.run([python, str(CHILD), str(config_path)], capture_output=True, text=True, timeout=600,
                              env=_quiet_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(Problem("provider=axolotl", f"cannot run the Axolotl config check: {exc}")) from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        detail = json.loads(lines[-1]).get("fatal", "") if lines else "\n".join(done.stderr.splitlines()[-15:])
        raise BackendError(Problem("provider=axolotl", f"the Axolotl config check failed: {detail}",
                                   "rebuild the environment: ftorch setup axolotl --force"))
    report = json.loads(lines[-1])
    problems = [Problem(ftorch_key(e["key"], passthrough),
                        f"{e['message']} (Axolotl key '{e['key'] or '<config>'}' in {config_path.name})")
                for e in report["errors"]]
    for key in report["unknown_keys"]:
        close = report["suggestions"].get(key)
        hint = f"did you mean '{close}'?" if close else "check Axolotl's config reference"
        problems.append(Problem(ftorch_key(key, passthrough), f"Axolotl has no key '{key}'; it would ignore it "
                                "silently", hint))
    if problems:
        raise ConfigError(problems, hint=f"Axolotl's own schema rejected {config_path} before training")


def _launch_command(python: str, config: str, cfg: RunConfig) -> list[str]:
    train = ["-m", "axolotl.cli.train", config]
    if cfg.train.num_gpus > 1:
        return [python, "-m", "accelerate.commands.launch", "--num_processes", str(cfg.train.num_gpus), *train]
    return [python, *train]


def _quiet_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    env.update(AXOLOTL_DO_NOT_TRACK="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    env.setdefault("WANDB_MODE", "disabled")
    return env


def _child_env(base: str) -> dict[str, str]:
    env = _quiet_env()
    if Path(base).is_dir():  # a local model needs no hub; stay offline so nothing is fetched behind our back
        env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _finish(run: RunDir, extra: dict[str, Any]) -> Result:
    """Copy the adapter out of Axolotl's output_dir; metrics from its trainer state (exact steps)."""
    saved = [p for p in run.checkpoints.iterdir() if p.is_file() and ADAPTER_FILES.match(p.name)]
    if not any(p.name == "adapter_config.json" for p in saved):
        raise BackendError(Problem("provider=axolotl", f"Axolotl finished but saved no adapter in {run.checkpoints}",
                                   f"see {run.log}"))
    run.adapter.mkdir(parents=True, exist_ok=True)
    for path in saved:
        shutil.copy2(path, run.adapter / path.name)
    return Result(status="succeeded", metrics=_final_metrics(run),
                  artifacts={"adapter": str(run.adapter), "checkpoints": str(run.checkpoints),
                             "axolotl_config": str(run.path / "axolotl.yaml")},
                  extra=extra)


def _notes(cfg: RunConfig) -> list[str]:
    t, provider = cfg.train, cfg.provider
    notes = [f"model: {cfg.model.name} ({'built locally (model.tiny)' if cfg.model.tiny else 'local folder or hub id'}"
             "; axolotl.yaml gets its folder at run time)",
             f"runs in the Axolotl environment: {provider.python or '.venv-axolotl (ftorch setup axolotl)'}",
             f"loss on assistant tokens only: {t.assistant_only_loss} (roles_to_train, train_on_inputs); "
             "OpenAI-style 'weight: 0' turns are not trained on",
             f"precision {t.precision}: " + {"auto": "bf16 where the GPU supports it, else fp32",
                                             "bf16": "bf16", "fp16": "fp16 (GPU)", "fp32": "fp32"}[t.precision]]
    notes += [f"ignored: {key}: {why}" for key, why in IGNORED.items()]
    if t.quantization == "4bit":
        notes.append("qlora (4bit) needs a CUDA GPU and bitsandbytes")
    if t.num_gpus > 1:
        how = "plain DDP" if provider.distributed == "none" else provider.distributed
        notes.append(f"{t.num_gpus} GPUs through accelerate launch, {how}")
        if provider.distributed.startswith("deepspeed"):
            notes.append("deepspeed must be installed in the Axolotl environment: .venv-axolotl/bin/pip install "
                         "deepspeed")
    elif provider.distributed != "none":
        notes.append(f"ignored: provider.distributed={provider.distributed}: train.num_gpus=1")
    if provider.liger:
        notes.append("Liger plugin: fused kernels for rope, rms_norm, glu, layer_norm"
                     + (", fused linear cross-entropy" if t.fused_loss != "off" else "") + " (GPU)")
    if t.packing == "auto" or t.gradient_checkpointing == "auto":
        notes.append("train.packing / gradient_checkpointing = auto: on when Axolotl's environment sees a GPU, "
                     "off on CPU")
    if t.packing is True:
        notes.append("sample_packing with sdpa attention (samples kept apart); pays off on GPU, slower on CPU")
    notes += [f"passthrough: provider.axolotl.{key}" for key in provider.axolotl]
    return notes


def refuse_mapped_passthrough(passthrough: dict[str, Any]) -> None:
    """provider.axolotl is for Axolotl keys ftorch does not set: one that ftorch maps would silently win over
    the ftorch setting, so it is an error naming the key to use."""
    problems = [Problem(f"provider.axolotl.{key}", f"ftorch sets Axolotl's '{key}' from {SOURCES[key]}",
                        f"set {SOURCES[key]} instead (provider.axolotl is for keys ftorch does not map)")
                for key in passthrough if key in SOURCES]
    if problems:
        raise ConfigError(problems)


# --- the child process: output to console, train.log and metrics.jsonl; Ctrl-C stops it cleanly -------------

STOP_SIGNALS = ((signal.SIGINT, 20.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0))  # signal, seconds to wait
_LOG_DICT = re.compile(r"^\{'(loss|eval_loss|train_runtime)'.*\}$")


class _Output:
    """Splits the child's bytes into lines: echoed as they come, kept in train.log (a progress bar's last state
    only), and step logs ({'loss': '1.23', ...} as transformers prints them) turned into metrics.jsonl rows."""

    def __init__(self, run: RunDir, log, logging_steps: int, start_step: int) -> None:
        self.run, self.log, self.logging_steps = run, log, logging_steps
        self.step, self.checkpoint = start_step, latest_checkpoint(run.checkpoints)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""
        self.tail: deque[str] = deque(maxlen=30)

    def feed(self, chunk: bytes, final: bool = False) -> None:
        text = self.decoder.decode(chunk, final=final)
        sys.stdout.write(text)
        sys.stdout.flush()
        *lines, self.pending = (self.pending + text).split("\n")
        if final and self.pending:
            lines, self.pending = [*lines, self.pending], ""
        for line in lines:
            states = [s.strip() for s in line.split("\r") if s.strip()]
            for state in states:
                if _LOG_DICT.match(state):
                    self._record(state)
            if states:
                self.log.write(scrub(states[-1]) + "\n")
                self.tail.append(scrub(states[-1]))

    def _record(self, text: str) -> None:
        try:
            logs = {k: _number(v) for k, v in ast.literal_eval(text).items()}
        except (ValueError, SyntaxError, AttributeError):
            return
        if "loss" in logs:
            self.step += self.logging_steps
        extra = {ours: logs[theirs] for ours, theirs in (("tokens", "tokens/total"),
                                                          ("tokens_per_s", "tokens/train_per_sec_per_gpu"))
                 if "loss" in logs and theirs in logs}
        row = metrics_log.from_trainer_logs(self.step, logs, time=time.time(), **extra)
        if row is not None:
            metrics_log.append(self.run.metrics, row)
        checkpoint = latest_checkpoint(self.run.checkpoints)
        if checkpoint != self.checkpoint and checkpoint is not None:
            self.checkpoint = checkpoint
            self.run.update(last_checkpoint_step=_step_of(checkpoint))


def stream(command: list[str], env: dict[str, str], run: RunDir, *, logging_steps: int,
           start_step: int) -> tuple[int, list[str]]:
    """Run `command` in the run dir; return its exit code and last lines. On Ctrl-C (or SIGTERM turned into
    RunInterrupted) stop it with SIGINT, then SIGTERM, then SIGKILL, and re-raise."""
    with run.log.open("a", buffering=1) as log:
        child = subprocess.Popen(command, cwd=run.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True,  # its own group: we own its stop
                                 pass_fds=run.held_fds())  # the child holds the run's lock too, even if we die
        output = _Output(run, log, logging_steps, start_step)
        fd = child.stdout.fileno()
        try:
            while chunk := os.read(fd, 65536):
                output.feed(chunk)
            output.feed(b"", final=True)
            return child.wait(), list(output.tail)
        except BaseException:
            _stop(child, output, run)
            raise
        finally:
            child.stdout.close()


def _stop(child: subprocess.Popen, output: _Output, run: RunDir) -> None:
    fd = child.stdout.fileno()
    for sig, grace in STOP_SIGNALS:
        if child.poll() is not None:
            break
        run.append_log(f"stopping axolotl (pid {child.pid}) with {sig.name}")
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        try:
            while child.poll() is None and time.monotonic() < deadline:
                if select.select([fd], [], [], 0.2)[0] and (chunk := os.read(fd, 65536)):
                    output.feed(chunk)
        except KeyboardInterrupt:  # a second Ctrl-C: go straight to the next signal
            continue
    output.feed(b"", final=True)
    run.append_log(f"axolotl exited with {child.wait()}")
    try:  # workers (accelerate launch) left behind by a launcher that exited first
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[-1])


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint-N folder with the highest N that holds a trainer state (a complete save)."""
    found = [p for p in folder.glob("checkpoint-*") if p.name.rsplit("-", 1)[-1].isdigit()
             and (p / "trainer_state.json").is_file()] if folder.is_dir() else []
    return max(found, key=_step_of, default=None)


def _final_metrics(run: RunDir) -> dict[str, Any]:
    """final_loss, final_eval_loss and global_step: from the last checkpoint's trainer state (exact values)
    where there is one, else from the rows read off the child's output."""
    rows = metrics_log.read(run.metrics)
    checkpoint = latest_checkpoint(run.checkpoints)
    if checkpoint is not None:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        metrics = metrics_log.final_metrics(state.get("log_history", []), state.get("global_step"))
    else:  # the rows read off the child's output have the same keys as a log history
        metrics = metrics_log.final_metrics(rows, max((r["step"] for r in rows), default=None))
    summary = [r for r in rows if r["kind"] == "summary"]
    if summary:
        metrics.update({k: v for k, v in summary[-1].items() if k.startswith("train_")})
    return metrics
