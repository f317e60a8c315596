"""Bad configs end with a short message naming the key and file, a did-you-mean, exit code 2,
no traceback, and no run directory."""

import pytest

from ftorch.cli import main

from conftest import run_cli

CASES = [
    # overrides, words the message must contain
    (["train.lrr=1e-4"], ["train.lrr", "unknown key", "did you mean 'train.lr'?", "command line"]),
    (["train.lr=fast"], ["train.lr", "valid number", "'fast'"]),
    (["train.scheduler=cosin"], ["train.scheduler", "did you mean 'cosine'?"]),
    (["recipe=quickstrt"], ["recipe=quickstrt", "no recipe named 'quickstrt'", "did you mean 'quickstart'?"]),
    (["provider=openia"], ["provider=openia", "no provider named 'openia'", "did you mean 'openai'?"]),
    (["provider.name=pef"], ["provider.name", "unknown provider 'pef'", "did you mean 'peft'?"]),
    (["model.name=???"], ["model.name", "missing required value"]),
    (["train.lora.r=0"], ["train.lora.r", "greater than 0"]),
    (["data.train=/nonexistent/train.jsonl"], ["data.train", "file not found"]),
    (["recipe=quickstart", "model.tiny.num_heads=2"], ["model.tiny.num_heads", "'model.tiny' is not set in this config",
                                                      "model=tiny"]),
]


@pytest.mark.parametrize("command", ["plan", "train"])
@pytest.mark.parametrize("overrides,words", CASES, ids=[c[0][0] for c in CASES])
def test_bad_config_is_reported_without_running(command, overrides, words, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main([command, f"paths.runs={runs}", *overrides])
    err = capsys.readouterr().err
    assert code == 2
    for word in words:
        assert word in err
    assert "Traceback" not in err
    assert not runs.exists()


def test_recipe_typo_names_the_recipe_file(tmp_path, capsys, monkeypatch):
    project = tmp_path / "project"
    (project / "recipes").mkdir(parents=True)
    import shutil

    from conftest import ROOT

    shutil.copytree(ROOT / "conf", project / "conf")
    (project / "recipes" / "quickstart.yaml").write_text((ROOT / "recipes" / "quickstart.yaml").read_text())
    (project / "recipes" / "mine.yaml").write_text("# @package _global_\ntrain:\n  lr: 1e-3\n  epoch: 2\n")
    monkeypatch.setenv("FTORCH_ROOT", str(project))
    code = main(["plan", "recipe=mine"])
    err = capsys.readouterr().err
    assert code == 2
    assert "recipes/mine.yaml: train.epoch" in err
    assert "did you mean 'train.epochs'?" in err


def test_several_problems_are_reported_at_once(capsys):
    code = main(["plan", "train.lr=-1", "train.batch_size=0", "provider.device=gpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert "train.lr" in err and "train.batch_size" in err and "provider.device" in err


def test_user_error_in_a_real_process_has_no_traceback(tmp_path):
    result = run_cli("train", f"paths.runs={tmp_path}", "train.lrr=1")
    assert result.returncode == 2
    assert "did you mean 'train.lr'?" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_plan_touches_nothing_and_never_imports_torch(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from ftorch.cli import main; rc = main(['plan', 'paths.runs=" + str(tmp_path / "r") + "']);"
            "assert rc == 0, rc; heavy = [m for m in ('torch', 'transformers', 'peft', 'trl') if m in sys.modules];"
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "total_steps" in result.stdout
    assert not (tmp_path / "r").exists()


def test_a_value_from_a_nested_default_names_that_file(tmp_path, capsys, monkeypatch):
    """Provenance follows Hydra's own defaults list: train=mine pulls conf/train/shared.yaml through its defaults,
    so a bad value set there is blamed on shared.yaml, and one the recipe sets on the recipe (merged last)."""
    import shutil

    from conftest import ROOT

    project = tmp_path / "project"
    (project / "recipes").mkdir(parents=True)
    shutil.copytree(ROOT / "conf", project / "conf")
    (project / "conf" / "train" / "shared.yaml").write_text("lr: -1.0\nbatch_size: 0\n")
    (project / "conf" / "train" / "mine.yaml").write_text("defaults:\n  - shared\n  - _self_\nepochs: 1\n")
    (project / "recipes" / "quickstart.yaml").write_text((ROOT / "recipes" / "quickstart.yaml").read_text())
    (project / "recipes" / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - override /train: mine\n"
                                                   "train:\n  batch_size: -3\n")
    monkeypatch.setenv("FTORCH_ROOT", str(project))
    code = main(["plan", "recipe=mine"])
    err = capsys.readouterr().err
    assert code == 2
    assert "conf/train/shared.yaml: train.lr" in err
    assert "recipes/mine.yaml: train.batch_size" in err


def test_every_tiny_model_setting_can_be_overridden_without_a_plus(capsys):
    """conf/model/tiny.yaml holds only what differs from the schema; the schema's other TinyModel keys are still
    in the composed config, so model.tiny.num_heads=2 needs no '+'."""
    import json

    from ftorch.config.schema import TinyModel

    assert main(["plan", "--json", "model=tiny", "model.tiny.num_heads=2"]) == 0
    tiny = json.loads(capsys.readouterr().out)["config"]["model"]["tiny"]
    assert tiny["num_heads"] == 2 and tiny["num_layers"] == TinyModel().num_layers and tiny["hidden_size"] == 256
