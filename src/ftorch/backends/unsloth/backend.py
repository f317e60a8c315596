"""provider=unsloth: Unsloth's FastLanguageModel, its LoRA wrapper and TRL's SFTTrainer (or, for
train.method=dpo|orpo|kto|simpo, the method's TRL trainer: ftorch.backends.hf.preference), on one GPU (or,
with provider.allow_cpu, Unsloth's CPU fallback).

Training runs in a child process, `python -m ftorch.backends.unsloth.child RUN_DIR`, for three reasons:
- `import unsloth` patches transformers, PEFT and TRL for the whole process (TrainingArguments, SFTTrainer,
  model forwards on GPU) and wants to come before transformers, which the ftorch process has long imported
  by then. In a child it comes first, and its patches end with the child: the evaluation after training,
  the next trials of a sweep and the check that the adapter loads with plain PEFT run on stock libraries.
- GPU memory goes back when the child exits, so a sweep's next trial starts clean.
- Unsloth's generated code (unsloth_compiled_cache/) goes into the run directory, not the working directory.
The cost is one more interpreter start and the library imports (~5-10 s). The child reads config.yaml and
unsloth/request.json from the run directory; starting, stopping it and its result are backends/child.py's
(one policy for every child), which turns its record back into a Result or the same FtorchError, and
Ctrl-C / SIGTERM into an interrupted run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...config.providers import UnslothProvider
from ...errors import ConfigError, MissingExtra, Problem
from ...models import check_model_reference, model_path
from ...run.rundir import write_json_atomic
from .. import child, local_eval
from ..base import Plan, Result, no_remote_job
from ..hf import checkpoints, loading, publish
from ..hf import translate as hf_translate
from ..steps import step_estimate

if TYPE_CHECKING:
    from ...config.schema import RunConfig
    from ...data.report import DataReport
    from ...run.rundir import RunDir

WORK_DIR = "unsloth"  # inside the run directory: request.json, probe.pt, compiled_cache/
# Unsloth's save_pretrained_gguf quantizations that need no importance matrix (unsloth/save.py ALLOWED_QUANTS).
GGUF_METHODS = ("not_quantized", "fast_quantized", "quantized", "f32", "bf16", "f16", "q8_0", "q4_k_m", "q5_k_m",
                "q2_k", "q2_k_l", "q3_k_l", "q3_k_m", "q3_k_s", "q4_0", "q4_1", "q4_k_s", "q4_k", "q5_k", "q5_0",
                "q5_1", "q5_k_s", "q6_k", "q3_k_xs")
INSTALL_HINT = ("create its environment with `ftorch setup unsloth` and run ftorch from "
                ".venv-unsloth/bin/ftorch (by hand: pip install torch==2.13.0 first, then `pip install -c "
                "constraints.txt torch==2.13.0 unsloth unsloth_zoo`, then `pip uninstall -y torchvision`: the "
                "torchvision that unsloth pulls from PyPI does not load beside a CPU torch and breaks "
                "`import unsloth`)")


def _unsloth_args(cfg: RunConfig) -> dict[str, Any]:
    """The one place ftorch's names become FastLanguageModel's. Device-dependent values (dtype, whether 4-bit
    loading really happens) are resolved when the run starts and recorded in run.json."""
    lora, checkpointing = cfg.train.lora, cfg.train.gradient_checkpointing
    return {
        "from_pretrained": {"max_seq_length": cfg.train.max_length,
                            "load_in_4bit": cfg.train.quantization == "4bit",
                            "revision": cfg.model.revision, "trust_remote_code": cfg.model.trust_remote_code},
        "get_peft_model": {"r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
                           "target_modules": list(lora.target_modules),
                           "modules_to_save": list(lora.modules_to_save) or None,
                           "bias": "none", "random_state": cfg.train.seed,
                           # "unsloth": its offloaded checkpointing on GPU (plain recomputation on CPU);
                           # "auto" is resolved when the device is known (_for_device)
                           "use_gradient_checkpointing": "auto" if checkpointing == "auto" else
                           ("unsloth" if checkpointing else False)},
    }


def _for_device(inputs: dict[str, Any], device: str) -> dict[str, Any]:
    """The plan's inputs with what waited for the device decided: checkpointing 'auto' is Unsloth's offloaded
    checkpointing on a GPU (its default; it costs little there) and off on CPU (pure recomputation)."""
    peft_model = dict(inputs["get_peft_model"])
    if peft_model["use_gradient_checkpointing"] == "auto":
        peft_model["use_gradient_checkpointing"] = "unsloth" if device == "cuda" else False
    return {**inputs, "get_peft_model": peft_model}


def _trainer_args(cfg: RunConfig) -> dict[str, Any]:
    """What every TRL config gets from provider=unsloth: the shared trainer settings (hf_translate) at
    train.batch_size x train.grad_accum, with checkpointing left to get_peft_model above (TRL's own would wrap the
    layers a second time; TRL 1.x defaults gradient_checkpointing to True) and without Liger (Unsloth patches
    the same layers with its own kernels)."""
    return {**hf_translate.trainer_args(cfg, cfg.train.fixed_batch_size, cfg.train.grad_accum),
            "gradient_checkpointing": False, "use_liger_kernel": False}


def _sft_config_args(cfg: RunConfig) -> dict[str, Any]:
    """SFTConfig: the trainer settings plus the SFT keys. packing=auto is off (true asks TRL for padding-free
    packing, which Unsloth's CPU path turns off again)."""
    from ...config.schema import resolved

    packing = resolved(cfg.train.packing, False)
    return {**_trainer_args(cfg), "packing": packing, "padding_free": packing,
            "assistant_only_loss": cfg.train.assistant_only_loss, "include_num_input_tokens_seen": "non_padding"}


def _memory_choice(cfg: RunConfig):
    """fit.choose() for the run on a CUDA GPU as Unsloth makes it: train.batch_size per step, no packing, its
    own loss and kernels (none of TRL's or Liger's), checkpointing as get_peft_model gets it (auto = on)."""
    from ..hf import fit

    checkpointing = cfg.train.gradient_checkpointing
    train = cfg.train.model_copy(update={"packing": False, "fused_loss": "off",
                                                     "gradient_checkpointing": checkpointing is not False})
    return fit.choose(hf_translate.model_shape(cfg), train, None, fused_available=False, liger_available=False,
                         varlen_available=False, device="cuda")


def _no_gpu_error() -> ConfigError:
    return ConfigError(Problem("provider=unsloth", "needs a CUDA GPU, and torch sees none on this machine",
                               "use provider=peft (the same recipe, on CPU), or set provider.allow_cpu=true to let "
                               "Unsloth fall back to its (slow) CPU path"))


def _torchvision_problem() -> MissingExtra | None:
    """PyPI's torchvision beside a CPU torch fails at import, and takes `import unsloth` down with it."""
    if importlib.util.find_spec("torchvision") is None:
        return None
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # RuntimeError "operator torchvision::nms does not exist", ImportError...
        return MissingExtra(Problem("provider=unsloth", f"torchvision is installed but does not load "
                                    f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}), "
                                    "and `import unsloth` imports it",
                                    f"remove it: {sys.executable} -m pip uninstall -y torchvision"))
    return None


