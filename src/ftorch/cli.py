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
  ftorch train recipe=quickstart sweep=optuna       (then: ftorch sweep report runs/quickstart/sweeps/<ts>)
  ftorch plan recipe=quickstart
  ftorch eval runs/quickstart/2026-11-25_15-04-05_123456 eval.limit=20
  ftorch resume runs/quickstart/2026-11-25_15-04-05_123456
  ftorch data check data/train.jsonl --model gpt-4.1-mini-2025-04-14
  ftorch data split data/all.jsonl --ratios 0.8,0.1,0.1 --seed 0
  ftorch data convert alpaca.json --from alpaca
  ftorch data convert pairs.jsonl --from prompt-chosen-rejected
  ftorch setup axolotl                              (then: ftorch train provider=axolotl ...)
  ftorch review data/train.jsonl                    (then: ftorch review data/train.jsonl --export)
  ftorch review runs/quickstart/2026-11-25_15-04-05_123456
  ftorch export runs/quickstart/<ts> --to gguf --type q8_0     (or --to merged, --to ollama)
  ftorch chat runs/quickstart/<ts> --compare
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

    setup = sub.add_parser("setup",
                           help="build a provider's own environment (axolotl: .venv-axolotl, ~2-3 min, 4.3 GB)")
    setup.add_argument("target", choices=("axolotl",))
    setup.add_argument("--force", action="store_true", help="delete the environment and build it again")
    setup.add_argument("--python", help="interpreter to make the venv with (default: the one behind ftorch's venv)")

    cancel = sub.add_parser("cancel", help="cancel a run's remote job (provider=openai)")
    cancel.add_argument("run_dir", type=Path)

    evaluate = sub.add_parser("eval", help="evaluate a finished run again (a new eval/<timestamp>/ each time)",
                              description="Only eval.* settings can change, e.g. eval.limit=20 eval.few_shot=3.")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("overrides", nargs="*", metavar="eval.KEY=VALUE")

    _add_use_commands(sub)

    runs = sub.add_parser("runs", help="list runs and sweeps")
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    ls = runs_sub.add_parser("ls", help="runs and sweeps under a folder, with status and headline numbers")
    ls.add_argument("dir", type=Path, nargs="?", default=Path("runs"))

    sweep = sub.add_parser("sweep", help="leaderboard of a sweep, or resume it")
    sweep_sub = sweep.add_subparsers(dest="sweep_command", metavar="ACTION", required=True)
    report = sweep_sub.add_parser("report", help="leaderboard.csv/.md, sweep.png and best.yaml in the sweep folder")
    report.add_argument("sweep_dir", type=Path)
    resume_sweep = sweep_sub.add_parser("resume", help="continue an interrupted sweep in its own folder")
    resume_sweep.add_argument("sweep_dir", type=Path)

    data = sub.add_parser("data", help="check, profile, split and convert datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = data_sub.add_parser("check", help="validate every line, profile tokens and duplicates, estimate cost; "
                                "exit 1 on errors")
    check.add_argument("path", type=Path)
    check.add_argument("--format", choices=("auto", "chat", "preference"), default="auto")
    check.add_argument("--model", help="tokenizer to count with: an OpenAI model id or a local model folder")
    check.add_argument("--max-length", type=int, metavar="N", help="report every example longer than N tokens "
                       "and what truncation cuts (default with a local --model: train.max_length's default)")
    check.add_argument("--epochs", default="auto", help="epochs for the OpenAI cost estimate (default: auto)")
    check.add_argument("--prices", type=Path, help="price table (default: conf/prices/openai.yaml)")
    check.add_argument("--json", action="store_true")
    split = data_sub.add_parser("split", help="deterministic train/validation/test split by seed and content hash")
    split.add_argument("path", type=Path)
    split.add_argument("--ratios", default="0.8,0.1,0.1", help="train,validation,test (default 0.8,0.1,0.1)")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--out", type=Path, help="output folder (default: PATH's folder / STEM_split)")
    split.add_argument("--format", choices=("auto", "chat", "preference"), default="auto")
    split.add_argument("--json", action="store_true")
    convert = data_sub.add_parser("convert", help="Alpaca, ShareGPT or CSV -> chat JSONL; "
                                  "prompt/chosen/rejected -> preference JSONL")
    convert.add_argument("path", type=Path)
    convert.add_argument("--from", dest="source", choices=("alpaca", "sharegpt", "csv", "prompt-chosen-rejected"),
                         required=True)
    convert.add_argument("--out", type=Path, help="output file (default: STEM.chat.jsonl beside the input)")
    convert.add_argument("--system", help="a system prompt added to every example that has none")
    convert.add_argument("--prompt-column", default="prompt")
    convert.add_argument("--completion-column", default="completion")
    convert.add_argument("--skip-invalid", action="store_true", help="leave out bad records instead of stopping")
    review = sub.add_parser("review", help="a local page to accept, reject and edit examples, or to read and "
                            "check an evaluation's answers", description="A data file: review its examples "
                            "(decisions go to STEM.review.jsonl beside it). A run folder: its latest evaluation.")
    review.add_argument("path", type=Path, metavar="DATA.jsonl|RUN_DIR")
    review.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    review.add_argument("--no-browser", action="store_true", help="print the URL, do not open a browser")
    review.add_argument("--export", action="store_true", help="write STEM.curated.jsonl (accepted + edited) and "
                        "STEM.preference.jsonl (edits and negatives, OpenAI DPO format), then exit")
    review.add_argument("--format", choices=("auto", "chat", "preference"), default="auto")
    review.add_argument("--model", help="tokenizer to count with (as in `ftorch data check`)")
    review.add_argument("--max-length", type=int, metavar="N", help="flag examples longer than N tokens")
    return parser


def _add_use_commands(sub) -> None:
    """export, chat and serve: using what a run trained (src/ftorch/export/, chat.py, serve.py)."""
    from .export import GGUF_TYPES, KINDS, MERGED_DTYPES

    export = sub.add_parser("export", help="merged model, GGUF or Ollama Modelfile from a run, verified against "
                            "its adapter (a new RUN_DIR/export/<kind>/ each time)")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--to", choices=KINDS, required=True)
    export.add_argument("--dtype", choices=MERGED_DTYPES, default="float32", help="merged: weights' dtype "
                        "(default float32)")
    export.add_argument("--type", dest="quant", choices=GGUF_TYPES, default="q8_0", help="gguf/ollama: tensor "
                        "type (default q8_0)")
    export.add_argument("--limit", type=int, metavar="N", help="verify on the first N held-out prompts")
    export.add_argument("--no-verify", dest="verify", action="store_false", help="write only; no comparison")
    export.add_argument("--min-identical", type=float, metavar="F", help="share of answers identical to the "
                        "adapter's required (default: 1.0 fp32, 0.95 16-bit, unchecked quantized)")
    export.add_argument("--max-metric-delta", type=float, metavar="F", help="largest |export - adapter| on the "
                        "headline metric, 0-1 (default: 0 fp32, 0.02 16-bit)")
    export.add_argument("--max-metric-drop", type=float, metavar="F", help="largest drop of the headline "
                        "metric, 0-1 (default: 0.05 q8_0, 0.15 4-bit)")

    chat = sub.add_parser("chat", help="chat with a run's tuned model in the terminal (/system /reset /save /quit)")
    chat.add_argument("run_dir", type=Path)
    chat.add_argument("--compare", action="store_true", help="answer each message with the base model too")
    chat.add_argument("--max-new-tokens", type=int, default=256)

    serve = sub.add_parser("serve", help="vLLM's OpenAI-compatible server with the run's LoRA adapter (GPU)")
    serve.add_argument("run_dir", type=Path)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--print", dest="print_only", action="store_true", help="print the command, start nothing")


def main(argv: list[str] | None = None) -> int:
    from .secrets import guard_console, remember_argv

    remember_argv(sys.argv[1:] if argv is None else argv)
    guard_console()  # nothing printed, tracebacks included, carries a secret
    args = build_parser().parse_args(argv)
    from . import commands  # imports rich; Hydra and torch only where a command needs them

    try:
        if args.command == "data":
            from . import data_commands

            return getattr(data_commands, args.data_command)(args)
        if args.command == "review":
            from .review.command import review

            return review(args)
        if args.command in ("runs", "sweep"):
            from . import runs_commands

            action = args.runs_command if args.command == "runs" else args.sweep_command
            return getattr(runs_commands, f"{args.command}_{action}")(args)
        return getattr(commands, "evaluate" if args.command == "eval" else args.command)(args)
    except FtorchError as exc:
        commands.print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get("FTORCH_DEBUG"):
            raise
        from .runner import DiskFull, _disk_full

        if _disk_full(exc):  # anywhere outside a run's supervision too (an evaluation, ftorch eval, a data command)
            full = DiskFull(f"the disk is full ({exc}); free some space and run the command again")
            commands.print_error(full)
            return full.exit_code
        traceback.print_exc()
        print("\nThis is a bug in ftorch; please report it with the traceback above.", file=sys.stderr)
        return 1


def _version() -> str:
    from . import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
