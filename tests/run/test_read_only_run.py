"""A finished run on a read-only filesystem: `ftorch eval` and `ftorch export` either write elsewhere (--out) and
leave the run's folder untouched, or are refused with exit 2 saying why and how (never an OSError traceback on
run.lock). The folder is made read-only by chmod; as root, writes under it fail with EROFS (finished_runs)."""

from __future__ import annotations

import json

import pytest

from ftorch.cli import main
from ftorch.eval import finished

from support.fakes import Scripted
from support.finished import finished_run, read_only, snapshot


@pytest.fixture
def run(tmp_path, monkeypatch):
    run, _ = finished_run(tmp_path / "runs" / "r")
    monkeypatch.setattr(finished, "_models_for", lambda run, cfg: (Scripted(), None, None))
    return run


@pytest.mark.parametrize("command", [["eval"], ["export", "--to", "merged"]])
def test_a_read_only_run_is_refused_with_the_way_out(run, capsys, command):
    before = snapshot(run.path)
    with read_only(run.path):
        code = main([command[0], str(run.path), *command[1:]])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "OSError" not in err
    action = "evaluate" if command[0] == "eval" else "export"
    assert f"cannot {action}: this run's folder cannot be written" in err
    assert f"ftorch {command[0]} {run.path}" in err and "--out DIR" in err
    assert snapshot(run.path) == before


def test_eval_out_reads_a_read_only_run_and_writes_only_there(run, tmp_path, capsys):
    out = tmp_path / "elsewhere"
    before = snapshot(run.path)
    with read_only(run.path):
        code = main(["eval", str(run.path), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert snapshot(run.path) == before  # run.json, train.log, run.lock, eval/: nothing written
    (folder,) = out.iterdir()
    assert {"report.json", "report.md", "predictions.jsonl", "evaluation.json"} <= {p.name for p in folder.iterdir()}
    assert not (folder / "INCOMPLETE").exists()
    record = json.loads((folder / "evaluation.json").read_text())
    assert record["run"] == str(run.path) and record["evaluation"]["status"] == "succeeded"
    assert record["evaluation"]["dir"] == str(folder) and record["metrics"]["eval_tuned_exact_match"] == 1.0
    assert f"report: {folder}/report.md" in captured.out and "verdict:" in captured.out


def test_eval_out_of_a_run_in_use_is_refused(run, tmp_path, capsys):
    with run.owned("train"):
        code = main(["eval", str(run.path), "--out", str(tmp_path / "elsewhere")])
    assert code == 2 and "in use by pid" in capsys.readouterr().err


def test_an_out_that_is_a_file_is_refused(run, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["eval", str(run.path), "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "not a folder" in err and "Traceback" not in err


def test_export_out_writes_the_export_and_its_record_there(run, tmp_path, monkeypatch, capsys):
    """The merge itself is tests/e2e/test_export.py's; here a stand-in writes the folder, and what is checked is
    where things go: the export and its record under --out, nothing in the read-only run."""
    from ftorch.export import run as export_run

    def merged(source, folder, request, announce):
        (folder / "model.safetensors").write_bytes(b"weights")
        return {"kind": "merged", "dir": str(folder), "dtype": request.dtype, "files": ["model.safetensors"]}, \
            None, request.dtype

    monkeypatch.setattr(export_run, "_merged", merged)
    out = tmp_path / "exports"
    before = snapshot(run.path)
    with read_only(run.path):
        code = main(["export", str(run.path), "--to", "merged", "--no-verify", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert snapshot(run.path) == before
    folder = out / "merged-float32"
    assert (folder / "model.safetensors").read_bytes() == b"weights" and not (folder / "INCOMPLETE").exists()
    record = json.loads((folder / "export.json").read_text())
    assert record["run"] == str(run.path) and record["status"] == "finished" and record["dir"] == str(folder)
    assert str(folder) in captured.out


def test_resume_of_a_read_only_run_is_an_exit_2_error(tmp_path, capsys):
    run, _ = finished_run(tmp_path / "r")
    run.update(status="interrupted")
    with read_only(run.path):
        code = main(["resume", str(run.path)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot resume: this run's folder cannot be written" in err and "Traceback" not in err


def test_the_read_only_simulation_really_refuses_writes(tmp_path):
    """What the tests above rely on, for root and everyone else alike."""
    import os

    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "f").write_text("x")
    with read_only(folder), pytest.raises(OSError):
        os.close(os.open(folder / "f", os.O_WRONLY))
    os.close(os.open(folder / "f", os.O_WRONLY))  # and it ends with the block
