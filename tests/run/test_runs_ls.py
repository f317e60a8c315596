"""`ftorch runs ls` on a new project and on damaged run folders: "no runs yet" (exit 0) before the first run,
and a run.json that is not a readable file is skipped with a warning, never a traceback."""

from __future__ import annotations

import os

import pytest

from ftorch.cli import console, main
from ftorch.run.rundir import RunDir


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    monkeypatch.setattr(console.out, "width", 250)


def make_run(folder):
    folder.mkdir(parents=True)
    RunDir(folder).update(status="succeeded", recipe="good-recipe", provider="peft", metrics={"final_loss": 0.25})


def test_before_any_run_there_are_no_runs_yet(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a new project: no runs/ folder
    assert main(["runs", "ls"]) == 0
    captured = capsys.readouterr()
    assert "no runs yet" in captured.out and captured.err == ""


def test_an_empty_runs_folder_has_no_runs_yet(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    assert main(["runs", "ls", str(tmp_path / "runs")]) == 0
    assert f"no runs yet under {tmp_path / 'runs'}" in capsys.readouterr().out


def test_a_folder_named_on_the_command_line_must_exist(tmp_path, capsys):
    assert main(["runs", "ls", str(tmp_path / "typo")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["runs", "ls", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_a_run_json_that_is_a_folder_is_skipped_with_a_warning(tmp_path, capsys):
    make_run(tmp_path / "runs" / "good")
    (tmp_path / "runs" / "odd" / "run.json").mkdir(parents=True)
    assert main(["runs", "ls", str(tmp_path / "runs")]) == 0
    captured = capsys.readouterr()
    assert "good-recipe" in captured.out and "loss 0.250" in captured.out
    assert "skipping" in captured.err and "odd/run.json" in captured.err and "not a regular file" in captured.err
    assert "Traceback" not in captured.err


def test_a_run_json_that_is_a_fifo_is_skipped(tmp_path, capsys):
    make_run(tmp_path / "runs" / "good")
    (tmp_path / "runs" / "fifo").mkdir()
    os.mkfifo(tmp_path / "runs" / "fifo" / "run.json")  # reading it would wait forever
    assert main(["runs", "ls", str(tmp_path / "runs")]) == 0
    captured = capsys.readouterr()
    assert "good-recipe" in captured.out and "fifo/run.json: not a regular file" in captured.err


def test_every_reader_of_a_run_json_folder_gets_a_config_error(tmp_path):
    from ftorch.errors import ConfigError

    (tmp_path / "r" / "run.json").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"cannot read run.json \(Is a directory\)"):
        RunDir(tmp_path / "r").record()
