"""Composed DictConfig -> validated RunConfig. Every problem is reported at once, each naming
the key, the file that set it, what was expected and, where one is close, a did-you-mean."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, Problem, did_you_mean
from .compose import Project
from .providers import PROVIDER_NAMES
from .schema import RENAMED, RunConfig, known_keys

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails


# Origins.of for a key no file and no override sets: its value is the schema's default
SCHEMA_DEFAULTS = "the schema's defaults (src/ftorch/config/schema.py)"


@dataclass
class Origins:
    """Where a key's value came from: the command line, or the last file in Hydra's own defaults list (the order
    Hydra merged the recipe, the group files, conf/config.yaml and the schema's defaults in) that sets it."""

    project: Project
    overrides: list[str]
    choices: dict[str, str | None] = field(default_factory=dict)

    def of(self, dotted: str) -> str:
        item = self.override_of(dotted)
        return f"command line ({item})" if item is not None else self.file_of(dotted)

    def override_of(self, dotted: str) -> str | None:
        """The command-line override that sets this key (or a section holding it), if one does."""
        groups = set(self.choices)
        for item in self.overrides:
            key = item.split("=", 1)[0].lstrip("+~")
            if key in groups:
                continue  # a group choice (model=tiny), not a value
            if key == dotted or dotted.startswith(key + "."):
                return item
        return None

    def file_of(self, dotted: str) -> str:
        """The last file merged that sets this key: a recipe, a conf/ file, or SCHEMA_DEFAULTS."""
        from omegaconf import OmegaConf

        absent = object()
        for package, node, shown in reversed(self._sources):  # the last one merged wins
            inner = dotted if package in ("", "_global_") else (
                dotted[len(package) + 1:] if dotted.startswith(package + ".") else None)
            if inner and OmegaConf.select(node, inner, default=absent, throw_on_resolution_failure=False) is not absent:
                return shown
        return "config"

    @cached_property
    def _sources(self) -> list[tuple[str, Any, str]]:
        """(package, config without its defaults list, file to show) in the order Hydra merges them."""
        from hydra import initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra
        from hydra.types import RunMode

        from .compose import composed_sources, use_project

        recorded = composed_sources(self.project, self.overrides)
        if recorded is not None:  # recorded by the composition of these overrides: no second one
            return [(package, node, self._show(path, source)) for package, node, path, source in recorded]
        use_project(self.project, self.overrides)
        GlobalHydra.instance().clear()
        sources = []
        try:
            with initialize_config_dir(config_dir=str(self.project.conf_dir), version_base="1.3"):
                loader = GlobalHydra.instance().config_loader()
                for default in loader.compute_defaults_list("config", self.overrides, RunMode.RUN).defaults:
                    if default.config_path is None or (default.package or "").startswith("hydra"):
                        continue
                    loaded = loader.repository.load_config(default.config_path)  # type: ignore[attr-defined]
                    if loaded is None:
                        continue
                    node = loaded.config.copy()
                    node.pop("defaults", None)
                    sources.append((default.package or "", node, self._show(default.config_path, loaded.path)))
        except Exception:  # noqa: BLE001  the overrides themselves are broken: only the command line can be named
            return []
        finally:
            GlobalHydra.instance().clear()
        return sources

    def _show(self, config_path: str, source: str) -> str:
        from .compose import RECIPE_GROUP, RECIPE_PATHS

        group, _, name = config_path.rpartition("/")
        if group == RECIPE_GROUP and name in RECIPE_PATHS:
            path = RECIPE_PATHS[name]
        elif source.startswith("file://"):
            path = Path(source.removeprefix("file://")) / f"{config_path}.yaml"
        else:  # the schema's defaults, stored by compose._register
            return SCHEMA_DEFAULTS
        try:
            return str(path.relative_to(self.project.root))
        except ValueError:  # a recipe file outside the project
            return str(path)


def load(cfg: Any, origins: Origins) -> RunConfig:
    """Validate a composed config (with or without its `hydra` node) into a RunConfig."""
    from omegaconf import OmegaConf
    from pydantic import ValidationError

    missing = list(_missing_keys(cfg))
    problems = [Problem(f"{origins.of(k)}: {k}", "missing required value (???)",
                        f"set it in the recipe or on the command line, e.g. {k}=...") for k in missing]
    resolved, unresolved = _resolve(cfg, skip=set(missing))
    problems += [Problem(f"{origins.of(k)}: {k}", msg) for k, msg in unresolved]
    from .. import secrets  # noted now, so every message, artifact and log line from here on is scrubbed

    secrets.remember_config(resolved, OmegaConf.to_container(cfg, resolve=False))
    problems += [Problem(secrets.scrub(f"{origins.of(k)}: {k}"), msg, hint)
                 for k, msg, hint in [*secrets.key_env_problems(resolved),
                                      *secrets.recorded_value_problems(resolved, origins.choices)]]
    if problems:
        raise ConfigError(problems)
    try:
        return RunConfig.model_validate(resolved)
    except ValidationError as exc:
        found = [validation_problem(err, origins) for err in exc.errors()]
        raise ConfigError(list({p.render(): p for p in found}.values())) from None


def plain_dict(cfg: Any) -> dict[str, Any]:
    """A composed config as plain containers, interpolations unresolved, without its hydra node."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=False)
    if not isinstance(plain, dict):  # a composed config is always a mapping at its root
        raise ConfigError(Problem("config", f"the composed config is a {type(plain).__name__}, not a mapping"))
    plain.pop("hydra", None)
    return {str(key): value for key, value in plain.items()}


def _missing_keys(cfg: Any, prefix: str = ""):
    from omegaconf import DictConfig, ListConfig, OmegaConf

    keys: Iterable[Any] = cfg.keys() if isinstance(cfg, DictConfig) else range(len(cfg))
    for key in keys:
        if prefix == "" and key == "hydra":
            continue
        dotted = f"{prefix}{key}"
        if OmegaConf.is_missing(cfg, key):
            yield dotted
            continue
        child = cfg._get_node(key)
        if isinstance(child, (DictConfig, ListConfig)) and not OmegaConf.is_interpolation(cfg, key):
            yield from _missing_keys(child, dotted + ".")


def _resolve(cfg: Any, skip: set[str]) -> tuple[dict, list[tuple[str, str]]]:
    """Resolve interpolations key by key so a broken ${...} is reported with its key."""
    from omegaconf import OmegaConf

    plain = plain_dict(cfg)
    errors: list[tuple[str, str]] = []

    def walk(node: Any, key: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{key}.{k}" if key else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{key}.{i}") for i, v in enumerate(node)]
        if isinstance(node, str) and "${" in node and key not in skip:
            try:
                return OmegaConf.select(cfg, key, throw_on_missing=True)
            except Exception as exc:
                errors.append((key, f"cannot resolve '{node}': {str(exc).splitlines()[0]}"))
        return node

    return walk(plain, ""), errors


def other_provider_key(where: str, provider: str, leaf: str) -> Problem | None:
    """provider.X that belongs to another provider (a recipe written for it, run with provider=this one)."""
    from .providers import PROVIDER_MODELS

    owners = [name for name, model in PROVIDER_MODELS.items() if leaf in model.model_fields and name != provider]
    if not owners:
        return None
    fix = f"remove it to run with provider={provider}"
    if provider == "openai":
        from ..openai_sdk import wind_down

        fix += f". Note: {wind_down('openai')}"
    return Problem(where, f"a setting of provider={'/'.join(owners)}, not of provider={provider}", fix)


def validation_problem(err: ErrorDetails, origins: Origins) -> Problem:
    # pydantic names the member of a union that failed ("constrained-int", "literal['auto']"): not a key
    loc = [str(part) for part in err["loc"] if not (isinstance(part, str) and ("-" in part or "[" in part))]
    provider = None
    if len(loc) >= 2 and loc[0] == "provider" and loc[1] in PROVIDER_NAMES:
        provider = loc.pop(1)  # the discriminator tag pydantic inserts
    dotted = ".".join(loc)
    where = f"{origins.of(dotted)}: {dotted}"
    kind = err["type"]
    if kind == "extra_forbidden" and dotted in RENAMED:
        return Problem(where, "this setting has moved", f"use {RENAMED[dotted]}")
    if kind == "extra_forbidden" and provider and len(loc) == 2 and (other := other_provider_key(where, provider,
                                                                                                   loc[1])):
        return other
    if kind == "extra_forbidden":
        parent, _, leaf = dotted.rpartition(".")
        siblings = [k for k in known_keys() if k.rpartition(".")[0] == parent]
        hint = did_you_mean(dotted, siblings)
        leaves = sorted(k.rpartition(".")[2] for k in siblings)
        return Problem(where, "unknown key", hint or f"keys here: {', '.join(leaves)}")
    if kind == "missing":
        return Problem(where, "missing required value", f"set it, e.g. {dotted}=...")
    if kind == "union_tag_invalid":
        name = str(err.get("ctx", {}).get("tag", ""))
        hint = did_you_mean(name, PROVIDER_NAMES)
        return Problem(f"{origins.of(dotted + '.name')}: {dotted}.name", f"unknown provider '{name}'",
                       f"{hint + ' ' if hint else ''}available: {', '.join(PROVIDER_NAMES)}")
    if kind == "literal_error":
        expected = str(err.get("ctx", {}).get("expected", ""))
        options = [o.strip(" '") for o in expected.replace(" or ", ",").split(",")]
        hint = did_you_mean(str(err.get("input")), options)
        return Problem(where, f"got {err.get('input')!r}, expected one of {expected}", hint)
    if kind == "value_error" and not loc:  # a whole-config check: its message starts with "the.key: "
        text = str(err["msg"]).removeprefix("Value error, ")
        key, sep, rest = text.partition(": ")
        if sep and " " not in key:
            return Problem(f"{origins.of(key)}: {key}", rest)
        return Problem("config", text)
    if kind in ("float_parsing", "int_parsing", "int_from_float") and err.get("input") in ("true", "false"):
        return Problem(where, f"expected a number, got the boolean {err['input']}")  # schema.Strict turns it to text
    return Problem(where, f"{err['msg']} (got {err.get('input')!r})")
