"""Settings that override each other are named (issue 25, item 9): `train.epochs=3` with a recipe that sets
`train.max_steps: 24` trains 0.8 epochs, and plan and train now say so, naming both keys and where each was set;
the same for a save_steps training never reaches, warmup as long as training and eval.limit above the test size."""

import json
import shutil

import pytest

from ftorch.cli import main
from ftorch.config.compose import find_project
from ftorch.config.conflicts import Overridden, Setting, for_plan, overridden_settings
from ftorch.config.load import SCHEMA_DEFAULTS, Origins
from ftorch.run.lifecycle import prepare

from conftest import ROOT, TINY, read_run, run_dirs, train_run

PROJECT = find_project()


def overridden(*overrides, project=PROJECT) -> list[Overridden]:
    prepared = prepare(project, list(overrides))
    found, plan = for_plan(project, prepared.cfg, prepared.overrides, prepared.config, prepared.data, prepared.plan)
    assert [n for n in plan.notes if n.startswith("setting overridden: ")] == [
        f"setting overridden: {pair.render()}" for pair in found]  # kept in plan.json's notes
    return found


def test_max_steps_from_the_recipe_cuts_the_epochs_asked_for_on_the_command_line():
    (pair,) = overridden("recipe=quickstart", "train.epochs=3")
    assert pair.winner == Setting("train.max_steps", 24, "recipes/quickstart.yaml")
    assert pair.loser == Setting("train.epochs", 3.0, "command line")
    assert "24 steps, 0.8 epochs instead of 3 (90 steps)" in pair.effect


def test_settings_made_together_in_one_recipe_are_not_reported():
    # quickstart sets epochs: 1 and max_steps: 24 side by side (0.8 epochs, on purpose)
    assert overridden("recipe=quickstart") == []
    assert overridden("recipe=quickstart-tiny") == []


def test_save_steps_past_the_end_of_training():
    (pair,) = overridden("recipe=quickstart", "train.save_steps=50")
    assert (pair.winner.name, pair.winner.origin) == ("train.max_steps", "recipes/quickstart.yaml")
    assert (pair.loser.name, pair.loser.value, pair.loser.origin) == ("train.save_steps", 50, "command line")
    assert "before the first checkpoint (step 50)" in pair.effect


def test_warmup_as_long_as_training_and_a_constant_schedule_without_warmup():
    found = {pair.loser.name: pair for pair in overridden("recipe=quickstart-tiny", "train.max_steps=1")}
    assert set(found) == {"train.epochs", "train.save_steps", "train.warmup_ratio"}
    warmup = found["train.warmup_ratio"]
    assert warmup.winner == Setting("train.max_steps", 1, "command line")
    assert warmup.loser == Setting("train.warmup_ratio", 0.1, "recipes/quickstart-tiny.yaml")
    assert "warmup takes all 1 step" in warmup.effect
    (constant,) = overridden("recipe=quickstart-tiny", "train.scheduler=constant")
    assert (constant.winner.name, constant.loser.name) == ("train.scheduler", "train.warmup_ratio")


def test_eval_limit_above_the_test_size_names_the_file_that_sets_the_test_data():
    (pair,) = overridden("recipe=quickstart", "eval.limit=500")
    assert pair.winner.name == "data.test" and pair.winner.origin == "conf/data/quickstart.yaml"
    assert pair.loser == Setting("eval.limit", 500, "command line")
    assert "data.test has 40 examples" in pair.effect


def test_a_setting_left_at_the_schema_default_or_unused_by_the_provider_is_not_reported(tmp_path, monkeypatch):
    root = tmp_path / "project"
    (root / "recipes").mkdir(parents=True)
    shutil.copytree(ROOT / "conf", root / "conf")
    (root / "datasets").symlink_to(ROOT / "datasets")
    (root / "recipes" / "quickstart.yaml").write_text("# @package _global_\ndefaults:\n  - override /model: tiny\n")
    monkeypatch.setenv("FTORCH_ROOT", str(root))
    project = find_project()
    # epochs (3.0) and save_steps (100) are the schema's: max_steps=2 cuts nothing anybody asked for
    assert overridden("train.max_steps=2", project=project) == []
    prepared = prepare(PROJECT, ["recipe=quickstart", "train.epochs=3"])
    origins = Origins(PROJECT, prepared.overrides, dict(prepared.cfg.hydra.runtime.choices))
    assert origins.file_of("train.lr") == "recipes/quickstart.yaml"
    assert origins.file_of("train.seed") == SCHEMA_DEFAULTS
    assert overridden_settings(prepared.config, prepared.data, ["train.epochs"], origins) == []


def test_plan_prints_the_warning_and_its_json_carries_it(capsys):
    assert main(["plan", "recipe=quickstart", "train.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert ("setting overridden train.epochs=3.0 (command line) is overridden by train.max_steps=24 "
            "(recipes/quickstart.yaml)") in out
    assert main(["plan", "--json", "recipe=quickstart", "train.epochs=3"]) == 0
    shown = json.loads(capsys.readouterr().out)
    (pair,) = shown["overridden"]
    assert pair["winner"] == {"name": "train.max_steps", "value": 24, "origin": "recipes/quickstart.yaml"}
    assert pair["loser"] == {"name": "train.epochs", "value": 3.0, "origin": "command line"}
    assert any(note.startswith("setting overridden: train.epochs=3.0") for note in shown["plan"]["notes"])


@pytest.mark.slow
def test_train_warns_at_the_start_and_records_it_in_plan_json(tmp_path):
    run_dir, result = train_run(tmp_path / "runs", *TINY, "train.max_steps=2", "eval=none")
    warning = ("setting overridden train.epochs=16.0 (recipes/quickstart-tiny.yaml) is overridden by "
               "train.max_steps=2 (command line)")
    assert warning in result.stderr
    assert result.stderr.index(warning) < result.stderr.index("step 2/2")  # before training starts
    notes = json.loads((run_dir / "plan.json").read_text())["notes"]
    assert any(note.startswith("setting overridden: train.epochs=16.0") for note in notes)
    assert read_run(run_dir)["status"] == "succeeded" and run_dirs(tmp_path / "runs") == [run_dir]


@pytest.mark.parametrize("overrides", [["recipe=quickstart"], ["recipe=quickstart-tiny", "eval=none", "train.lr=1e-3"]])
def test_the_sources_recorded_while_composing_are_the_ones_a_second_composition_finds(overrides):
    """Naming a setting's file reuses the files the composition merged (no second composition for `plan`): the
    same files, packages and contents, in the same order, as composing the defaults list again."""
    from omegaconf import OmegaConf

    from ftorch.config import compose

    prepared = prepare(PROJECT, overrides)
    choices = dict(prepared.cfg.hydra.runtime.choices)
    assert compose.composed_sources(PROJECT, overrides) is not None
    recorded = Origins(PROJECT, overrides, choices)._sources
    assert compose.composed_sources(PROJECT, ["recipe=other"]) is None  # another composition's: not reused
    compose._last_sources = None  # as if nothing was recorded: compose the defaults list again
    again = Origins(PROJECT, overrides, choices)._sources
    assert len(recorded) >= 10 and any(shown.startswith("recipes/") for _, _, shown in recorded)
    assert [(p, shown, OmegaConf.to_container(node)) for p, node, shown in recorded] == [
        (p, shown, OmegaConf.to_container(node)) for p, node, shown in again]
