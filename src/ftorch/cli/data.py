"""`ftorch data check | split | convert | suspects`: rich tables for people, --json for machines. No torch import
(`suspects` imports it where it runs)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError, Problem
from .argtypes import add_max_line_bytes

MAX_ISSUES_SHOWN = 50


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="check, profile, split and convert datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = data_sub.add_parser("check", help="validate every line, profile tokens and duplicates, estimate cost; "
                                "exit 1 on errors, 2 when a line is too long to read")
    check.add_argument("path", type=Path)
    check.add_argument("--format", choices=("auto", "chat", "preference"), default="auto")
    check.add_argument("--model", help="tokenizer to count with: an OpenAI model id or a local model folder")
    check.add_argument("--max-length", type=int, metavar="N", help="report every example longer than N tokens "
                       "and what truncation cuts (default with a local --model: train.max_length's default)")
    check.add_argument("--epochs", default="auto", help="epochs for the OpenAI cost estimate (default: auto)")
    check.add_argument("--prices", type=Path, help="price table (default: the project's conf/prices/openai.yaml)")
    add_max_line_bytes(check)
    check.add_argument("--json", action="store_true")
    split = data_sub.add_parser("split", help="deterministic train/validation/test split by seed and content hash")
    split.add_argument("path", type=Path)
    split.add_argument("--ratios", default="0.8,0.1,0.1", help="train,validation,test (default 0.8,0.1,0.1)")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--out", type=Path, help="output folder (default: PATH's folder / STEM_split)")
    split.add_argument("--format", choices=("auto", "chat", "preference"), default="auto")
    add_max_line_bytes(split)
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
    add_max_line_bytes(convert)
    suspects = data_sub.add_parser("suspects", help="rank a run's training examples by how likely their label is "
                                   "wrong (RUN/suspects.jsonl); review them with ftorch review FILE --order suspects "
                                   "--run RUN")
    suspects.add_argument("run_dir", type=Path, metavar="RUN")
    suspects.add_argument("--by", choices=("both", "loss", "disagreement"), default="both",
                          help="loss: the per-token loss under the final adapter; disagreement: the tuned model's "
                          "own answer against the label (the headline metric); both (default): their mean")
    suspects.add_argument("--top", type=int, default=20, help="rows to show (all are written)")


def run(args) -> int:
    return {"check": check, "split": split, "convert": convert, "suspects": suspects}[args.data_command](args)


def suspects(args) -> int:
    from rich.table import Table

    from ..data import suspects as ranking
    from ..eval.suspect_signals import signals
    from ..run.rundir import RunDir
    from .console import err, out

    run = RunDir(args.run_dir)
    if not run.run_json.is_file():
        raise DataError(Problem(str(args.run_dir), "not a run folder (no run.json)", "give a finished run's folder"))
    cfg = run.config()
    from ..run.library_log import attach_log_file, detach_log_file

    library_log = attach_log_file(run)  # loading bars and library warnings to the run's train.log
    try:
        source, found = signals(run, cfg, answers=args.by != "loss", progress=lambda m: err.print(m, markup=False))
    finally:
        detach_log_file(library_log)
    ranked = ranking.rank(found, args.by)
    ranking.write(run.path / ranking.FILE, ranked, source, args.by)
    table = Table(title=f"suspect labels · {source} · by {args.by}", title_justify="left")
    for column in ("rank", "line", "score", "loss", "label", "model's answer"):
        table.add_column(column, overflow="fold")
    for s in ranked[: max(0, args.top)]:
        table.add_row(str(s.rank), str(s.line), f"{s.score:.3f}", f"{s.loss:.3f}", s.label,
                      s.answer if s.answer is not None else "", style="bold" if s.answer != s.label else None)
    out.print(table)
    out.print(f"{len(ranked)} examples ranked: {run.path / ranking.FILE}", markup=False)
    out.print(f"review them most suspect first: ftorch review {source} --order suspects --run {run.path}",
              markup=False)
    out.print("suspects are candidates for a person to check, not labels to delete", markup=False)
    return 0


def check(args) -> int:
    from ..data.checks import detect_format
    from ..data.report import inspect_file
    from ..data.tokens import counter_for, is_openai_model

    path = _existing(args.path)
    fmt = detect_format(path, args.max_line_bytes) if args.format == "auto" else args.format
    prices = _prices(args.prices) if args.model and is_openai_model(args.model) else None
    family = prices.family(args.model) if prices else None
    counter = counter_for(args.model, family[1] if family else None)
    max_length = getattr(args, "max_length", None)
    if max_length is None and args.model and not is_openai_model(args.model):
        from ..config.schema import TrainConfig

        max_length = TrainConfig().max_length  # a local model: what `train` would cut to by default
    report = inspect_file(path, fmt, counter, max_length, max_line_bytes=args.max_line_bytes)
    cost = None
    if prices is not None:
        from ..data.cost import estimate

        stats = report.profile.token_stats() or {"total": 0}
        cost = estimate(args.model, report.profile.examples, int(stats["total"]), args.epochs, prices)
        if report.profile.examples < 10:
            report.issues.append(_few_for_openai(path, report.profile.examples))
    if args.json:
        print(json.dumps({"file": str(path), "format": fmt, "ok": not report.errors,
                          "tokenizer": {"name": counter.tokenizer, "exact": counter.exact, "note": counter.note},
                          "max_length": max_length, "truncated": report.truncated, "losing_trained": report.losing,
                          "profile": report.profile.to_dict(), "cost": cost.to_dict() if cost else None,
                          "issues": [i.to_dict() for i in report.issues]}, indent=2))
    else:
        _print_check(report, cost)
    if any(i.code == "line_too_long" for i in report.errors):  # part of the file could not even be read
        return 2
    return 1 if report.errors else 0


def _few_for_openai(path: Path, count: int):
    from ..data.checks import Issue

    return Issue(str(path), 0, "too_few_examples", f"{count} examples: OpenAI fine-tuning needs at least 10")


def _print_check(report, cost) -> None:
    from rich.table import Table

    from .console import out

    out.rule(f"{report.path} · {report.fmt}")
    if report.issues:
        table = Table(title=f"{len(report.errors)} errors, {len(report.warnings)} warnings", title_justify="left")
        for column in ("line", "severity", "code", "message"):
            table.add_column(column, overflow="fold")
        for issue in report.issues[:MAX_ISSUES_SHOWN]:
            color = "red" if issue.severity == "error" else "yellow"
            table.add_row(str(issue.line or "-"), f"[{color}]{issue.severity}[/]", issue.code, issue.message)
        out.print(table)
        if len(report.issues) > MAX_ISSUES_SHOWN:
            out.print(f"... and {len(report.issues) - MAX_ISSUES_SHOWN} more (use --json for all)")
    profile = report.profile.to_dict()
    table = Table(title="profile", show_header=False, title_justify="left")
    table.add_row("examples", str(profile["examples"]))
    if profile["turns"]:
        table.add_row("messages per example", "min {min} · median {median:g} · max {max}".format(**profile["turns"]))
    if profile["tokens"]:
        table.add_row("tokens per example", "min {min} · median {median:g} · p95 {p95} · max {max}".format(
            **profile["tokens"]))
        table.add_row("tokens in all", f"{profile['tokens']['total']:,}")
    table.add_row("with a system prompt", f"{100 * profile['system_prompt_share']:.0f}%")
    table.add_row("duplicates", f"{profile['exact_duplicates']} exact, {profile['near_duplicates']} up to case/space")
    if report.max_length:
        losing = (f" · {report.losing} lose trained tokens: train refuses them unless train.allow_truncation=true"
                  if report.losing else "")
        table.add_row("longer than max_length", f"{report.truncated} of {profile['examples']} (max_length "
                      f"{report.max_length}){losing}")
    counter = report.counter
    table.add_row("tokenizer", f"{counter.tokenizer}" + ("" if counter.exact else f" · [yellow]{counter.note}[/]"))
    out.print(table)
    if cost is not None:
        table = Table(title=f"OpenAI cost estimate · prices as of {cost.as_of}", show_header=False,
                      title_justify="left")
        table.add_row("model", f"{cost.model} ({cost.family or 'no price known'})")
        table.add_row("epochs", f"{cost.epochs}" + (" (auto, as OpenAI chooses)" if cost.epochs_auto else ""))
        table.add_row("billed tokens", f"{cost.billed_tokens:,} (estimated)")
        table.add_row("cost", f"${cost.usd:,.2f}" if cost.usd is not None
                      else "unknown: add the model to the price table")
        out.print(table)
    verdict = "[red]errors: fix them before training[/]" if report.errors else "[green]ok[/]"
    out.print(verdict)


def split(args) -> int:
    from rich.table import Table

    from ..data.checks import detect_format
    from ..data.split import split_file
    from .console import out

    path = _existing(args.path)
    ratios = _ratios(args.ratios)
    fmt = detect_format(path, args.max_line_bytes) if args.format == "auto" else args.format
    out_dir = args.out or path.parent / f"{path.stem}_split"
    result = split_file(path, out_dir, ratios, args.seed, fmt, args.max_line_bytes)
    if args.json:
        print(json.dumps(result.manifest, indent=2))
        return 0
    table = Table(title=f"split of {path} (seed {args.seed})", title_justify="left")
    for column in ("split", "examples", "file"):
        table.add_column(column)
    for split_name, target in result.outputs.items():
        table.add_row(split_name, str(result.counts[split_name]), str(target))
    out.print(table)
    out.print(f"manifest: {out_dir / 'split_manifest.json'}")
    return 0


def convert(args) -> int:
    from ..data.convert import convert as run_convert
    from ..data.convert import write_chat
    from .console import err, out

    path = _existing(args.path)
    kind = "preference" if args.source == "prompt-chosen-rejected" else "chat"
    out_path = args.out or path.with_name(f"{path.stem}.{kind}.jsonl")
    converted = run_convert(path, args.source, system=args.system, prompt_column=args.prompt_column,
                            completion_column=args.completion_column, max_line_bytes=args.max_line_bytes)
    if converted.problems and not args.skip_invalid:
        raise DataError(converted.problems, hint="fix the source, or pass --skip-invalid to leave those records out")
    write_chat(converted, out_path)
    for problem in converted.problems:
        err.print(f"skipped {problem.render()}", markup=False)
    for warning in converted.warnings:
        err.print(f"warning: {warning}", markup=False)
    out.print(f"wrote {len(converted.examples)} {kind} examples to {out_path}"
              + (f" ({len(converted.problems)} skipped)" if converted.problems else ""))
    return 0


def _existing(path: Path) -> Path:
    """`path`, or exit 2 saying why it cannot be read: missing, a folder, a FIFO, a device."""
    from ..data.lines import check_file

    return check_file(path)


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3:
        raise DataError(Problem("--ratios", f"expected three numbers like 0.8,0.1,0.1, got {text!r}"))
    return parts[0], parts[1], parts[2]


def _prices(path: Path | None):
    from ..data.cost import PriceTable, price_table_path

    return PriceTable.load(path or price_table_path())
