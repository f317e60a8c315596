"""Registry: provider.name -> backend class, imported only when asked for (keeps the CLI fast)."""

from __future__ import annotations

import dataclasses
import importlib

from ..errors import ConfigError, MissingExtra, Problem, did_you_mean
from .base import Backend, Plan, Result

REGISTRY: dict[str, str] = {
    "peft": "ftorch.backends.peft.backend:PeftBackend",
    "openai": "ftorch.backends.openai.backend:OpenAIBackend",
    "axolotl": "ftorch.backends.axolotl.backend:AxolotlBackend",
    "unsloth": "ftorch.backends.unsloth.backend:UnslothBackend",
    "together": "ftorch.backends.together.backend:TogetherBackend",
}

# how to get what a provider's module imports, when it is missing
INSTALL_HINTS: dict[str, str] = {
    "peft": "peft, trl and transformers come with ftorch itself: reinstall it (make install, or pip install -e .)",
    "openai": "install it: pip install 'ftorch[openai]'",
    "axolotl": "build its environment: ftorch setup axolotl (or make axolotl-env)",
    "unsloth": "build its environment: ftorch setup unsloth, then run .venv-unsloth/bin/ftorch",
    "together": "install it: pip install 'ftorch[together]'",
}


def get_backend(name: str) -> Backend:
    if name not in REGISTRY:
        hint = did_you_mean(name, REGISTRY)
        raise ConfigError(Problem("provider.name", f"unknown provider '{name}'",
                                  f"{hint + ' ' if hint else ''}available: {', '.join(REGISTRY)}"))
    module_name, _, class_name = REGISTRY[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingExtra(Problem(f"provider={name}", f"cannot import {exc.name}",
                                   INSTALL_HINTS[name])) from None
    return getattr(module, class_name)()


def make_plan(cfg, data, *, resuming: bool = False) -> Plan:
    """The provider's plan, after refusing any setting it would not use (mapped or refused, never ignored).
    `resuming`: the plan of a run that already started (ftorch resume), whose provider job may already exist."""
    from .base import RESUMING
    from .settings import refuse_unused, refuse_without_weights

    backend = get_backend(cfg.provider.name)
    ignored = refuse_unused(cfg, backend.name, backend.unused_settings)
    if backend.weights == "hosted":
        ignored = sorted([*ignored, *refuse_without_weights(cfg, backend.name)])
    token = RESUMING.set(resuming)
    try:
        return dataclasses.replace(backend.plan(cfg, data), ignored=ignored)
    finally:
        RESUMING.reset(token)


__all__ = ["Backend", "Plan", "Result", "REGISTRY", "get_backend", "make_plan"]
