"""`ftorch data check | split | convert`: rich tables for people, --json for machines. No torch import."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from .commands import err, out
from .errors import DataError, Problem

MAX_ISSUES_SHOWN = 50


def check(args) -> int:
    from .data.checks import detect_format
    from .data.report import inspect_file
    from .data.tokens import counter_for, is_openai_model

    path = _existing(args.path)
    fmt = detect_format(path) if args.format == "auto" else args.format
    prices = _prices(args.prices) if args.model and is_openai_model(args.model) else None
    family = prices.family(args.model) if prices else None
    counter = counter_for(args.model, family[1] if family else None)
    max_length = getattr(args, "max_length", None)
    if max_length is None and args.model and not is_openai_model(args.model):
        from .schema import TrainConfig

        max_length = TrainConfig().max_length  # a local model: what `train` would cut to by default
    report = inspect_file(path, fmt, counter, max_length)
    cost = None
    if prices is not None:
        from .data.cost import estimate

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
    return 1 if report.errors else 0


def _few_for_openai(path: Path, count: int):
    from .data.checks import Issue

    return Issue(str(path), 0, "too_few_examples", f"{count} examples: OpenAI fine-tuning needs at least 10")


def _print_check(report, cost) -> None:
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
    from .data.checks import detect_format
    from .data.split import split_file

    path = _existing(args.path)
    ratios = _ratios(args.ratios)
    fmt = detect_format(path) if args.format == "auto" else args.format
    out_dir = args.out or path.parent / f"{path.stem}_split"
    result = split_file(path, out_dir, ratios, args.seed, fmt)
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
    from .data.convert import convert as run_convert
    from .data.convert import write_chat

    path = _existing(args.path)
    kind = "preference" if args.source == "prompt-chosen-rejected" else "chat"
    out_path = args.out or path.with_name(f"{path.stem}.{kind}.jsonl")
    converted = run_convert(path, args.source, system=args.system, prompt_column=args.prompt_column,
                            completion_column=args.completion_column)
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
    if path.is_dir():
        raise DataError(Problem(str(path), "is a directory, not a data file", "give the path of a file inside it"))
    if not path.is_file():
        raise DataError(Problem(str(path), "file not found"))
    return path


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3:
        raise DataError(Problem("--ratios", f"expected three numbers like 0.8,0.1,0.1, got {text!r}"))
    return parts[0], parts[1], parts[2]


def _prices(path: Path | None):
    from .compose import find_project
    from .data.cost import PriceTable

    if path is None:
        path = find_project().conf_dir / "prices" / "openai.yaml"
    return PriceTable.load(path)
