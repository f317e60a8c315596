"""Bad configs end with a short message naming the key and file, a did-you-mean, exit code 2,
no traceback, and no run directory."""

import pytest

from conftest import run_cli
from ftorch.cli import main

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
