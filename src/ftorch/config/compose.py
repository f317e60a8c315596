"""Hydra composition: where conf/ and recipes/ are, recipe registration, overrides and sweeps."""

from __future__ import annotations

import copy
import itertools
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Problem, did_you_mean

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
    """Register ftorch's resolvers, the Optuna sweeper and the schema's defaults. Recipes are registered one by one,
    when a composition chooses them (prepare_recipes)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("ftorch_root", lambda: str(project.root), replace=True)
    from hydra_plugins.ftorch_optuna import optuna_sweeper  # noqa: F401  registers hydra/sweeper=ftorch_optuna

    from .providers import PROVIDER_MODELS
    from .schema import RunConfig, TinyModel, defaults_tree

    store = ConfigStore.instance()
    base = defaults_tree(RunConfig)
    base.pop("provider")
    store.store(name="ftorch_base", node=base)
    for name, model in PROVIDER_MODELS.items():
        store.store(group="ftorch_base/provider", name=name, node=defaults_tree(model))
        # the provider's own defaults for settings outside provider.* (OpenAI: train.epochs=auto), merged where
        # conf/provider/NAME.yaml is: a train group file or a recipe that sets one wins
        store.store(group="ftorch_base/provider_defaults", name=name, node=_nested(model.defaults))
    store.store(group="ftorch_base/model", name="tiny", node=defaults_tree(TinyModel))  # conf/model/tiny.yaml


def _nested(dotted: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


# recipe name -> the file it was read from (recipes/NAME.yaml, or a file given as recipe=PATH.yaml), for
# config.Origins: a problem in a recipe names the recipe's own file
RECIPE_PATHS: dict[str, Path] = {}
# recipes registered from a file given as recipe=PATH.yaml (recipe_files): kept as read, whatever the project
_GIVEN_AS_FILE: set[str] = set()
# the default recipe stood in for by an empty mapping, unread: a multirun over recipe=a,b composes its base config
# (the sweeper and launcher settings, the sweep folder) with the default recipe, which none of its trials uses. Set
# when a sweep is prepared, for the one composition of its base config (without a recipe) that follows.
_STAND_INS: set[str] = set()
MAX_RECIPE_BYTES = 1 << 20  # a recipe or config file larger than this is refused unread: 1 MiB


def prepare_recipes(project: Project, overrides: list[str]) -> None:
    """Register, for Hydra, only the recipes these overrides choose (recipe=NAME, or each of a sweep's recipe=a,b),
    or else the default recipe of conf/config.yaml: each read here, so a broken file elsewhere in recipes/ is never
    read. A name without a file is unregistered, so that Hydra reports it (with a did-you-mean from the file names)."""
    names = requested_recipes(overrides)
    for name in dict.fromkeys(names):
        register_recipe(project, name)
    default = default_recipe(project)
    if default is None or default in names:
        return
    if len(set(names)) > 1 or any(_is_recipe_sweep(item) for item in overrides):
        _store_recipe(default, None)  # a multirun's base config: its trials each name their recipe
    elif not names:
        try:
            register_recipe(project, default)
        except ConfigError:
            if default not in _STAND_INS:  # else: the sweep being set up stood in for it, and it is still unused
                raise
        finally:
            _STAND_INS.discard(default)  # the next composition without a recipe reads it


def requested_recipes(overrides: list[str]) -> list[str]:
    """The recipe names overrides choose: recipe=NAME, or every name a sweep takes (recipe=a,b, choice(a,b), or a
    sweeper's search space: hydra.sweeper.params.recipe=choice(a,b))."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    names: list[str] = []
    for item in overrides:
        if not _chooses_recipe(item):
            continue
        try:
            (override,) = OverridesParser.create().parse_overrides([f"{RECIPE_GROUP}={item.partition('=')[2]}"])
            names += (list(override.sweep_string_iterator()) if override.is_sweep_override()
                      else [override.get_value_element_as_str()])
        except Exception:  # noqa: BLE001  Hydra reports a malformed override when it composes
            continue
    return names


def _chooses_recipe(item: str) -> bool:
    key = item.partition("=")[0].lstrip("+")
    return key == RECIPE_GROUP or key.endswith(f"sweeper.params.{RECIPE_GROUP}")


def _is_recipe_sweep(item: str) -> bool:
    value = item.partition("=")[2]
    return _chooses_recipe(item) and ("," in value or "(" in value or not item.startswith(RECIPE_GROUP))


def default_recipe(project: Project) -> str | None:
    """The recipe conf/config.yaml's defaults list chooses when the command line names none (None: no default)."""
    from omegaconf import DictConfig

    path = project.conf_dir / "config.yaml"
    for entry in load_yaml(path).get("defaults") or []:
        if isinstance(entry, DictConfig):
            for key, value in entry.items():
                if str(key).split()[-1] == RECIPE_GROUP and value not in (None, "???"):
                    return str(value)
    return None


def register_recipe(project: Project, name: str, seen: set[str] | None = None) -> None:
    """recipes/NAME.yaml, read now (a regular file of at most MAX_RECIPE_BYTES, else a ConfigError naming it), as
    the Hydra option recipe=NAME, with the recipes it composes (`defaults: [quickstart-tiny]`). Without such a file
    NAME is unregistered, unless it was given as a file path."""
    path = project.recipes_dir / f"{name}.yaml"
    if name in _GIVEN_AS_FILE:
        return
    if not path_exists(path) or "/" in name or name.startswith("."):
        _unregister_recipe(name)
        return
    _store_recipe(name, path, project, seen)


def path_exists(path: Path) -> bool:
    """Something is at `path`: a file, a folder, a FIFO, or a symlink (even a dangling one)."""
    return path.exists() or path.is_symlink()


def _store_recipe(name: str, path: Path | None, project: Project | None = None, seen: set[str] | None = None) -> None:
    """recipe=NAME as the file at `path` and (given the project) the recipes it composes, or (path None) as an
    empty stand-in that is never read."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    node = load_yaml(path) if path is not None else OmegaConf.create({})
    ConfigStore.instance().store(group=RECIPE_GROUP, name=name, node=node, package="_global_")
    if path is None:
        _STAND_INS.add(name)
        RECIPE_PATHS.pop(name, None)
        return
    RECIPE_PATHS[name] = path
    seen = {name} if seen is None else seen | {name}
    for composed in composed_recipes(node):
        if project is not None and composed not in seen:
            register_recipe(project, composed, seen)


def composed_recipes(node) -> list[str]:
    """The recipes a recipe composes: the plain names in its defaults list (`- quickstart-tiny`), which Hydra looks
    up in the recipe's own group; `override /provider: x` and `_self_` are not recipes."""
    names = []
    for entry in node.get("defaults") or []:
        if isinstance(entry, str):
            name = entry.removeprefix("optional ").strip()
            if name and name != "_self_" and not name.startswith("/"):
                names.append(name)
    return names


def _unregister_recipe(name: str) -> None:
    from hydra.core.config_store import ConfigStore

    group = ConfigStore.instance().repo.get(RECIPE_GROUP)
    if isinstance(group, dict):
        group.pop(f"{name}.yaml", None)
    RECIPE_PATHS.pop(name, None)


def read_config_file(path: Path, limit: int = MAX_RECIPE_BYTES) -> str:
    """A recipe or config file's text, read only if it is a regular file (a symlink to one is fine) of at most
    `limit` bytes: a FIFO is not waited on, /dev/zero not read without end. Anything else is a ConfigError
    naming the file."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else f"cannot read it: {exc.strerror or exc}"
        raise ConfigError(Problem(str(path), reason, "a recipe is a YAML file; is this the file you meant?")) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode)
                    else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "a socket")
            via = " (through a symlink)" if path.is_symlink() else ""
            raise ConfigError(Problem(str(path), f"{kind}{via}, not a regular file: refused, not read",
                                      "a recipe is a YAML file: replace this with one, or remove it"))
        os.set_blocking(fd, True)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ConfigError(Problem(str(path), f"larger than {limit // 1024} KiB: refused, not read (a recipe is a "
                                  "short YAML file)", "is this the file you meant?"))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(yaml_problem(exc, path)) from None


def load_yaml(path: Path):
    """A recipe or config file as an OmegaConf node; a syntax error, binary content or a top level that is not a
    mapping is a ConfigError naming file:line:column, as is a file that is not a regular one or is too large."""
    import io

    from omegaconf import DictConfig, OmegaConf

    text = read_config_file(path)
    try:
        node = OmegaConf.load(io.StringIO(text))
    except Exception as exc:
        raise ConfigError(yaml_problem(exc, path)) from None
    if node is None or (isinstance(node, DictConfig) and not node):
        return OmegaConf.create({})
    if not isinstance(node, DictConfig):
        raise ConfigError(Problem(str(path), f"expected a mapping of keys (like `train: {{lr: 1e-4}}`), got a "
                                  f"{type(node).__name__.replace('Config', '').lower()}",
                                  "a recipe is a YAML mapping; see recipes/quickstart.yaml"))
    return node


def yaml_problem(exc: BaseException, path: Path | None = None) -> Problem:
    """A YAML syntax error (or a file that is not text) as a Problem at file:line:column."""
    import yaml

    hint = "fix the file there (YAML: indentation, a missing ':' or closing bracket or quote, a tab)"
    if isinstance(exc, (UnicodeDecodeError, yaml.reader.ReaderError)):
        return Problem(str(path) if path else "config", "not a text file (binary content, or not UTF-8)",
                       "a recipe is a UTF-8 YAML file; is this the file you meant?")
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        name = str(path) if path else mark.name
        message = f"not valid YAML: {exc.problem}"
        if exc.context:
            context = exc.context_mark
            at = f" (line {context.line + 1}, column {context.column + 1})" if context is not None else ""
            message += f", {exc.context}{at}"
        return Problem(f"{name}:{mark.line + 1}:{mark.column + 1}", message, hint)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return Problem(str(path) if path else "config", f"not valid YAML: {first}", hint)


def _yaml_error_in_project(project: Project, exc: BaseException) -> Problem | None:
    """Hydra read a conf/ file that is not valid YAML (or not text): which one, and where."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return yaml_problem(exc)
    if isinstance(exc, (UnicodeDecodeError, yaml.YAMLError)):
        for path in sorted(project.conf_dir.rglob("*.yaml")):
            try:
                load_yaml(path)
            except ConfigError as found:
                return found.problems[0]
        return yaml_problem(exc)
    return None


def override_problem(exc: BaseException, overrides: list[str]) -> Problem:
    """Hydra's grammar rejected an override: which one, and how to write it (quoting a path with spaces or
    non-ASCII characters)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    bad = None
    for item in overrides:
        try:
            parser.parse_overrides([item])
        except Exception:
            bad = item
            break
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if bad is None:
        return Problem("command line", first)
    key, _, value = bad.partition("=")
    if value and not value.startswith(("'", '"')) and (not value.isascii() or any(c in value for c in " ()[]{}")):
        return Problem(f"command line: {bad}", "Hydra cannot read this value unquoted (a non-ASCII character, a "
                       "space or a bracket)",
                       f"quote the value for Hydra, inside the shell's quotes: '{key}=\"{value}\"'")
    return Problem(f"command line: {bad}", f"cannot parse this override ({first})",
                   "overrides are key=value, group=option or +new.key=value; quote values with special characters: "
                   "'key=\"value\"'")


def use_project(project: Project, overrides: list[str] | None = None) -> None:
    """Make this project's resolvers the ones Hydra composes with and, given the overrides of a composition, the
    recipes they choose (prepare_recipes; None: the recipes registered already)."""
    from omegaconf import OmegaConf

    _register(project)
    # again each time: _register runs once per project, and the last project prepared is the one in use
    OmegaConf.register_new_resolver("ftorch_root", lambda: str(project.root), replace=True)
    if overrides is not None:
        prepare_recipes(project, overrides)


def recipe_files(project: Project, overrides: list[str]) -> list[str]:
    """`recipe=path/to/file.yaml` (e.g. a sweep's best.yaml) -> registered as a recipe named after the file."""
    use_project(project)
    _GIVEN_AS_FILE.clear()  # a new command: only its own files
    result = []
    for item in overrides:
        key, _, value = item.partition("=")
        path = Path(value).expanduser()
        if key == RECIPE_GROUP and value.endswith((".yaml", ".yml")) and path_exists(path) and not path.is_dir():
            if path.stem in project.recipe_names() and path.resolve() != (project.recipes_dir / path.name).resolve():
                raise ConfigError(Problem(item, f"a recipe named '{path.stem}' already exists in recipes/",
                                          "rename the file"))
            given = path.absolute().parent.resolve() / path.name  # a symlink named as given, not its target
            outside = given.parent != project.recipes_dir.resolve()
            _store_recipe(path.stem, given if outside else project.recipes_dir / path.name, project)
            if outside:
                import sys

                print(f"recipe: {given} (a file outside {project.recipes_dir}/)", file=sys.stderr)
                _GIVEN_AS_FILE.add(path.stem)
            item = f"{RECIPE_GROUP}={path.stem}"
        elif key == RECIPE_GROUP and value.endswith((".yaml", ".yml")) and path.is_dir():
            raise ConfigError(Problem(item, f"'{value}' is a directory, not a recipe file"))
        elif key == RECIPE_GROUP and value.endswith((".yaml", ".yml")):
            raise ConfigError(Problem(item, f"no recipe file at '{value}'",
                                      f"recipes in {project.recipes_dir}/: {', '.join(project.recipe_names())}"))
        elif key == RECIPE_GROUP and ("/" in value or "\\" in value or value.startswith(".")):
            # Hydra would look for conf/recipe/VALUE.yaml, i.e. anywhere on disk through '..'
            raise ConfigError(Problem(item, "a recipe name is the name of a file in recipes/, without folders",
                                      f"to use a recipe file from elsewhere give its path with the .yaml ending: "
                                      f"recipe={value}.yaml; recipes in {project.recipes_dir}/: "
                                      f"{', '.join(project.recipe_names())}"))
        result.append(item)
    return result


def compose(project: Project, overrides: list[str]):
    """Compose conf/config.yaml with the overrides; Hydra errors become ConfigErrors."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    use_project(project, overrides)
    while True:
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(project.conf_dir), version_base="1.3"), \
                    _recording_sources(project, overrides):
                return hydra_compose(config_name="config", overrides=overrides, return_hydra_config=True)
        except Exception as exc:
            chosen = _recipe_chosen_by_config(project, exc)
            if chosen is None:
                raise translate_hydra_error(project, exc, overrides) from None
            register_recipe(project, chosen)  # and compose again
        finally:
            GlobalHydra.instance().clear()


# The files the last composition merged, recorded while Hydra merged them: naming the file a setting came from
# (config/load.py, Origins) then needs no second composition (about as long as the first: 0.2 s of `ftorch plan`).
_last_sources: tuple[Project, tuple[str, ...], list[tuple[str, Any, str, str]]] | None = None


def composed_sources(project: Project, overrides: list[str]) -> list[tuple[str, Any, str, str]] | None:
    """(package, config without its defaults list, config path, source) of each file the last composition with
    these overrides merged, in Hydra's order; None when the last composition was another (or none was recorded)."""
    if _last_sources is None or _last_sources[:2] != (project, tuple(overrides)):
        return None
    return _last_sources[2]


@contextmanager
def _recording_sources(project: Project, overrides: list[str]) -> Iterator[None]:
    """Record each config Hydra loads for the merge (its ConfigLoaderImpl._load_single_config, the one place every
    merged config passes; Hydra 1.3). A Hydra without it records nothing, and Origins composes again instead."""
    global _last_sources
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    _last_sources = None
    original = getattr(ConfigLoaderImpl, "_load_single_config", None)
    if original is None:
        yield
        return
    seen: list[tuple[str, Any, str, str]] = []

    def load_single_config(self, default, repo):
        if default.config_path is not None and not (default.package or "").startswith("hydra"):
            loaded = repo.load_config(config_path=default.config_path)  # the cached load the merge uses
            if loaded is not None:
                node = copy.deepcopy(loaded.config)  # the merge may adopt the original's nodes
                node.pop("defaults", None)
                seen.append((default.package or "", node, default.config_path, loaded.path))
        return original(self, default, repo)

    ConfigLoaderImpl._load_single_config = load_single_config  # type: ignore[method-assign]
    try:
        yield
        _last_sources = (project, tuple(overrides), seen)
    finally:
        ConfigLoaderImpl._load_single_config = original  # type: ignore[method-assign]


def _recipe_chosen_by_config(project: Project, exc: Exception) -> str | None:
    """A recipe of recipes/ that a config file (not the command line) chooses, not registered yet."""
    match = _MISSING_OPTION.search(str(exc))
    if match is None or match.group(1) != RECIPE_GROUP:
        return None
    name = match.group(2)
    return name if name in project.recipe_names() and name not in RECIPE_PATHS else None


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """The basic sweeper's cartesian product of comma-separated values, as lists of plain overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise ConfigError(override_problem(exc, overrides)) from None
    axes = []
    for override in parsed:
        key = override.get_key_element()
        if override.is_sweep_override():
            axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            axes.append([f"{key}={override.get_value_element_as_str()}"])
    return [list(combo) for combo in itertools.product(*axes)]


def plan_trials(project: Project, overrides: list[str], multirun: bool) -> tuple[bool, list[list[str]], Any]:
    """Whether this is a multirun (-m, or hydra.mode=MULTIRUN in a sweep config), the override lists of the
    trials to check before anything starts (every grid point for Hydra's basic sweeper; for a sampling
    sweeper (Optuna), the fixed part only: each sampled trial is checked when it runs), and the config composed
    from the fixed part, which for a single run is the run's whole config (composed once, not again)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise ConfigError(override_problem(exc, overrides)) from None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override() and o.input_line is not None]
    if any(_is_recipe_sweep(item) for item in overrides):
        use_project(project, overrides)  # the recipes swept over; the default one only stood in for, unread
    composed = compose(project, fixed)
    hydra = composed.hydra
    multirun = multirun or str(hydra.mode) == "RunMode.MULTIRUN" or str(hydra.mode) == "MULTIRUN"
    check_runs_folder(composed, multirun)
    if multirun:
        check_sweeper_installed(composed)
    if not multirun:
        if len(fixed) != len(overrides):
            raise ConfigError(Problem("command line", "comma-separated values sweep only in a multirun",
                                      "add -m (ftorch train -m ...)"))
        return False, [overrides], composed
    if "basic_sweeper" not in str(hydra.sweeper.get("_target_", "")):
        return True, [fixed], composed
    given = {o.key_or_group for o in parsed}  # as Hydra does: the command line wins over the sweep config's params
    params = [f"{k}={v}" for k, v in (hydra.sweeper.get("params") or {}).items() if k not in given]
    return True, expand_sweep(params + overrides), composed


# sweeper plugin -> (the module it needs, the extra that installs it)
SWEEPER_NEEDS = {"ftorch_optuna": ("optuna", "sweep")}


def check_sweeper_installed(composed) -> None:
    """A sweeper whose library is missing: a ConfigError with the install command, before Hydra starts it (and
    fails with a traceback)."""
    from importlib.util import find_spec

    target = str(composed.hydra.sweeper.get("_target_", ""))
    for plugin, (module, extra) in SWEEPER_NEEDS.items():
        if plugin in target and find_spec(module) is None:
            raise ConfigError(Problem("hydra/sweeper", f"this sweep needs {module}, which is not installed",
                                      f"install it: pip install 'ftorch[{extra}]'"))


def check_runs_folder(composed, multirun: bool) -> None:
    """Before Hydra creates the run's folder (and its .hydra/): the runs path must be a folder, or creatable, on a
    disk that takes a write. A file in the way, a read-only or foreign folder, a full disk: a ConfigError naming the
    folder and what to do, instead of a Hydra traceback and a stray .hydra/."""
    import errno
    import shutil
    import tempfile

    try:
        target = Path(str(composed.hydra.sweep.dir if multirun else composed.hydra.run.dir)).expanduser()
    except Exception:  # an interpolation Hydra resolves later: check the runs root instead
        target = Path(str(composed.paths.runs)).expanduser()
    runs = str(composed.paths.runs)
    where = f"paths.runs={runs}"
    existing = target.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(Problem(where, f"{existing} is a file, not a folder: the run's folder {target} cannot be "
                                  "created", f"give a folder: paths.runs=SOMEWHERE_ELSE, or move {existing} away"))
    probe = None
    try:
        probe = Path(tempfile.mkdtemp(dir=existing, prefix=".ftorch-write-check-"))
        with open(probe / "probe", "wb") as handle:
            handle.write(b"\0" * 65536)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            message = f"no space left on the disk of {existing}"
            hint = "free some space there, or put the runs on another disk: paths.runs=/path/with/space"
        elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            reason = "is on a read-only file system" if exc.errno == errno.EROFS else "is not writable by you"
            message = f"{existing} {reason}: the run's folder {target} cannot be created there"
            hint = "give a folder you can write to: paths.runs=SOMEWHERE_ELSE (or fix its permissions)"
        else:
            message = f"cannot write in {existing}: {exc.strerror or exc}"
            hint = "give another folder: paths.runs=SOMEWHERE_ELSE"
        raise ConfigError(Problem(where, message, hint)) from None
    finally:
        if probe is not None:
            shutil.rmtree(probe, ignore_errors=True)


HYDRA_PLUGINS = {("hydra/launcher", "joblib"): "hydra-joblib-launcher",
                 ("hydra/launcher", "submitit_local"): "hydra-submitit-launcher",
                 ("hydra/launcher", "submitit_slurm"): "hydra-submitit-launcher",
                 ("hydra/launcher", "ray"): "hydra-ray-launcher"}
_MISSING_OPTION = re.compile(r"Could not find '([^']+)/([^']+)'")
_MISSING_KEY = re.compile(r"Key '([^']+)' is not in struct|Could not override '([^']+)'")


def translate_hydra_error(project: Project, exc: Exception, overrides: list[str]) -> ConfigError:
    from hydra.errors import OverrideParseException

    if isinstance(exc, OverrideParseException):
        return ConfigError(override_problem(exc, overrides))
    if (problem := _yaml_error_in_project(project, exc)) is not None:
        return ConfigError(problem)
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
    from .schema import RENAMED, known_keys

    if key in RENAMED:  # an older recipe's key: say where it lives now
        return Problem(f"{source}: {key}", "this setting has moved", f"use {RENAMED[key]}")
    if key in known_keys():  # a real setting of a section this config leaves empty (model.tiny with model=smollm2)
        section = key.rpartition(".")[0]
        return Problem(f"{source}: {key}", f"a known key, but '{section}' is not set in this config",
                       f"it applies once '{section}' is set, e.g. by the config group that sets it "
                       f"(model=tiny sets model.tiny); `ftorch plan` shows the keys this config has")
    hint = did_you_mean(key, known_keys())
    return Problem(f"{source}: {key}", "unknown key", hint or "see `ftorch plan` for the keys a config takes")
