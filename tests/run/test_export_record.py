"""run.json tells the truth about exports: listed as running while the folder is written, and an export killed
outright (kill -9) is found by the next one, which removes its INCOMPLETE folder and records it as died; one
interrupted or failing removes its own folder and says so. Before, a killed export's folder stayed, unrecorded.

The merge itself is tests/e2e/test_export.py's (it needs a trained run); here a stand-in writes the folder, and
what is checked is the record and the folders around it."""

from __future__ import annotations

import os
import signal

import pytest

from ftorch.cli import main
from ftorch.export import run as export_run
from ftorch.export.run import Request, export

from support.finished import finished_run


def stand_in(then=None):
    def merged(source, folder, request, announce):
        (folder / "model.safetensors").write_bytes(b"weights")
        if then:
            then()
        return {"kind": "merged", "dir": str(folder), "dtype": request.dtype, "files": ["model.safetensors"]}, \
            None, request.dtype

    return merged


@pytest.fixture
def run(tmp_path):
    run, _ = finished_run(tmp_path / "r")
    return run


def killed_export(run) -> None:
    """`export` in a forked process that is killed with SIGKILL while it writes the folder."""
    pid = os.fork()
    if pid == 0:  # the child: nothing of pytest's runs here beyond the export
        try:
            export_run._merged = stand_in(lambda: os.kill(os.getpid(), signal.SIGKILL))
            export(Request(run.path, "merged", verify=False), announce=lambda line: None)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_an_export_killed_outright_is_cleared_and_recorded_by_the_next(run, monkeypatch, capsys):
    killed_export(run)
    left = run.path / "export" / "merged-float32"
    assert (left / "INCOMPLETE").is_file() and (left / "model.safetensors").is_file()
    (running,) = run.read()["exports"]
    assert running["status"] == "running" and running["dir"] == str(left)  # recorded while it was written

    monkeypatch.setattr(export_run, "_merged", stand_in())
    assert main(["export", str(run.path), "--to", "merged", "--no-verify"]) == 0
    captured = capsys.readouterr()
    assert f"removed {left}: an earlier export was killed before it finished" in captured.err
    died, done = run.read()["exports"]
    assert died["status"] == "died" and died["removed"] is True and died["dir"] == str(left)
    assert "killed before it finished" in died["error"]
    assert done["status"] == "finished" and run.read()["export"] == done
    assert not (run.path / "export" / done["dir"] / "INCOMPLETE").exists()
    assert [p.name for p in (run.path / "export").iterdir()] == [os.path.basename(done["dir"])]


@pytest.mark.parametrize("raised, status", [(KeyboardInterrupt(), "interrupted"), (ValueError("bad tensor"), "failed")])
def test_an_export_that_does_not_finish_removes_its_folder_and_says_why(run, monkeypatch, raised, status):
    def fail():
        raise raised

    monkeypatch.setattr(export_run, "_merged", stand_in(fail))
    with pytest.raises(type(raised)):
        export(Request(run.path, "merged", verify=False), announce=lambda line: None)
    (entry,) = run.read()["exports"]
    assert entry["status"] == status and entry["removed"] is True
    assert status == "interrupted" or "ValueError: bad tensor" in entry["error"]
    assert list((run.path / "export").iterdir()) == [] and "export" not in run.read()


def test_runs_ls_shows_an_export_killed_outright_as_died_until_the_next_export(run, monkeypatch, capsys):
    """run.json still says 'running' (nobody is left to change it), but nobody holds the run's lock: every reader
    (observed(): runs ls, chat, serve) reports the export as died, as it does a run or an evaluation."""
    from ftorch.cli import console
    from ftorch.run.rundir import RunDir

    monkeypatch.setattr(console.out, "width", 250)
    killed_export(run)
    left = run.path / "export" / "merged-float32"
    assert run.read()["exports"][0]["status"] == "running"  # the file itself is left as it was
    (died,) = RunDir(run.path).observed().exports
    assert died["status"] == "died" and died["dir"] == str(left)
    assert died["error"] == ("the export was killed before it finished; the next export removes its unfinished "
                             f"folder: ftorch export {run.path} --to merged")
    assert main(["runs", "ls", str(run.path.parent)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "succeeded, export died" in out and f"{left}: the export was killed before it finished" in out

    monkeypatch.setattr(export_run, "_merged", stand_in())
    assert main(["export", str(run.path), "--to", "merged", "--no-verify"]) == 0
    capsys.readouterr()
    assert main(["runs", "ls", str(run.path.parent)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "export died" not in out and "killed" not in out  # cleared, recorded (with when) in run.json
    assert [e["status"] for e in RunDir(run.path).observed().exports] == ["died", "finished"]