class UnslothBackend:
    name = "unsloth"
    weights = "adapter"
    unused_settings = {
        "train.allow_truncation": "ftorch's truncation check runs in provider=peft's preprocessing; Unsloth "
                                  "truncates long examples at train.max_length",
    }

    def plan(self, cfg: RunConfig, data: DataReport) -> Plan:
        problems = []
        if cfg.train.is_preference:
            from ..hf import preference

            preference.check(cfg)
            if cfg.train.packing is True:
                problems.append(Problem("train.packing", f"train.method={cfg.train.method} scores each pair's "
                                        "chosen and rejected answers side by side; they are not packed",
                                        "remove train.packing=true"))
        if cfg.train.num_gpus > 1:
            problems.append(Problem("train.num_gpus", "provider=unsloth trains on one GPU",
                                    "use provider=axolotl for several GPUs"))
        p = cfg.provider_as(UnslothProvider)
        if cfg.train.fused_loss != "auto":
            problems.append(Problem("train.fused_loss", "has no effect with provider=unsloth (Unsloth picks its own "
                                    "loss kernel)", "leave it at auto"))
        gguf = p.export_gguf
        if gguf is not None and gguf.lower() not in GGUF_METHODS:
            problems.append(Problem("provider.export_gguf", f"unknown GGUF quantization '{gguf}'",
                                    f"one of: {', '.join(GGUF_METHODS)}"))
        if problems:
            raise ConfigError(problems)
        check_model_reference(cfg.model)

        estimates = step_estimate(cfg.train, data.count("train"))
        source = "built locally (model.tiny) and cached" if cfg.model.tiny else "local folder or hub id"
        four_bit = _unsloth_args(cfg)["from_pretrained"]["load_in_4bit"]
        notes = [f"model: {cfg.model.name} ({source}), loaded by unsloth.FastLanguageModel",
                 "LoRA through Unsloth's PEFT wrapper (FastLanguageModel.get_peft_model); the adapter is a plain "
                 "PEFT adapter: ftorch eval loads it with transformers + PEFT",
                 f"on a CUDA GPU: {'4-bit (bitsandbytes NF4, QLoRA)' if four_bit else '16-bit'} base weights, "
                 "bf16 (fp16 without bf16 support) unless train.precision says otherwise",
                 ("without a GPU, provider.allow_cpu=true: Unsloth's CPU fallback (stock transformers/PEFT/TRL, "
                  "chunked cross-entropy); 4-bit off (no bitsandbytes 4-bit on CPU), fp32 unless "
                  "train.precision=bf16, packing off; slow, meant for tests") if p.allow_cpu else
                 "without a CUDA GPU the run is refused (provider.allow_cpu=false)",
                 "trains in a child process (python -m ftorch.backends.unsloth.child), so Unsloth's patches "
                 "never reach the evaluation that follows",
                 f"loss on assistant tokens only: {cfg.train.assistant_only_loss}"]
        if cfg.train.gradient_checkpointing == "auto":
            notes.append("train.gradient_checkpointing=auto: Unsloth's offloaded checkpointing on a GPU, off on CPU")
        if cfg.train.packing == "auto":
            notes.append("train.packing=auto: off with provider=unsloth; train.packing=true asks Unsloth/TRL for "
                         "padding-free packing (GPU only: its CPU path turns packing off)")
        if cfg.train.lora.dropout > 0:
            notes.append(f"train.lora.dropout={cfg.train.lora.dropout}: Unsloth's fast LoRA kernels need dropout 0; "
                         "with dropout the LoRA layers run unfused (slower)")
        if p.export_merged_16bit:
            notes.append("after training: merged 16-bit weights in merged/ (save_pretrained_merged)")
        if gguf:
            notes.append(f"after training: GGUF {gguf} in gguf/ (save_pretrained_gguf; on first use Unsloth clones "
                         "and builds llama.cpp under ~/.unsloth, which needs network and a C++ toolchain; ftorch "
                         "stops it from installing system packages). A failed export is reported, the run stands")
        if cfg.train.is_preference:
            return self._plan_preference(cfg, data, notes, estimates)
        if any(m.get("weight") == 0 for e in data.splits["train"].examples for m in e["messages"]):
            notes.append("warning: 'weight: 0' on assistant messages is not honoured by provider=unsloth; "
                         "those turns are trained on")
        return Plan(
            provider=self.name, config=cfg, data=data,
            inputs={"model": {"name": cfg.model.name, "tiny": cfg.model.tiny is not None, "dtype": cfg.model.dtype},
                    "precision": cfg.train.precision,  # as asked; resolved on the device at run time
                    **_unsloth_args(cfg), "sft": _sft_config_args(cfg),
                    "exports": {"merged_16bit": p.export_merged_16bit, "gguf": gguf}},
            estimates=estimates,
            notes=notes,
        )

    def _plan_preference(self, cfg: RunConfig, data: DataReport, notes: list[str],
                         estimates: dict[str, Any]) -> Plan:
        """train.method=dpo|orpo|kto|simpo: the model and LoRA as for SFT, then the method's TRL trainer (which
        Unsloth patches on a GPU) on the LoRA model; the reference is that model with its adapter disabled."""
        from ..hf import preference

        p = cfg.provider_as(UnslothProvider)
        notes = [n for n in notes if not n.startswith(("loss on assistant tokens", "train.packing=auto"))]
        choice = _memory_choice(cfg)
        more, memory = preference.plan_notes(cfg, hf_translate.model_shape(cfg), choice)
        more[0] += " (patched by Unsloth on a GPU; stock TRL on its CPU fallback)"
        more = [("reference model: the same weights scored through TRL's frozen copy of the new LoRA, which is "
                 "zero-initialised: the base's outputs, no second model")
                if n == "reference model: the same weights with the LoRA adapter disabled (no second model)" else n
                for n in more]
        if memory:
            more.append("the memory figures are for a CUDA GPU with the weights Unsloth loads there, its "
                        f"checkpointing {'on' if choice.settings['gradient_checkpointing'] else 'off'}, stock "
                        "kernels (Unsloth's own usually need less)")
        return Plan(
            provider=self.name, config=cfg, data=data,
            inputs={"model": {"name": cfg.model.name, "tiny": cfg.model.tiny is not None, "dtype": cfg.model.dtype},
                    "precision": cfg.train.precision, **_unsloth_args(cfg), "method": cfg.train.method,
                    "preference": preference.trainer_args(cfg, _trainer_args(cfg)),
                    "exports": {"merged_16bit": p.export_merged_16bit, "gguf": p.export_gguf}},
            estimates={**estimates, "train_pairs": estimates["train_examples"], **memory},
            notes=notes[:1] + more + notes[1:],
        )

    def cancel(self, run: RunDir, cfg: RunConfig) -> str:
        return no_remote_job(self.name, run)

    eval_models = staticmethod(local_eval.eval_models)  # ftorch eval: what is scored, loaded or reached
    check_eval_budget = staticmethod(local_eval.check_eval_budget)

    def preflight(self, cfg: RunConfig) -> None:
        """Installed, loadable, and a GPU (or allow_cpu), decided without importing unsloth (which would patch
        this process)."""
        if importlib.util.find_spec("unsloth") is None or importlib.util.find_spec("unsloth_zoo") is None:
            raise MissingExtra(Problem("provider=unsloth", f"unsloth is not installed in this environment "
                                       f"({sys.executable})", INSTALL_HINT))
        problem = _torchvision_problem()
        if problem is not None:
            raise problem
        if not cfg.provider_as(UnslothProvider).allow_cpu and not loading.cuda_available():
            raise _no_gpu_error()

    def run(self, plan: Plan, run: RunDir) -> Result:
        return self._train(plan, run, resume_from=None)

    def resume(self, plan: Plan, run: RunDir) -> Result:
        return self._train(plan, run, resume_from=checkpoints.resume_point(run))

    def _train(self, plan: Plan, run: RunDir, resume_from: str | None) -> Result:
        cfg = plan.config
        self.preflight(cfg)  # again: a resume may happen elsewhere
        device = "cuda" if loading.cuda_available() else "cpu"
        precision = hf_translate.precision(cfg.train.precision, device)
        dtype = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[precision]
        if cfg.model.dtype != "auto":
            dtype = cfg.model.dtype
        # Unsloth's CPU fallback (provider.allow_cpu, as the plan notes say) loads 16-bit weights: no 4-bit on CPU
        four_bit = plan.inputs["from_pretrained"]["load_in_4bit"] and device == "cuda"
        work = run.path / WORK_DIR
        work.mkdir(parents=True, exist_ok=True)
        (work / "probe.pt").unlink(missing_ok=True)
        request: dict[str, Any] = {"inputs": _for_device(plan.inputs, device), "model_path": model_path(cfg.model),
                   "device": device, "precision": precision, "dtype": dtype, "load_in_4bit": four_bit,
                   "resume_from": resume_from}
        write_json_atomic(work / "request.json", request)
        checkpointing = request["inputs"]["get_peft_model"]["use_gradient_checkpointing"]
        run.append_log(f"unsloth child: model {request['model_path']} on {device}, weights {dtype}, "
                       f"4-bit {four_bit}, precision {precision}, gradient checkpointing {checkpointing}")
        ended = child.supervise([sys.executable, "-m", "ftorch.backends.unsloth.child", str(run.path)], run,
                                what="unsloth child", env=_child_env(cfg, device, work))
        outcome = child.outcome(ended, where="provider=unsloth", log=run.log)

        exact = dtype == "float32" and not four_bit
        check = self._peft_check(run, request["model_path"], exact)
        run.append_log(f"plain PEFT reload check: {check}")
        (work / "probe.pt").unlink()  # up to ~10 MB of logits for a large vocabulary, needed only for the check
        extra = {**outcome.extra, "peft_reload_check": check, "resume_from": resume_from,
                 "gradient_checkpointing": checkpointing}
        return Result(status="succeeded", metrics=outcome.metrics, artifacts=outcome.artifacts, extra=extra)

    @staticmethod
    def _peft_check(run: RunDir, base_path: str, exact: bool) -> dict[str, Any]:
        """Load the adapter as `ftorch eval` will (plain transformers + PEFT, no Unsloth) and compare with the
        logits the child recorded from the trained model. Judged only when training ran in fp32 without 4-bit;
        otherwise the differences are recorded (a QLoRA adapter on a 16-bit base is close, not equal)."""
        import torch

        probe = torch.load(run.path / WORK_DIR / "probe.pt", weights_only=True)
        logits = probe.pop("logits")
        cuda = torch.cuda.is_available()
        device = "cuda" if cuda else "cpu"
        if exact:
            return publish.peft_reload_check(logits, probe, base_path, run.adapter, "float32", 1e-3, device)
        dtype = "bfloat16" if cuda and torch.cuda.is_bf16_supported() else "float32"  # as eval/local.py loads it
        return publish.peft_reload_check(logits, probe, base_path, run.adapter, dtype, None, device)


def _child_env(cfg: RunConfig, device: str, work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["UNSLOTH_COMPILE_LOCATION"] = str(work / "compiled_cache")  # not ./unsloth_compiled_cache
    env["UNSLOTH_DISABLE_STATISTICS"] = "1"  # no download from the hub just to count environments
    if device == "cuda" or not cfg.provider_as(UnslothProvider).allow_cpu:
        env["UNSLOTH_DISABLE_CPU_FALLBACK"] = "1"  # never a silent CPU run when a GPU was expected
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
