"""`ftorch serve RUN_DIR`: vLLM's OpenAI-compatible server on the run's base model with its LoRA adapter, where
vLLM is installed and a CUDA GPU is present; elsewhere an error naming what is missing. `--print` shows the
command without starting anything."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys

from .errors import EXIT_USER, FtorchError, MissingExtra, Problem
from .export.source import Source, open_run

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's accepted --max-lora-rank values


class ServeError(FtorchError):
    """An adapter vLLM cannot serve as it is: exit 2, with what to serve instead."""

    exit_code = EXIT_USER
    title = "cannot serve"


def lora_name(source: Source) -> str:
    recipe = re.sub(r"[^a-z0-9_.-]+", "-", (source.record.recipe or "run").lower()).strip("-") or "run"
    return f"ftorch-{recipe}"


def command(source: Source, base_path: str, host: str, port: int, python: str = sys.executable) -> list[str]:
    """The vLLM server command: base model, LoRA enabled, the adapter served under lora_name(source)."""
    config = json.loads((source.adapter / "adapter_config.json").read_text())
    rank = int(config.get("r") or 8)
    max_rank = next((r for r in LORA_RANKS if r >= rank), None)
    if max_rank is None:
        raise ServeError(Problem(str(source.adapter), f"LoRA rank {rank} is above vLLM's largest ({LORA_RANKS[-1]})",
                                 "ftorch export RUN_DIR --to merged, and serve the merged folder"))
    return [python, "-m", "vllm.entrypoints.openai.api_server", "--model", base_path, "--enable-lora",
            "--lora-modules", f"{lora_name(source)}={source.adapter.resolve()}", "--max-lora-rank", str(max_rank),
            "--host", host, "--port", str(port)]


def missing() -> list[str]:
    """What `serve` needs and this machine lacks."""
    lacking = []
    if importlib.util.find_spec("vllm") is None:
        lacking.append("vLLM is not installed (pip install vllm, on a machine with a CUDA GPU)")
    try:
        import torch

        if not torch.cuda.is_available():
            lacking.append("no CUDA GPU is visible to torch (torch.cuda.is_available() is False)")
    except ImportError:
        lacking.append("torch is not installed")
    return lacking


def serve(args, out) -> int:
    source = open_run(args.run_dir, purpose="serve")
    if source.hosted:
        out.print(f"this run's model is served by provider={source.provider}: call {source.record.fine_tuned_model}",
                  markup=False)
        return 0
    config = json.loads((source.adapter / "adapter_config.json").read_text())
    argv = command(source, source.base_path(), args.host, args.port)
    shown = shlex.join(argv)
    if args.print_only:
        out.print(shown, markup=False)
        return 0
    lacking = missing()
    if lacking:
        raise MissingExtra([Problem("ftorch serve", reason) for reason in lacking],
                           hint=f"the command it would run: {shown}\nwithout a GPU: ftorch chat {args.run_dir}, or "
                                f"ftorch export {args.run_dir} --to ollama")
    if config.get("modules_to_save"):
        out.print(f"[yellow]note[/] the adapter also trains {config['modules_to_save']} in full; vLLM's LoRA "
                  "support may refuse it: then serve a merged export (ftorch export --to merged)")
    out.print(f"serving {lora_name(source)} at http://{args.host}:{args.port}/v1 : {shown}", markup=False)
    return subprocess.call(argv)


__all__ = ["command", "missing", "serve"]
