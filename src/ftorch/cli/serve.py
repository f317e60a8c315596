"""`ftorch serve RUN_DIR`: vLLM's OpenAI-compatible server with the run's adapter (the command: ftorch.serve)."""

from __future__ import annotations

from pathlib import Path

from .argtypes import port


def add_parser(sub) -> None:
    serve = sub.add_parser("serve", help="vLLM's OpenAI-compatible server with the run's LoRA adapter (GPU)")
    serve.add_argument("run_dir", type=Path)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port, default=8000, help="0 to 65535 (default 8000)")
    serve.add_argument("--print", dest="print_only", action="store_true", help="print the command, start nothing")


def run(args) -> int:
    from ..serve import serve
    from .console import out

    return serve(args, out)
