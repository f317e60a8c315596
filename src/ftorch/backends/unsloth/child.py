"""The Unsloth training process: `python -m ftorch.backends.unsloth.child RUN_DIR` (started by
ftorch.backends.unsloth.backend, which says why it is a separate process).

It imports unsloth before anything that imports transformers, trains with FastLanguageModel + TRL's
SFTTrainer, or the preference method's TRL trainer (ftorch.backends.hf.preference), as
RUN_DIR/unsloth/request.json says, saves the adapter, checks that it reloads through Unsloth, records the probe
logits for the parent's plain-PEFT check, runs the optional exports, and reports how it ended the way every
training child does (backends/child.py: RUN_DIR/child_result.json and the exit code).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import BackendError, FtorchError, MissingExtra, Problem
from ...run.library_log import attach_log_file, detach_log_file
from ...run.rundir import RunDir
from .. import child


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m ftorch.backends.unsloth.child RUN_DIR", file=sys.stderr)
        return 2
    run = RunDir(Path(argv[0]))
    child.raise_interrupt_on_sigterm()
    try:
        _import_unsloth()  # first: Unsloth patches transformers/TRL as they are imported
        outcome = _train_logged(run, json.loads((run.path / "unsloth" / "request.json").read_text()))
    except KeyboardInterrupt:
        child.report(run.path, "interrupted")
        return 130
    except FtorchError as exc:
        child.report_error(run.path, exc)
        return exc.exit_code
    except Exception as exc:  # a failure inside Unsloth/TRL: the traceback goes to stderr and train.log
        text = traceback.format_exc()
        print(text, file=sys.stderr)
        run.append_log(text)
        first = str(exc).splitlines()[0] if str(exc) else ""
        error = BackendError(Problem("provider=unsloth", f"training failed: {type(exc).__name__}: {first}",
                                     f"the traceback is above and in {run.log}"))
        child.report_error(run.path, error)
        return 1
    child.report(run.path, "succeeded", **outcome)
    return 0


def _import_unsloth() -> None:
    try:
        import unsloth  # noqa: F401
    except NotImplementedError as exc:  # no accelerator, and the CPU fallback is off
        raise BackendError(Problem("provider=unsloth", f"Unsloth found no GPU it can use: {str(exc).splitlines()[0]}",
                                   "use provider=peft on this machine, or provider.allow_cpu=true for Unsloth's "
                                   "CPU path (and leave UNSLOTH_DISABLE_CPU_FALLBACK unset)")) from None
    except Exception as exc:  # torchvision operators, a CUDA build that does not match the driver...
        from .backend import INSTALL_HINT

        first = str(exc).splitlines()[0] if str(exc) else ""
        raise MissingExtra(Problem("provider=unsloth", f"`import unsloth` failed: {type(exc).__name__}: {first}",
                                   INSTALL_HINT)) from None


def _train_logged(run: RunDir, request: dict[str, Any]) -> dict[str, Any]:

    handler = attach_log_file(run)
    _quiet_console()
    try:
        return _train(run, request)
    finally:
        detach_log_file(handler)


def _quiet_console() -> None:
    """attach_log_file lowers the library loggers to INFO for train.log; the console handlers that Unsloth and
    transformers 5.17 set up would then print every INFO record. Keep the console at warnings."""
    for name in ("transformers", "peft", "trl", "ftorch", ""):
        for handler in logging.getLogger(name).handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.WARNING)


def _train(run: RunDir, request: dict[str, Any]) -> dict[str, Any]:
    from importlib.metadata import version

    import torch
    from unsloth import FastLanguageModel

    from ...data.report import check_data
    from ..hf import loading, publish
    from ..hf.loop import train_and_publish

    cfg = run.config()
    inputs, path, device = request["inputs"], request["model_path"], request["device"]
    load = {**inputs["from_pretrained"], "load_in_4bit": request["load_in_4bit"],
            "dtype": getattr(torch, request["dtype"])}
    with loading.loading(path, "model"):
        model, tokenizer = FastLanguageModel.from_pretrained(model_name=path, **load)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not cfg.train.is_preference:  # preference trainers find the answers' tokens from the prompt/answer split
        loading.ensure_training_chat_template(tokenizer, path, cfg.train.assistant_only_loss, trl_masks=True)
    with loading.lora_targets_checked(model, inputs["get_peft_model"]["target_modules"]):
        model = FastLanguageModel.get_peft_model(model, **inputs["get_peft_model"])

    data = check_data(cfg.data)
    precision = request["precision"]
    def build():
        if cfg.train.is_preference:
            from ..hf import preference

            run.append_log(f"method {cfg.train.method} through {preference.TRL_TRAINER[cfg.train.method]}")
            return preference.make_trainer(cfg.train.method, inputs["preference"], model, tokenizer, data, run,
                                           device, precision)
        return _sft_trainer(inputs["sft"], model, tokenizer, data, run, device, precision)

    # TRL's preference trainers add a frozen "ref" copy beside the LoRA they are given: publish the trained one only
    def publish_adapter(trainer) -> dict[str, Any]:
        only_trained = {"selected_adapters": ["default"]} if "ref" in getattr(model, "peft_config", {}) else {}

        def write_adapter(folder: Path) -> None:
            model.save_pretrained(str(folder), **only_trained)
            tokenizer.save_pretrained(str(folder))

        publish.publish_adapter(run, write_adapter)  # a kill leaves the old adapter/ or the new one, never half of one
        trainer.optimizer = None  # room for the reload check's second copy of the model
        if device == "cuda":
            torch.cuda.empty_cache()
        check = _reload_check(FastLanguageModel, model, tokenizer, run, load, request)
        run.append_log(f"reload check (Unsloth): {check}")
        return check

    done = train_and_publish(run, request["resume_from"], build, publish_adapter, progress=False)
    metrics, trainable, total, check = done.metrics, done.trainable, done.total, done.reload_check
    exports = _exports(model, tokenizer, run, inputs["exports"])
    artifacts = {"adapter": str(run.adapter), "checkpoints": str(run.checkpoints)}
    artifacts.update({name: e["path"] for name, e in exports.items() if e["status"] == "succeeded"})
    return {"metrics": metrics, "artifacts": artifacts,
            "extra": {"method": cfg.train.method, "trainable_params": trainable, "total_params": total,
                      "device": device, "precision": precision,
                      "weights_dtype": request["dtype"], "load_in_4bit": request["load_in_4bit"],
                      "reload_check": check, "unsloth_exports": exports,
                      "unsloth": {"unsloth": version("unsloth"), "unsloth_zoo": version("unsloth_zoo"),
                                  "transformers": version("transformers"), "trl": version("trl")}}}


def _sft_trainer(sft: dict[str, Any], model, tokenizer, data, run: RunDir, device: str, precision: str):
    """TRL's SFTTrainer (Unsloth's, once imported) on the chat conversations, TRL tokenizing them itself."""
    import dataclasses
    from importlib.metadata import version

    from trl import SFTConfig, SFTTrainer

    from datasets import Dataset

    from ..hf import callbacks

    unknown = sorted(set(sft) - {f.name for f in dataclasses.fields(SFTConfig)})
    if unknown:
        raise BackendError(Problem("provider=unsloth", f"TRL {version('trl')} in this environment has no SFTConfig "
                                   f"field {', '.join(unknown)}", "rebuild it with: ftorch setup unsloth --force"))
    args = SFTConfig(output_dir=str(run.checkpoints), use_cpu=device == "cpu", bf16=precision == "bf16",
                     fp16=precision == "fp16", **sft)
    train_ds = Dataset.from_list([{"messages": e["messages"]} for e in data.splits["train"].examples])
    eval_ds = (Dataset.from_list([{"messages": e["messages"]} for e in data.splits["validation"].examples])
               if "validation" in data.splits else None)
    return SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                      processing_class=tokenizer, callbacks=[callbacks.metrics_callback(run)])


def _reload_check(fast_model, trained, tokenizer, run: RunDir, load: dict[str, Any],
                  request: dict[str, Any]) -> dict[str, Any]:
    """Unsloth's own reload path (FastLanguageModel.from_pretrained on the adapter folder loads its base the
    same way, then the adapter) must reproduce the trained model and differ from the base. fp32 is judged to
    1e-3; 16-bit and 4-bit runs to 2% of the largest logit (another kernel order moves the last bits)."""

    from ..hf import publish

    inputs, expected = publish.probe_logits(trained, tokenizer)
    save_probe(run, {**inputs, "logits": expected})
    reloaded, _ = fast_model.from_pretrained(model_name=str(run.adapter), **load)
    _, got = publish.probe_logits(reloaded, tokenizer)
    with reloaded.disable_adapter():
        _, base = publish.probe_logits(reloaded, tokenizer)
    del reloaded
    exact = request["dtype"] == "float32" and not request["load_in_4bit"]
    atol = 1e-3 if exact else 2e-2 * max(1.0, expected.abs().max().item())
    result = publish.compare_reload(expected, got, base, atol)
    if not result["matches_trained"]:
        raise BackendError(Problem(str(run.adapter), f"the saved adapter, reloaded with Unsloth, does not reproduce "
                                   f"the trained model (max logit difference {result['max_abs_diff_vs_trained']:.3g}, "
                                   f"tolerance {atol:.3g})"))
    return result


def save_probe(run: RunDir, probe: dict[str, Any]) -> Path:
    """RUN/unsloth/probe.pt (the probe inputs and the trained model's logits), written to a temporary file made
    exclusively beside it and renamed into place: a symlink planted at probe.pt is replaced, never written
    through, and one planted at unsloth/ is refused (UnsafePath)."""
    import torch

    from ...safe_io import atomic_writer, ensure_dir

    path = ensure_dir(run.path / "unsloth") / "probe.pt"
    with atomic_writer(path, binary=True) as handle:
        torch.save(probe, handle)
    return path


def _exports(model, tokenizer, run: RunDir, wanted: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Optional exports after the adapter is safe on disk. A failed export is reported (stderr, train.log,
    run.json "exports") but does not fail the run: the adapter, its main artifact, is there."""
    exports: dict[str, dict[str, Any]] = {}
    if wanted["merged_16bit"]:
        target = run.path / "merged"
        exports["merged_16bit"] = _export(run, "merged 16-bit", target, lambda: model.save_pretrained_merged(
            str(target), tokenizer, save_method="merged_16bit"))
    if wanted["gguf"]:
        target = run.path / "gguf"

        def gguf() -> None:
            _no_system_installs()
            model.save_pretrained_gguf(str(target), tokenizer, quantization_method=wanted["gguf"])

        exports["gguf"] = _export(run, f"GGUF {wanted['gguf']}", target, gguf)
    return exports


def _no_system_installs() -> None:
    """Unsloth's GGUF export builds llama.cpp, and installs the system packages that build lacks with apt-get
    (sudo when not root), taking a stdin with no terminal as consent: seen here, it installed
    libcurl4-openssl-dev and upgraded curl. ftorch never changes the system behind a user's back."""
    import unsloth_zoo.llama_cpp as llama_cpp

    if not callable(getattr(llama_cpp, "install_package", None)):
        raise RuntimeError("this unsloth_zoo cannot be kept from installing system packages, so ftorch does not "
                           "run its GGUF export; export from merged/ with llama.cpp yourself")

    def refuse(package, *args, **kwargs):
        raise RuntimeError(f"building llama.cpp needs the system package(s) {package}, and ftorch does not let "
                           f"Unsloth install them: install them yourself (e.g. apt-get install {package}) and "
                           "train again, or convert a merged export (provider.export_merged_16bit) with llama.cpp")

    llama_cpp.install_package = refuse


def _export(run: RunDir, what: str, target: Path, save: Callable[[], Any]) -> dict[str, Any]:
    try:
        save()
    except Exception as exc:  # NotImplementedError on CPU 4-bit, llama.cpp that cannot be built offline...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = f"{what} export failed: {type(exc).__name__}: {first}"
        run.append_log(f"{message}\n{traceback.format_exc()}")
        print(f"warning: {message} (the adapter is saved; the run still succeeds)", file=sys.stderr, flush=True)
        return {"status": "failed", "path": None, "error": message}
    run.append_log(f"{what} export saved in {target}")
    return {"status": "succeeded", "path": str(target), "error": None}


if __name__ == "__main__":
    sys.exit(main())
