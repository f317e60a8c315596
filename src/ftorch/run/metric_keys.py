"""The names of the numbers run.json keeps under "metrics", built in one place, and which way is better for each.

The evaluation writes them (eval/finished.py, eval/preference.py), training writes its final figures
(run/metrics_log.py), and a sweep's objective reads them back with their direction (sweep/objective.py): one
registry, so a new metric's direction is declared where its name is, never guessed from the name."""

from __future__ import annotations

from typing import Literal

from ..eval.heldout import SYSTEMS
from ..eval.metrics import TASK_METRICS

Direction = Literal["maximize", "minimize"]

FINAL_LOSS = "final_loss"
FINAL_EVAL_LOSS = "final_eval_loss"
GENERAL_CHANGE = "general_change"  # derived by the sweep objective: tuned minus base on the general suite

# figures that are not per-system task metrics: name -> direction
_FIXED: dict[str, Direction] = {
    FINAL_LOSS: "minimize", FINAL_EVAL_LOSS: "minimize", GENERAL_CHANGE: "maximize",
    "eval_judged_preference": "maximize",
    "eval_tuned_reward_accuracy": "maximize", "eval_tuned_reward_margin": "maximize",
    # a preference run's last training figures (run/metrics_log.PREFERENCE_NAMES)
    "final_train_reward_accuracy": "maximize", "final_train_reward_margin": "maximize",
    "final_train_reward_chosen": "maximize", "final_train_reward_rejected": "minimize",
}
# per-system figures: eval_<system>_<suffix> -> direction
_PER_SYSTEM: dict[str, Direction] = {
    "preference_accuracy": "maximize", "rejected_rate": "minimize",
}


def final_train(name: str) -> str:
    """The last training value of a preference figure: final_train_reward_margin."""
    return f"final_train_{name}"


def task(system: str, metric: str) -> str:
    """A task metric's mean for one system: eval_tuned_field_accuracy."""
    return f"eval_{system}_{metric}"


def general(system: str) -> str:
    """The general instruction suite's prompt-level score: eval_general_base / eval_general_tuned."""
    return f"eval_general_{system}"


def harmful(system: str) -> str:
    """Harmful compliance on the red-team prompts: eval_harmful_base / eval_harmful_tuned."""
    return f"eval_harmful_{system}"


def preference_accuracy(system: str) -> str:
    return f"eval_{system}_preference_accuracy"


def rejected_rate(system: str) -> str:
    return f"eval_{system}_rejected_rate"


JUDGED_PREFERENCE = "eval_judged_preference"  # tuned over the strongest prompt, judge calibrated by people
REWARD_ACCURACY = "eval_tuned_reward_accuracy"
REWARD_MARGIN = "eval_tuned_reward_margin"

# short names a sweep may use for a run.json key
ALIASES = {"preference_accuracy": preference_accuracy("tuned")}


def concrete(name: str) -> str:
    """The run.json key an objective's name stands for (an alias resolved; any other name as it is)."""
    return ALIASES.get(name, name)


def direction(name: str) -> Direction | None:
    """Which way is better for a run.json metric, from the registry; None for a name ftorch does not define."""
    name = concrete(name)
    if name in _FIXED:
        return _FIXED[name]
    for system in ("general", "harmful"):
        if name.startswith(f"eval_{system}_") and name.removeprefix(f"eval_{system}_") in ("base", "tuned"):
            return "maximize" if system == "general" else "minimize"
    for system in SYSTEMS:
        suffix = name.removeprefix(f"eval_{system}_")
        if suffix == name:
            continue
        if suffix in TASK_METRICS:
            return "maximize" if TASK_METRICS[suffix].higher_is_better else "minimize"
        if suffix in _PER_SYSTEM:
            return _PER_SYSTEM[suffix]
    return None


def known() -> list[str]:
    """Every name `direction` knows, for did-you-mean hints."""
    names = [*_FIXED, *ALIASES]
    names += [f(s) for f in (general, harmful) for s in ("base", "tuned")]
    names += [f"eval_{s}_{m}" for s in SYSTEMS for m in [*TASK_METRICS, *_PER_SYSTEM]]
    return names
