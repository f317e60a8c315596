"""The `ftorch` command. Only argparse at import time: `ftorch --help` must stay instant."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from .errors import EXIT_INTERRUPTED, FtorchError

EPILOG = """examples:
  ftorch train recipe=quickstart train.lr=1e-4
  ftorch train -m recipe=quickstart train.lr=1e-4,2e-4
  ftorch plan recipe=quickstart
  ftorch resume runs/quickstart/2026-11-25_15-04-05_123456
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftorch", description="Declarative fine-tuning: one recipe in, "
                                     "a complete, reproducible, evaluated run out.", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ftorch {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser("train", help="compose a recipe, validate it, and run it",
                           description="Overrides are Hydra's: key=value, group=option, +new.key=value.")
    train.add_argument("-m", "--multirun", action="store_true", help="sweep: comma-separated values run as trials")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE")

    plan = sub.add_parser("plan", help="print the resolved, validated config and what would run; touches nothing")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.add_argument("overrides", nargs="*", metavar="KEY=VALUE")

    resume = sub.add_parser("resume", help="continue an interrupted or failed run from its last checkpoint")
    resume.add_argument("run_dir", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import commands  # the commands module imports Hydra, never torch

    try:
        return getattr(commands, args.command)(args)
    except FtorchError as exc:
        commands.print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        if os.environ.get("FTORCH_DEBUG"):
            raise
        traceback.print_exc()
        print("\nThis is a bug in ftorch; please report it with the traceback above.", file=sys.stderr)
        return 1


def _version() -> str:
    from . import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
