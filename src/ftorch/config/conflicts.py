"""Settings that override each other. `train.epochs=3` on the command line does nothing when the recipe sets
`train.max_steps: 24`, and nothing said so: the run trained 0.8 epochs. Each pair found here (max_steps cutting the
epochs short, a save_steps training never reaches, warmup as long as training, a constant schedule that has no
warmup, eval.limit above the examples there are) is named with both keys and where each was set, for `plan`, the
start of `train` and plan.json's notes.

Not reported: two settings made in the same place (one recipe, one command line: whoever wrote them saw both), or
a loser left at the schema's default (nobody asked for it), or a key the provider does not use (plan.ignored)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .load import SCHEMA_DEFAULTS, Origins

if TYPE_CHECKING:
    from ..backends.base import Plan
    from ..data.report import DataReport
    from .compose import Project
    from .schema import RunConfig


@dataclass(frozen=True)
class Setting:
    """One key's value and where it was set."""

    name: str  # the dotted key
    value: Any
    origin: str  # "command line", a recipe or conf/ file, or the schema's defaults (config.load.SCHEMA_DEFAULTS)

    def render(self) -> str:
        value = "null" if self.value is None else self.value
        return f"{self.name}={value} ({self.origin})"


@dataclass(frozen=True)
class Overridden:
    """`winner` keeps `loser` from taking effect as set; `effect` is what happens instead."""

    winner: Setting
    loser: Setting
    effect: str

    def render(self) -> str:
        return f"{self.loser.render()} is overridden by {self.winner.render()}: {self.effect}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def overridden_settings(config: RunConfig, data: DataReport, ignored: Iterable[str],
                        origins: Origins) -> list[Overridden]:
    """Every pair of settings in `config` where one silently undoes the other (see the module's docstring)."""
    skip = set(ignored)
    found = []
    for winner, loser, effect in _pairs(config, data):
        if winner in skip or loser in skip:
            continue
        pair = Overridden(_setting(config, winner, origins), _setting(config, loser, origins), effect)
        if pair.winner.origin != pair.loser.origin and pair.loser.origin != SCHEMA_DEFAULTS:
            found.append(pair)
    return found


def for_plan(project: Project, cfg: Any, overrides: list[str], config: RunConfig, data: DataReport,
             plan: Plan) -> tuple[list[Overridden], Plan]:
    """The overridden settings of a prepared run (`cfg` is its composed config), and its plan with them added to
    the notes plan.json keeps."""
    hydra = cfg.get("hydra") if hasattr(cfg, "get") else None
    choices = dict(hydra.runtime.choices) if hydra is not None else {}
    found = overridden_settings(config, data, plan.ignored, Origins(project, overrides, choices))
    notes = [f"setting overridden: {pair.render()}" for pair in found]
    return found, dataclasses.replace(plan, notes=[*plan.notes, *notes]) if notes else plan


def _pairs(config: RunConfig, data: DataReport) -> Iterator[tuple[str, str, str]]:
    """(winning key, overridden key, what happens) for each conflict in the values, wherever they were set."""
    if not config.train.picked_by_provider:  # provider=openai picking epochs or batch size: no steps to count
        yield from _train_pairs(config, data)
    yield from _eval_pairs(config, data)


def _train_pairs(config: RunConfig, data: DataReport) -> Iterator[tuple[str, str, str]]:
    from ..backends.steps import step_estimate

    train = config.train
    planned = step_estimate(train, data.count("train"))
    total, per_epoch = planned["total_steps"], planned["steps_per_epoch"]
    by_epochs = step_estimate(train.model_copy(update={"max_steps": None}), data.count("train"))["total_steps"]
    length = "train.max_steps" if train.max_steps else "train.epochs"
    if train.max_steps and train.max_steps < by_epochs:
        yield ("train.max_steps", "train.epochs", f"training stops after {_steps(total)}, {total / per_epoch:.2g} "
               f"epochs instead of {train.epochs:g} ({_steps(by_epochs)})")
    if train.save_steps > total:
        yield (length, "train.save_steps", f"training ends at step {total}, before the first checkpoint (step "
               f"{train.save_steps}): an interrupted run starts again from step 0")
    warmup = math.ceil(train.warmup_ratio * total)
    if train.warmup_ratio > 0 and train.scheduler == "constant":
        yield ("train.scheduler", "train.warmup_ratio", "a constant schedule has no warmup (for one: "
               "train.scheduler=constant_with_warmup)")
    elif train.warmup_ratio > 0 and warmup >= total:
        yield (length, "train.warmup_ratio", f"warmup takes all {_steps(total)}: the learning rate never reaches "
               f"train.lr={train.lr:g}")


def _eval_pairs(config: RunConfig, data: DataReport) -> Iterator[tuple[str, str, str]]:
    split, limit = config.eval.split, config.eval.limit
    if config.eval.enabled and limit is not None and split in data.splits and limit > data.count(split):
        yield (f"data.{split}", "eval.limit", f"data.{split} has {data.count(split)} examples: all of them are "
               f"scored, not {limit}")


def _steps(count: int) -> str:
    return f"{count} step" if count == 1 else f"{count} steps"


def _setting(config: RunConfig, key: str, origins: Origins) -> Setting:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    origin = "command line" if origins.override_of(key) is not None else origins.file_of(key)
    return Setting(key, value, origin)
