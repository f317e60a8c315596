"""Hydra composition: where conf/ and recipes/ are, recipe registration, overrides and sweeps."""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .errors import ConfigError, Problem, did_you_mean

RECIPE_GROUP = "recipe"


@dataclass(frozen=True)
class Project:
    """The folder holding conf/ and recipes/."""

    root: Path

    @property
    def conf_dir(self) -> Path:
        return self.root / "conf"

    @property
    def recipes_dir(self) -> Path:
        return self.root / "recipes"

    def recipe_names(self) -> list[str]:
        return sorted(p.stem for p in self.recipes_dir.glob("*.yaml"))

    def group_options(self, group: str) -> list[str]:
        return sorted(p.stem for p in (self.conf_dir / group).glob("*.yaml"))

    def groups(self) -> list[str]:
        return sorted(p.name for p in self.conf_dir.iterdir() if p.is_dir())


def find_project(start: Path | None = None) -> Project:
    """$FTORCH_ROOT, else the nearest folder above the working directory with conf/config.yaml,
    else the source checkout this package was installed from (editable install)."""
    if env := os.environ.get("FTORCH_ROOT"):
        candidates = [Path(env)]
    else:
        here = (start or Path.cwd()).resolve()
        candidates = [here, *here.parents, Path(__file__).resolve().parents[2]]
    for folder in candidates:
        if (folder / "conf" / "config.yaml").is_file():
            return Project(folder)
    raise ConfigError(
        Problem("", "no ftorch project found (a folder with conf/config.yaml)",
                "run ftorch from the project folder, or set FTORCH_ROOT to it")
    )


@cache
def _register(project: Project) -> None:
    """Make recipes/NAME.yaml selectable as recipe=NAME, and register ftorch's resolvers."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("ftorch_root", lambda: str(project.root), replace=True)
    from .schema import PROVIDER_MODELS, RunConfig, defaults_tree
    from hydra_plugins.ftorch_optuna import optuna_sweeper  # noqa: F401  registers hydra/sweeper=ftorch_optuna

    store = ConfigStore.instance()
    base = defaults_tree(RunConfig)
    base.pop("provider")
    store.store(name="ftorch_base", node=base)
    for name, model in PROVIDER_MODELS.items():
        store.store(group="ftorch_base/provider", name=name, node=defaults_tree(model))
    for path in sorted(project.recipes_dir.glob("*.yaml")):
        try:
            node = OmegaConf.load(path)
        except Exception as exc:  # YAML syntax errors
            raise ConfigError(Problem(str(path), f"not valid YAML: {exc}")) from None
        store.store(group=RECIPE_GROUP, name=path.stem, node=node, package="_global_")


def prepare(project: Project) -> None:
    _register(project)


def recipe_files(project: Project, overrides: list[str]) -> list[str]:
    """`recipe=path/to/file.yaml` (e.g. a sweep's best.yaml) -> registered as a recipe named after the file."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    prepare(project)
    result = []
    for item in overrides:
        key, _, value = item.partition("=")
        path = Path(value).expanduser()
        if key == RECIPE_GROUP and value.endswith((".yaml", ".yml")) and path.is_file():
            if path.stem in project.recipe_names() and path.resolve() != (project.recipes_dir / path.name).resolve():
                raise ConfigError(Problem(item, f"a recipe named '{path.stem}' already exists in recipes/",
                                          "rename the file"))
            ConfigStore.instance().store(group=RECIPE_GROUP, name=path.stem, node=OmegaConf.load(path),
                                         package="_global_")
            item = f"{RECIPE_GROUP}={path.stem}"
        result.append(item)
    return result


def compose(project: Project, overrides: list[str]):
    """Compose conf/config.yaml with the overrides; Hydra errors become ConfigErrors."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    prepare(project)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(project.conf_dir), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except Exception as exc:
        raise translate_hydra_error(project, exc, overrides) from None
    finally:
        GlobalHydra.instance().clear()


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """The basic sweeper's cartesian product of comma-separated values, as lists of plain overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise ConfigError(Problem("command line", str(exc).strip().splitlines()[0])) from None
    axes = []
    for override in parsed:
        key = override.get_key_element()
        if override.is_sweep_override():
            axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            axes.append([f"{key}={override.get_value_element_as_str()}"])
    return [list(combo) for combo in itertools.product(*axes)]


def plan_trials(project: Project, overrides: list[str], multirun: bool) -> tuple[bool, list[list[str]]]:
    """Whether this is a multirun (-m, or hydra.mode=MULTIRUN in a sweep config) and the override lists of the
    trials to check before anything starts: every grid point for Hydra's basic sweeper; for a sampling
    sweeper (Optuna), the fixed part only (each sampled trial is checked when it runs)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise ConfigError(Problem("command line", str(exc).strip().splitlines()[0])) from None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    composed = compose(project, fixed)
    hydra = composed.hydra
    multirun = multirun or str(hydra.mode) == "RunMode.MULTIRUN" or str(hydra.mode) == "MULTIRUN"
    if not multirun:
        if len(fixed) != len(overrides):
            raise ConfigError(Problem("command line", "comma-separated values sweep only in a multirun",
                                      "add -m (ftorch train -m ...)"))
        return False, [overrides]
    if "basic_sweeper" not in str(hydra.sweeper.get("_target_", "")):
        return True, [fixed]
    params = [f"{k}={v}" for k, v in (hydra.sweeper.get("params") or {}).items()]
    return True, expand_sweep(params + overrides)


HYDRA_PLUGINS = {("hydra/launcher", "joblib"): "hydra-joblib-launcher",
                 ("hydra/launcher", "submitit_local"): "hydra-submitit-launcher",
                 ("hydra/launcher", "submitit_slurm"): "hydra-submitit-launcher",
                 ("hydra/launcher", "ray"): "hydra-ray-launcher"}
_MISSING_OPTION = re.compile(r"Could not find '([^']+)/([^']+)'")
_MISSING_KEY = re.compile(r"Key '([^']+)' is not in struct|Could not override '([^']+)'")


def translate_hydra_error(project: Project, exc: Exception, overrides: list[str]) -> ConfigError:
    text = str(exc).strip()
    if match := _MISSING_OPTION.search(text):
        group, name = match.groups()
        if group.startswith("hydra/"):
            package = HYDRA_PLUGINS.get((group, name))
            hint = f"pip install {package}" if package else "is the Hydra plugin that provides it installed?"
            return ConfigError(Problem(f"{group}={name}", f"the Hydra plugin for {group}={name} is not installed",
                                       hint))
        if group == RECIPE_GROUP:
            options = project.recipe_names()
            where = f"recipe={name}"
            place = f"{project.recipes_dir}/"
        else:
            options = project.group_options(group)
            where = f"{group}={name}"
            place = f"{project.conf_dir / group}/"
        hint = did_you_mean(name, options) or ""
        listing = ", ".join(options) or "none"
        return ConfigError(Problem(where, f"no {group} named '{name}' in {place}",
                                   f"{hint} available: {listing}".strip()))
    if match := _MISSING_KEY.search(text):
        key = match.group(1) or match.group(2)
        return ConfigError(unknown_key_problem(project, key, source="command line"))
    first = text.splitlines()[0] if text else type(exc).__name__
    return ConfigError(Problem("command line" if overrides else "config", first))


def unknown_key_problem(project: Project, key: str, source: str) -> Problem:
    """'train.lrr' -> did you mean 'train.lr'?, using the schema's field names."""
    from .config import known_keys

    hint = did_you_mean(key, known_keys())
    return Problem(f"{source}: {key}", "unknown key", hint or "see `ftorch plan` for the keys a config takes")
