"""Mapped or refused: each backend names the settings it has no use for, and a run that sets one of them away
from the schema's default is a config error naming the key, never a setting silently ignored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, Problem

if TYPE_CHECKING:
    from ..config.schema import RunConfig

_ABSENT = object()


def unused_paths(unused: Mapping[str, str], defaults: dict | None = None) -> dict[str, str]:
    """The backend's declaration with `section.*` expanded to every leaf of that section of the schema."""
    from ..config.schema import RunConfig, defaults_tree

    defaults = defaults_tree(RunConfig) if defaults is None else defaults
    expanded: dict[str, str] = {}
    for path, why in unused.items():
        if path.endswith(".*"):
            prefix = path[:-2]
            expanded.update({leaf: why for leaf in _leaves(_get(defaults, prefix), prefix)})
        else:
            expanded[path] = why
    return expanded


def refuse_unused(cfg: RunConfig, provider: str, unused: Mapping[str, str]) -> list[str]:
    """ConfigError listing every unused setting that differs from its default (the provider's own default where it
    has one: provider=openai's eval.drift is false) with one problem each; else the unused settings' paths,
    expanded (what plan.json lists as `ignored`)."""
    from ..config.schema import RunConfig, defaults_tree

    defaults, values = defaults_tree(RunConfig), cfg.model_dump(mode="json")
    for dotted, value in type(cfg.provider).defaults.items():
        *parents, leaf = dotted.split(".")
        node = defaults
        for part in parents:
            node = node[part]
        node[leaf] = value
    paths = unused_paths(unused, defaults)
    problems = []
    for path, why in paths.items():
        value, default = _get(values, path), _get(defaults, path)
        if value is not _ABSENT and value != default:
            problems.append(Problem(path, f"{path}={_show(value)} has no effect with provider={provider}",
                                    f"{why}; remove it (default: {_show(default)})"))
    if problems:
        raise ConfigError(problems)
    return sorted(paths)


def refuse_without_weights(cfg: RunConfig, provider: str) -> list[str]:
    """A provider whose models stay hosted (weights="hosted") is evaluated through its API: every eval.* setting
    that measures the weights (schema.NEEDS_WEIGHTS: drift, lm-eval) is a ConfigError when it is on, never skipped.
    Returns those keys (plan.json's `ignored`)."""
    from ..config.schema import weights_only_settings

    keys = weights_only_settings()
    values = cfg.model_dump(mode="json")
    problems = [Problem(key, f"{key}={_show(value)} needs the model's weights, and provider={provider} is "
                        "evaluated through its API (the models stay hosted)",
                        f"remove it (off: {_show(_off(value))}); evaluate a local run for it, e.g. the same recipe "
                        "with provider=peft")
                for key in keys if (value := _get(values, key)) not in (False, None, [])]
    if problems:
        raise ConfigError(problems)
    return list(keys)


def _off(value: Any) -> Any:
    return False if isinstance(value, bool) else [] if isinstance(value, list) else None


def _get(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _ABSENT
        tree = tree[part]
    return tree


def _leaves(tree: Any, prefix: str) -> list[str]:
    if not isinstance(tree, dict):
        return [prefix]
    return [leaf for key, value in tree.items() for leaf in _leaves(value, f"{prefix}.{key}")]


def _show(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def refuse_train_fraction(cfg: RunConfig, provider: str) -> None:
    """A provider that hands the user's training file itself to its trainer (by path, not the checked examples)
    cannot train on a data.train_fraction subset: refused, never silently trained on the whole file."""
    if cfg.data.train_fraction < 1.0:
        raise ConfigError(Problem("data.train_fraction", f"provider={provider} trains on the file data.train names, "
                                  "whole: it cannot take a fraction of it",
                                  "run learning curves with provider=peft or provider=unsloth"))
