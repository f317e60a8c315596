"""provider=unsloth: Unsloth's FastLanguageModel, its LoRA wrapper and TRL's SFTTrainer, on one GPU (or,
with provider.allow_cpu, Unsloth's CPU fallback).

Training runs in a child process, `python -m ftorch.backends.unsloth_child RUN_DIR`, for three reasons:
- `import unsloth` patches transformers, PEFT and TRL for the whole process (TrainingArguments, SFTTrainer,
  model forwards on GPU) and wants to come before transformers, which the ftorch process has long imported
  by then. In a child it comes first, and its patches end with the child: the evaluation after training,
  the next trials of a sweep and the check that the adapter loads with plain PEFT run on stock libraries.
- GPU memory goes back when the child exits, so a sweep's next trial starts clean.
- Unsloth's generated code (unsloth_compiled_cache/) goes into the run directory, not the working directory.
The cost is one more interpreter start and the library imports (~5-10 s). The child reads config.yaml and
request.json from the run directory and writes unsloth/result.json; this module turns that back into a
Result or the same FtorchError, and Ctrl-C / SIGTERM into an interrupted run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, ConfigError, DataError, FtorchError, MissingExtra, Problem
from ..rundir import write_json_atomic
from . import _hf
from .base import Plan, Result, no_remote_job
from .peft import _lora_args, _sft_args
from .steps import step_estimate

if TYPE_CHECKING:
    from ..data.report import DataReport
    from ..rundir import RunDir
    from ..schema import RunConfig

WORK_DIR = "unsloth"  # inside the run directory: request.json, result.json, probe.pt, compiled_cache/
STOP_GRACE_S = 60
# Unsloth's save_pretrained_gguf quantizations that need no importance matrix (unsloth/save.py ALLOWED_QUANTS).
GGUF_METHODS = ("not_quantized", "fast_quantized", "quantized", "f32", "bf16", "f16", "q8_0", "q4_k_m", "q5_k_m",
                "q2_k", "q2_k_l", "q3_k_l", "q3_k_m", "q3_k_s", "q4_0", "q4_1", "q4_k_s", "q4_k", "q5_k", "q5_0",
                "q5_1", "q5_k_s", "q6_k", "q3_k_xs")
INSTALL_HINT = ("create its environment with `bash scripts/setup_unsloth_env.sh` and run ftorch from "
                ".venv-unsloth/bin/ftorch (by hand: pip install torch==2.13.0 first, then `pip install -c "
                "constraints.txt torch==2.13.0 unsloth unsloth_zoo`, then `pip uninstall -y torchvision`: the "
                "torchvision that unsloth pulls from PyPI does not load beside a CPU torch and breaks "
                "`import unsloth`)")
ERRORS: dict[str, type[FtorchError]] = {cls.__name__: cls for cls in (ConfigError, DataError, BackendError,
                                                                       MissingExtra)}


def _unsloth_args(cfg: RunConfig) -> dict[str, Any]:
    """The one place ftorch's names become FastLanguageModel's. Device-dependent values (dtype, whether 4-bit
    loading really happens) are resolved when the run starts and recorded in run.json."""
    lora = _lora_args(cfg)
    checkpointing = cfg.train.gradient_checkpointing
    return {
        "from_pretrained": {"max_seq_length": cfg.train.max_length,
                            "load_in_4bit": cfg.provider.load_in_4bit or cfg.train.quantization == "4bit",
                            "revision": cfg.model.revision, "trust_remote_code": cfg.model.trust_remote_code},
        "get_peft_model": {"r": lora["r"], "lora_alpha": lora["lora_alpha"], "lora_dropout": lora["lora_dropout"],
                           "target_modules": lora["target_modules"], "modules_to_save": lora["modules_to_save"],
                           "bias": lora["bias"], "random_state": cfg.train.seed,
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


def _sft_config_args(cfg: RunConfig) -> dict[str, Any]:
    """peft's SFTConfig translation, less checkpointing: get_peft_model above owns it (TRL's own would wrap
    the layers a second time; TRL 1.x defaults gradient_checkpointing to True, and 1.15 has no
    activation_checkpointing), and without Liger: Unsloth patches the same layers with its own kernels."""
    args = _sft_args(cfg)
    args.pop("activation_checkpointing", None)
    args["gradient_checkpointing"] = False
    args["use_liger_kernel"] = False
    return args


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
    unused_settings = {
        "train.allow_truncation": "ftorch's truncation check runs in provider=peft's preprocessing; Unsloth "
                                  "truncates long examples at train.max_length",
    }

    def plan(self, cfg: RunConfig, data: DataReport) -> Plan:
        problems = []
        if cfg.data.format != "chat":
            problems.append(Problem("data.format", f"provider=unsloth trains on chat data (SFT); "
                                    f"{cfg.data.format} (DPO) training is not available through ftorch yet",
                                    "preference methods (train.method=dpo, orpo, kto, simpo) run on provider=peft"))
        if cfg.train.num_gpus > 1:
            problems.append(Problem("train.num_gpus", "provider=unsloth trains on one GPU",
                                    "use provider=axolotl for several GPUs"))
        if cfg.train.quantization == "4bit" and not cfg.provider.load_in_4bit:
            problems.append(Problem("train.quantization", "4bit contradicts provider.load_in_4bit=false",
                                    "with provider=unsloth, 4-bit loading is provider.load_in_4bit"))
        if cfg.train.fused_loss != "auto":
            problems.append(Problem("train.fused_loss", "has no effect with provider=unsloth (Unsloth picks its own "
                                    "loss kernel)", "leave it at auto"))
        gguf = cfg.provider.export_gguf
        if gguf is not None and gguf.lower() not in GGUF_METHODS:
            problems.append(Problem("provider.export_gguf", f"unknown GGUF quantization '{gguf}'",
                                    f"one of: {', '.join(GGUF_METHODS)}"))
        if problems:
            raise ConfigError(problems)
        _hf.check_model_reference(cfg.model)

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
                  "train.precision=bf16, packing off; slow, meant for tests") if cfg.provider.allow_cpu else
                 "without a CUDA GPU the run is refused (provider.allow_cpu=false)",
                 "trains in a child process (python -m ftorch.backends.unsloth_child), so Unsloth's patches "
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
        if cfg.provider.export_merged_16bit:
            notes.append("after training: merged 16-bit weights in merged/ (save_pretrained_merged)")
        if gguf:
            notes.append(f"after training: GGUF {gguf} in gguf/ (save_pretrained_gguf; on first use Unsloth clones "
                         "and builds llama.cpp under ~/.unsloth, which needs network and a C++ toolchain; ftorch "
                         "stops it from installing system packages). A failed export is reported, the run stands")
        if any(m.get("weight") == 0 for e in data.splits["train"].examples for m in e["messages"]):
            notes.append("warning: 'weight: 0' on assistant messages is not honoured by provider=unsloth; "
                         "those turns are trained on")
        return Plan(
            provider=self.name, config=cfg, data=data,
            inputs={"model": {"name": cfg.model.name, "tiny": cfg.model.tiny is not None, "dtype": cfg.model.dtype},
                    "precision": cfg.train.precision,  # as asked; resolved on the device at run time
                    **_unsloth_args(cfg), "sft": _sft_config_args(cfg),
                    "exports": {"merged_16bit": cfg.provider.export_merged_16bit, "gguf": gguf}},
            estimates=estimates,
            notes=notes,
        )

    def cancel(self, run: RunDir, cfg: RunConfig) -> str:
        return no_remote_job(self.name, run)

    def preflight(self, cfg: RunConfig) -> None:
        """Installed, loadable, and a GPU (or allow_cpu), decided without importing unsloth (which would patch
        this process)."""
        if importlib.util.find_spec("unsloth") is None or importlib.util.find_spec("unsloth_zoo") is None:
            raise MissingExtra(Problem("provider=unsloth", f"unsloth is not installed in this environment "
                                       f"({sys.executable})", INSTALL_HINT))
        problem = _torchvision_problem()
        if problem is not None:
            raise problem
        if not cfg.provider.allow_cpu and not _hf.cuda_available():
            raise _no_gpu_error()

    def run(self, plan: Plan, run: RunDir) -> Result:
        return self._train(plan, run, resume_from=None)

    def resume(self, plan: Plan, run: RunDir) -> Result:
        return self._train(plan, run, resume_from=_hf.resume_point(run))

    def _train(self, plan: Plan, run: RunDir, resume_from: str | None) -> Result:
        from .peft import _precision

        cfg = plan.config
        self.preflight(cfg)  # again: a resume may happen elsewhere
        device = "cuda" if _hf.cuda_available() else "cpu"
        if device == "cpu" and cfg.train.quantization == "4bit":
            _hf.require_cuda_for_4bit(device)
        precision = _precision(cfg.train.precision, device)
        dtype = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[precision]
        if cfg.model.dtype != "auto":
            dtype = cfg.model.dtype
        four_bit = plan.inputs["from_pretrained"]["load_in_4bit"] and device == "cuda"
        work = run.path / WORK_DIR
        work.mkdir(parents=True, exist_ok=True)
        for stale in ("result.json", "probe.pt"):
            (work / stale).unlink(missing_ok=True)
        request = {"inputs": _for_device(plan.inputs, device), "model_path": _hf.model_path(cfg.model),
                   "device": device, "precision": precision, "dtype": dtype, "load_in_4bit": four_bit,
                   "resume_from": resume_from}
        write_json_atomic(work / "request.json", request)
        checkpointing = request["inputs"]["get_peft_model"]["use_gradient_checkpointing"]
        run.append_log(f"unsloth child: model {request['model_path']} on {device}, weights {dtype}, "
                       f"4-bit {four_bit}, precision {precision}, gradient checkpointing {checkpointing}")
        code = _run_child(run, _child_env(cfg, device, work))
        outcome = json.loads((work / "result.json").read_text()) if (work / "result.json").is_file() else None
        if outcome is None or outcome.get("status") != "succeeded":
            raise _child_failure(outcome, code, run)

        exact = dtype == "float32" and not four_bit
        check = self._peft_check(run, request["model_path"], exact)
        run.append_log(f"plain PEFT reload check: {check}")
        (work / "probe.pt").unlink()  # up to ~10 MB of logits for a large vocabulary, needed only for the check
        extra = {**outcome["extra"], "peft_reload_check": check, "resume_from": resume_from,
                 "gradient_checkpointing": checkpointing}
        return Result(status="succeeded", metrics=outcome["metrics"], artifacts=outcome["artifacts"], extra=extra)

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
            return _hf.peft_reload_check(logits, probe, base_path, run.adapter, "float32", 1e-3, device)
        dtype = "bfloat16" if cuda and torch.cuda.is_bf16_supported() else "float32"  # as eval/local.py loads it
        return _hf.peft_reload_check(logits, probe, base_path, run.adapter, dtype, None, device)


def _child_env(cfg: RunConfig, device: str, work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["UNSLOTH_COMPILE_LOCATION"] = str(work / "compiled_cache")  # not ./unsloth_compiled_cache
    env["UNSLOTH_DISABLE_STATISTICS"] = "1"  # no download from the hub just to count environments
    if device == "cuda" or not cfg.provider.allow_cpu:
        env["UNSLOTH_DISABLE_CPU_FALLBACK"] = "1"  # never a silent CPU run when a GPU was expected
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _run_child(run: RunDir, env: dict[str, str]) -> int:
    """Run the child to its end. Ctrl-C reaches it through the terminal; SIGTERM (RunInterrupted here) is passed
    on; either way it gets STOP_GRACE_S to stop before it is killed, and the interruption is re-raised."""
    command = [sys.executable, "-m", "ftorch.backends.unsloth_child", str(run.path)]
    # nothing in it may wait for input; it holds the run's lock too, so an orphaned child still owns the run
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, pass_fds=run.held_fds())
    run.update(child_pid=process.pid)
    try:
        return process.wait()
    except BaseException:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        raise


def _child_failure(outcome: dict | None, code: int, run: RunDir) -> BaseException:
    if code in (130, -signal.SIGINT, -signal.SIGTERM) and (outcome is None or outcome.get("status") == "interrupted"):
        return KeyboardInterrupt()
    error = (outcome or {}).get("error")
    if error is None:
        return BackendError(Problem("provider=unsloth", f"the Unsloth training process exited with code {code} "
                                    "without a result", f"see {run.log} and the output above"))
    problems = [Problem(p["where"], p["message"], p.get("hint")) for p in error["problems"]]
    return ERRORS.get(error["type"], BackendError)(problems, hint=error.get("hint"))
