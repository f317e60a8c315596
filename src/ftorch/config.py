"""Composed DictConfig -> validated RunConfig. Every problem is reported at once, each naming
the key, the file that set it, what was expected and, where one is close, a did-you-mean."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, get_args

from .compose import Project
from .errors import ConfigError, Problem, did_you_mean
from .schema import PROVIDER_NAMES, RunConfig


@dataclass
class Origins:
    """Where a key's value came from: the command line, the recipe, a group file or conf/config.yaml."""

    project: Project
    overrides: list[str]
    choices: dict[str, str | None] = field(default_factory=dict)

    def of(self, dotted: str) -> str:
        from omegaconf import OmegaConf

        groups = set(self.choices)
        for item in self.overrides:
            key = item.split("=", 1)[0].lstrip("+~")
            if key in groups:
                continue  # a group choice (model=tiny), not a value
            if key == dotted or dotted.startswith(key + "."):
                return f"command line ({item})"
        from .compose import RECIPE_PATHS

        candidates: list[tuple[Path, str]] = []
        recipe = self.choices.get("recipe")
        if recipe:  # applied last, so it wins; a recipe given as a path is registered under its stem
            candidates.append((RECIPE_PATHS.get(recipe, self.project.recipes_dir / f"{recipe}.yaml"), dotted))
        group, _, rest = dotted.partition(".")
        choice = self.choices.get(group)
        if choice and rest:
            candidates.append((self.project.conf_dir / group / f"{choice}.yaml", rest))
        candidates.append((self.project.conf_dir / "config.yaml", dotted))
        absent = object()
        for path, key in candidates:
            try:
                node = OmegaConf.load(path) if path.is_file() else None
                found = node is not None and OmegaConf.select(node, key, default=absent,
                                                                throw_on_resolution_failure=False) is not absent
            except Exception:  # an unreadable file cannot be where the value came from
                found = False
            if found:
                return self._show(path)
        return "config"

    def _show(self, path: Path) -> str:
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
    from . import secrets  # noted now, so every message, artifact and log line from here on is scrubbed

    secrets.remember_config(resolved, OmegaConf.to_container(cfg, resolve=False))
    problems += [Problem(secrets.scrub(f"{origins.of(k)}: {k}"), msg, hint)
                 for k, msg, hint in secrets.key_env_problems(resolved)]
    if problems:
        raise ConfigError(problems)
    try:
        return RunConfig.model_validate(resolved)
    except ValidationError as exc:
        found = [_problem(err, origins) for err in exc.errors()]
        raise ConfigError(list({p.render(): p for p in found}.values())) from None


def _missing_keys(cfg: Any, prefix: str = ""):
    from omegaconf import DictConfig, ListConfig, OmegaConf

    keys = cfg.keys() if isinstance(cfg, DictConfig) else range(len(cfg))
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

    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
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


def _problem(err: dict, origins: Origins) -> Problem:
    # pydantic names the member of a union that failed ("constrained-int", "literal['auto']"): not a key
    loc = [str(part) for part in err["loc"] if not (isinstance(part, str) and ("-" in part or "[" in part))]
    if len(loc) >= 2 and loc[0] == "provider" and loc[1] in PROVIDER_NAMES:
        loc.pop(1)  # the discriminator tag pydantic inserts
    dotted = ".".join(loc)
    where = f"{origins.of(dotted)}: {dotted}"
    kind = err["type"]
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


@cache
def known_keys() -> tuple[str, ...]:
    """Every dotted key the schema accepts, for did-you-mean hints."""
    from pydantic import BaseModel

    def walk(model: type[BaseModel], prefix: str):
        for name, info in model.model_fields.items():
            yield prefix + name
            for arg in (info.annotation, *get_args(info.annotation)):
                for sub in (arg, *get_args(arg)):
                    if isinstance(sub, type) and issubclass(sub, BaseModel):
                        yield from walk(sub, f"{prefix}{name}.")

    return tuple(dict.fromkeys(walk(RunConfig, "")))
