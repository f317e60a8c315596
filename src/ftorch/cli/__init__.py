"""The `ftorch` command. Only argparse at import time: `ftorch --help` must stay instant."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from ..errors import EXIT_INTERRUPTED, FtorchError

EPILOG = """examples:
  ftorch train recipe=quickstart train.lr=1e-4
  ftorch train -m recipe=quickstart train.lr=1e-4,2e-4
  ftorch train recipe=quickstart sweep=optuna       (then: ftorch sweep report runs/quickstart/sweeps/<ts>)
  ftorch curve recipe=quickstart fractions=0.25,0.5,1.0   (would more data help?)
  ftorch plan recipe=quickstart
  ftorch eval runs/quickstart/2026-11-25_15-04-05_123456 eval.limit=20
  ftorch resume runs/quickstart/2026-11-25_15-04-05_123456
  ftorch pull runs/together-quickstart/<ts>         (a provider=together run's adapter, then eval/chat/export)
  ftorch data check data/train.jsonl --model gpt-4.1-mini-2025-04-14
  ftorch data split data/all.jsonl --ratios 0.8,0.1,0.1 --seed 0
  ftorch data convert alpaca.json --from alpaca
  ftorch data convert pairs.jsonl --from prompt-chosen-rejected
  ftorch setup axolotl                              (then: ftorch train provider=axolotl ...)
  ftorch review data/train.jsonl                    (then: ftorch review data/train.jsonl --export)
  ftorch review runs/quickstart/2026-11-25_15-04-05_123456
  ftorch export runs/quickstart/<ts> --to gguf --type q8_0     (or --to merged, --to ollama)
  ftorch chat runs/quickstart/<ts> --compare
  ftorch cache ls                                   (then: ftorch cache clear answers)
"""


# One module per command, in the order `ftorch --help` lists them: each has add_parser(sub) and run(args), and
# imports nothing heavy at module level (rich, Hydra and torch are imported where a command runs).
COMMANDS = ("train", "plan", "resume", "setup", "cancel", "pull", "eval", "export", "chat", "serve", "runs", "sweep",
            "curve", "data", "review", "cache")
MODULES = {"eval": "evaluate"}  # `eval` is a builtin's name
# commands that load torch (in this process or a child): the thread policy goes into the environment before they run
LOADS_TORCH = frozenset({"train", "resume", "eval", "export", "chat", "serve", "sweep"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftorch", description="Declarative fine-tuning: one recipe in, "
                                     "a complete, reproducible, evaluated run out.", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ftorch {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        _module(name).add_parser(sub)
    return parser


def _module(command: str):
    return importlib.import_module(f".{MODULES.get(command, command)}", __name__)


def main(argv: list[str] | None = None) -> int:
    from ..secrets import guard_console, remember_argv

    remember_argv(sys.argv[1:] if argv is None else argv)
    guard_console()  # nothing printed, tracebacks included, carries a secret
    args = build_parser().parse_args(argv)
    try:
        if args.command in LOADS_TORCH:
            from ..threads import apply

            apply()  # before torch is imported: OpenMP reads its variables once, at load
        return _module(args.command).run(args)
    except FtorchError as exc:
        from .console import print_error

        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get("FTORCH_DEBUG"):
            raise
        from ..run.lifecycle import DiskFull, disk_full
        from .console import print_error

        if disk_full(exc):  # anywhere outside a run's supervision too (an evaluation, ftorch eval, a data command)
            full = DiskFull(f"the disk is full ({exc}); free some space and run the command again")
            print_error(full)
            return full.exit_code
        traceback.print_exc()
        print("\nThis is a bug in ftorch; please report it with the traceback above.", file=sys.stderr)
        return 1


def _version() -> str:
    from .. import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
