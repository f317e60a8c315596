"""Recipes load lazily (issue 25, item 8): only the recipe asked for, and the recipes it composes, are read. A broken
file elsewhere in recipes/ (bad YAML, a symlink to /dev/zero, a FIFO) is not an error; a chosen recipe that is not a
regular file, or is too large, is refused unread with exit 2, naming the file."""

import os
import shutil

import pytest

from ftorch.cli import main
from ftorch.config.compose import MAX_RECIPE_BYTES, compose, find_project, plan_trials, use_project
from ftorch.errors import ConfigError
from ftorch.run.lifecycle import prepare

from conftest import ROOT, run_cli

BROKEN = ("bad", "zero", "pipe")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project with the shipped conf/ and data, two good recipes, one composing the other, and three broken files:
    bad YAML, a symlink to /dev/zero and a FIFO."""
    root = tmp_path / "project"
    recipes = root / "recipes"
    recipes.mkdir(parents=True)
    shutil.copytree(ROOT / "conf", root / "conf")
    (root / "datasets").symlink_to(ROOT / "datasets")
    shutil.copy(ROOT / "recipes" / "quickstart-tiny.yaml", recipes)
    (recipes / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - quickstart-tiny\ntrain:\n  lr: 1e-3\n")
    (recipes / "bad.yaml").write_text("train: [unclosed\n")
    (recipes / "zero.yaml").symlink_to("/dev/zero")
    os.mkfifo(recipes / "pipe.yaml")
    monkeypatch.setenv("FTORCH_ROOT", str(root))
    return find_project()


@pytest.mark.parametrize("command", ["plan", "train"])
def test_a_broken_file_elsewhere_in_recipes_is_not_read(project, command, tmp_path, capsys):
    runs = tmp_path / "runs"
    # train stops at the first check after composing: an unknown tracking backend, so nothing trains
    extra = ["tracking=nosuch"] if command == "train" else []
    code = main([command, "recipe=quickstart-tiny", f"paths.runs={runs}", *extra])
    captured = capsys.readouterr()
    if command == "plan":
        assert code == 0, captured.err
        assert "recipe=quickstart-tiny" in captured.out
    else:  # composed past the recipes: the error is the tracking typo, not a broken recipe
        assert code == 2 and "no tracking named 'nosuch'" in captured.err
    for name in BROKEN:
        assert f"{name}.yaml" not in captured.err


def test_a_recipe_that_composes_another_reads_both_and_nothing_else(project):
    prepared = prepare(project, ["recipe=mine"])
    assert prepared.config.train.lr == pytest.approx(1e-3)  # its own
    assert prepared.config.train.epochs == 16  # from quickstart-tiny, which it composes


def test_a_composed_recipe_that_is_broken_is_an_error_naming_it(project):
    (project.recipes_dir / "quickstart-tiny.yaml").write_text("train: {lr\n")
    with pytest.raises(ConfigError) as raised:
        prepare(project, ["recipe=mine"])
    assert "quickstart-tiny.yaml" in raised.value.render() and "not valid YAML" in raised.value.render()


def test_the_default_recipe_is_read_when_none_is_named(project):
    (project.recipes_dir / "quickstart.yaml").symlink_to(project.recipes_dir / "quickstart-tiny.yaml")
    assert prepare(project, []).recipe == "quickstart"


def test_an_unknown_recipe_still_gets_a_did_you_mean_from_the_file_names(project, capsys):
    code = main(["plan", "recipe=quickstart-tin"])
    err = capsys.readouterr().err
    assert code == 2
    assert "no recipe named 'quickstart-tin'" in err and "did you mean 'quickstart-tiny'?" in err
    assert "bad, mine, pipe, quickstart-tiny, zero" in err  # listed by name, none of them read


@pytest.mark.parametrize("name,kind", [("zero", "a device (through a symlink)"), ("pipe", "a FIFO")])
def test_a_chosen_recipe_that_is_not_a_regular_file_is_refused_unread(project, name, kind):
    # a real process with a timeout: reading /dev/zero would not end, nor would opening a FIFO for reading
    result = run_cli("plan", f"recipe={name}", timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"{project.recipes_dir / name}.yaml: {kind}, not a regular file: refused, not read" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_recipe_file_given_by_path_that_is_a_device_is_refused_naming_it(project, capsys):
    code = main(["plan", f"recipe={project.recipes_dir / 'zero.yaml'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{project.recipes_dir / 'zero.yaml'}: a device (through a symlink), not a regular file" in err


def test_a_recipe_larger_than_the_cap_is_refused_unread(project):
    big = project.recipes_dir / "big.yaml"
    big.write_text("# @package _global_\n" + "# padding\n" * (MAX_RECIPE_BYTES // 10 + 1))
    with pytest.raises(ConfigError) as raised:
        prepare(project, ["recipe=big"])
    assert f"{big}: larger than 1024 KiB" in raised.value.render()


def test_a_sweep_over_recipes_reads_only_those_named(project, tmp_path):
    """-m recipe=a,b: Hydra composes the sweep's base config with the default recipe (quickstart), which no trial
    uses; here it is broken, and the sweep is still planned, each trial with its own recipe."""
    (project.recipes_dir / "quickstart.yaml").write_text("train: {lr\n")
    shutil.copy(project.recipes_dir / "quickstart-tiny.yaml", project.recipes_dir / "other.yaml")
    overrides = ["recipe=mine,other", f"paths.runs={tmp_path / 'runs'}"]
    multirun, trials, _ = plan_trials(project, overrides, True)
    assert multirun and [t[0] for t in trials] == ["recipe=mine", "recipe=other"]
    assert [prepare(project, trial).recipe for trial in trials] == ["mine", "other"]
    use_project(project, overrides)  # as run.launch does, before it composes the base config for its sweep folder
    compose(project, [overrides[1]])
    # without a sweep, the default recipe is the one asked for: its error is reported
    with pytest.raises(ConfigError) as raised:
        plan_trials(project, [overrides[1]], False)
    assert "recipes/quickstart.yaml" in raised.value.render()
