"""`ftorch plan`: the resolved, validated config and what would run. Writes nothing."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    plan = sub.add_parser("plan", help="print the resolved, validated config and what would run; touches nothing")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.add_argument("overrides", nargs="*", metavar="KEY=VALUE")


def run(args) -> int:
    from omegaconf import OmegaConf
    from rich.markup import escape
    from rich.table import Table

    from ..config.compose import find_project, recipe_files
    from ..config.conflicts import for_plan
    from ..run import lifecycle
    from ..secrets import scrub, scrub_tree
    from .console import out

    project = find_project()
    args.overrides = recipe_files(project, args.overrides)
    prepared = lifecycle.prepare(project, args.overrides)
    notes = prepared.plan.notes  # the backend's; the overridden settings are printed as warnings below
    overridden, prepared.plan = for_plan(project, prepared.cfg, prepared.overrides, prepared.config, prepared.data,
                                         prepared.plan)
    resolved = scrub_tree(prepared.config.model_dump(mode="json"))
    if args.json:
        print(json.dumps({"recipe": prepared.recipe, "config": resolved, "plan": scrub_tree(prepared.plan.to_dict()),
                          "overridden": scrub_tree([pair.to_dict() for pair in overridden])}, indent=2, default=str))
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
    for note in notes:
        out.print(f"- {note}", markup=False)
    out.rule(f"backend input ({prepared.plan.provider})")
    out.print(OmegaConf.to_yaml(scrub_tree(prepared.plan.inputs)).rstrip(), markup=False)
    for warning in prepared.data.warnings:
        out.print(f"[yellow]data warning[/] {warning.render()}")
    for pair in overridden:
        out.print(f"[yellow]setting overridden[/] {escape(scrub(pair.render()))}")
    out.print("nothing was written; run it with: ftorch train " + " ".join(args.overrides or ["recipe=quickstart"]))
    return 0
