"""`ftorch train`: compose a recipe, check every trial's config and data, then run it (or sweep it)."""

from __future__ import annotations


def add_parser(sub) -> None:
    train = sub.add_parser("train", help="compose a recipe, validate it, and run it",
                           description="Overrides are Hydra's: key=value, group=option, +new.key=value.")
    train.add_argument("-m", "--multirun", action="store_true", help="sweep: comma-separated values run as trials")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE")


def run(args) -> int:
    from .console import report_outcomes

    outcomes, sweep_dir = checked_launch(args.overrides, args.multirun)
    return report_outcomes(outcomes, sweep_dir)


def checked_launch(overrides: list[str], multirun: bool):
    """Every trial checked, then launched: (the outcomes, the sweep directory of a multirun). `ftorch curve` too."""
    from rich.markup import escape

    from ..backends import get_backend
    from ..config.compose import find_project, plan_trials, recipe_files
    from ..config.conflicts import for_plan
    from ..run import lifecycle, tracking
    from ..run.launch import launch
    from ..secrets import scrub
    from .console import err, out

    project = find_project()
    overrides = recipe_files(project, overrides)
    multirun, trials, composed = plan_trials(project, overrides, multirun)

    checked = []
    for trial in trials:  # every trial's config and data are checked before the first one starts
        prepared = (lifecycle.prepare(project, trial) if multirun else
                    lifecycle.prepare_composed(project, composed, trial, dict(composed.hydra.runtime.choices)))
        get_backend(prepared.config.provider.name).preflight(prepared.config)
        tracking.check_installed(prepared.config)
        overridden, prepared.plan = for_plan(project, prepared.cfg, prepared.overrides, prepared.config,
                                             prepared.data, prepared.plan)  # warned now, kept in plan.json
        for pair in overridden:
            err.print(f"[yellow]setting overridden[/] {escape(scrub(pair.render()))}")
        checked.append(prepared)
    if multirun:
        out.print(f"sweep: {len(trials)} trials checked" if len(trials) > 1 else "sweep: base config checked")
    return launch(project, overrides, multirun, checked)
