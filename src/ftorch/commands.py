"""The CLI's subcommands: thin glue between argparse, the runner and rich output."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .compose import find_project
from .errors import EXIT_INTERRUPTED, FtorchError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(exc: FtorchError) -> None:
    err.print(f"[bold red]ftorch: {exc.title}[/]")
    err.print(exc.render(), markup=False)


def plan(args) -> int:
    from omegaconf import OmegaConf

    from . import runner
    from .compose import recipe_files

    project = find_project()
    args.overrides = recipe_files(project, args.overrides)
    prepared = runner.prepare(project, args.overrides)
    from .secrets import scrub_tree

    resolved = scrub_tree(prepared.config.model_dump(mode="json"))
    if args.json:
        print(json.dumps({"recipe": prepared.recipe, "config": resolved, "plan": scrub_tree(prepared.plan.to_dict())},
                         indent=2))
        return 0
    out.rule(f"ftorch plan · recipe={prepared.recipe} · provider={prepared.plan.provider}")
    out.print(OmegaConf.to_yaml(resolved).rstrip(), markup=False)
    out.rule("what would run")
    table = Table(show_header=False, box=None)
    for split, chat in prepared.data.splits.items():
        table.add_row(f"data.{split}", f"{len(chat.examples)} examples  {chat.path}")
    for key, value in prepared.plan.estimates.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    out.print(table)
    for note in prepared.plan.notes:
        out.print(f"- {note}", markup=False)
    out.rule(f"backend input ({prepared.plan.provider})")
    out.print(OmegaConf.to_yaml(scrub_tree(prepared.plan.inputs)).rstrip(), markup=False)
    for warning in prepared.data.warnings:
        out.print(f"[yellow]data warning[/] {warning.render()}")
    out.print("nothing was written; run it with: ftorch train " + " ".join(args.overrides or ["recipe=quickstart"]))
    return 0


def train(args) -> int:
    from . import runner, tracking
    from .backends import get_backend
    from .compose import plan_trials, recipe_files
    from .launch import launch

    project = find_project()
    args.overrides = recipe_files(project, args.overrides)
    multirun, trials = plan_trials(project, args.overrides, args.multirun)

    for overrides in trials:  # every trial's config and data are checked before the first one starts
        prepared = runner.prepare(project, overrides)
        get_backend(prepared.config.provider.name).preflight(prepared.config)
        tracking.check_installed(prepared.config)
    if multirun:
        out.print(f"sweep: {len(trials)} trials checked" if len(trials) > 1 else "sweep: base config checked")
    outcomes, sweep_dir = launch(project, args.overrides, multirun)
    return _report(outcomes, sweep_dir)


def resume(args) -> int:
    from . import runner
    from .errors import RunInterrupted

    try:
        result = runner.resume(args.run_dir)
    except (KeyboardInterrupt, RunInterrupted):
        return _interrupted(args.run_dir)
    out.print(f"[green]{result.status}[/] {args.run_dir}")
    _print_evaluation(args.run_dir)
    return 0


def _interrupted(run_dir: Path) -> int:
    """What run.json now says after Ctrl-C or SIGTERM (the same words, so console and record agree)."""
    from .rundir import RunDir

    try:
        record = RunDir(run_dir).read()
    except (OSError, FtorchError):
        record = {"status": "interrupted", "error": None}
    err.print(f"[red]{record['status']}[/] {run_dir}")  # the reason was printed when it was recorded
    return EXIT_INTERRUPTED


def evaluate(args) -> int:
    from .errors import RunInterrupted
    from .evaluation import config_of, evaluate_run, summary_lines
    from .rundir import RunDir
    from .runner import _sigterm_as_interrupt

    run = RunDir(args.run_dir)
    try:
        with run.owned("evaluate"), _sigterm_as_interrupt():
            report = evaluate_run(run, config_of(run, args.overrides), console=err)
    except (KeyboardInterrupt, RunInterrupted):
        return _interrupted(args.run_dir)
    for line in summary_lines(report):
        out.print(line, markup=False)
    out.print(f"report: {run.read()['evaluation']['dir']}/report.md")
    return 0


def setup(args) -> int:
    from .setup_envs import setup_axolotl

    python = setup_axolotl(find_project().root, python=args.python, force=args.force)
    out.print(f"[green]Axolotl environment ready[/] {python}")
    out.print("train with it: ftorch train provider=axolotl")
    return 0


def cancel(args) -> int:
    from .backends import get_backend
    from .evaluation import config_of
    from .rundir import RunDir

    run = RunDir(args.run_dir)
    with run.owned("cancel"):
        cfg = config_of(run, [])
        status = get_backend(cfg.provider.name).cancel(run, cfg)
    out.print(f"job {run.read().get('job_id')}: {status}")
    return 0


def export(args) -> int:
    from .export.commands import export as run_export

    return run_export(args, out, err)


def chat(args) -> int:
    from .chat import chat as run_chat

    return run_chat(args)


def serve(args) -> int:
    from .serve import serve as run_serve

    return run_serve(args, out)


def _print_evaluation(run_dir: Path) -> None:
    from .rundir import RunDir

    record = RunDir(run_dir).observed()
    evaluation = record.get("evaluation") or {}
    if evaluation.get("status") == "succeeded":
        from .eval.preference import console_line

        line = console_line(Path(evaluation["dir"]))
        if line:
            out.print(line, markup=False)
        out.print(f"verdict: {evaluation['verdict']}", markup=False)
        out.print(f"report: {evaluation['dir']}/report.md")
    elif evaluation:
        out.print(f"evaluation: {evaluation.get('status')} {evaluation.get('error') or evaluation.get('reason') or ''}",
                  markup=False)


def _report(outcomes, sweep_dir: Path | None) -> int:
    for outcome in outcomes:
        if outcome.error is not None and isinstance(outcome.error, FtorchError):
            print_error(outcome.error)
    if sweep_dir is not None and any((sweep_dir / o.run_dir.name / "run.json").is_file() for o in outcomes):
        from .sweep.report import write_report

        written = write_report(sweep_dir)
        out.print(f"leaderboard: {written['md']}  plot: {written['png']}"
                  + (f"  best: {written['best']}" if "best" in written else ""))
    if sweep_dir is not None:
        table = Table(title=f"sweep {sweep_dir}")
        for column in ("run dir", "status", "final loss"):
            table.add_column(column)
        for outcome in outcomes:
            loss = (outcome.metrics or {}).get("final_loss")
            table.add_row(str(outcome.run_dir), outcome.status, f"{loss:.4f}" if loss is not None else "-")
        out.print(table)
    else:
        for outcome in outcomes:
            color = "green" if outcome.status == "succeeded" else "red"
            if (outcome.run_dir / "run.json").is_file():
                _print_evaluation(outcome.run_dir)
            out.print(f"[{color}]{outcome.status}[/] run dir: {outcome.run_dir}")
    if any(o.interrupted for o in outcomes):
        return EXIT_INTERRUPTED
    failed = [o for o in outcomes if o.status != "succeeded"]
    if failed:
        codes = [o.error.exit_code for o in failed if isinstance(o.error, FtorchError)]
        return max(codes) if codes else 1
    return 0

