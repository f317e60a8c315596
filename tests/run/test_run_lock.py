"""One writer per run (an flock on RUN/run.lock), what readers report, corrupt run.json files. In-process, fast."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest

from ftorch.backends import Result
from ftorch.cli import main
from ftorch.errors import ConfigError
from ftorch.run import lifecycle as runner
from ftorch.run.rundir import RunDir


def make_run(folder: Path, status: str = "running", **fields) -> RunDir:
    run = RunDir(folder)
    folder.mkdir(parents=True)
    run.update(status=status, recipe="r", provider="peft", started="2026-01-01T00:00:00+00:00", ended=None,
               pid=os.getpid(), host=socket.gethostname(), **fields)
    return run


def test_one_holder_at_a_time_and_readers_see_who(tmp_path):
    run = make_run(tmp_path / "run")
    with run.owned("train"):
        assert run.holder() == {"pid": os.getpid(), "host": socket.gethostname()}
        assert run.observed().status == "running"
        with pytest.raises(ConfigError, match=f"in use by pid {os.getpid()} on {socket.gethostname()}"), \
                run.owned("resume"):
            pass
    assert run.holder() is None


def test_a_running_run_whose_lock_is_free_has_died(tmp_path):
    run = make_run(tmp_path / "run", last_checkpoint_step=6)
    with run.owned("train"):
        pass  # the owner is gone; run.json still says running
    seen = run.observed()
    assert seen.status == "died" and "step 6" in seen.error and f"ftorch resume {run.path}" in seen.error


def test_an_evaluation_left_running_has_died(tmp_path):
    run = make_run(tmp_path / "run", status="succeeded", evaluation={"status": "running", "dir": "x"})
    run.lock_file.touch()
    assert run.observed().evaluation.status == "died"


@pytest.mark.parametrize("command", ["resume", "eval", "cancel"])
def test_commands_refuse_a_run_in_use(tmp_path, capsys, command):
    run = make_run(tmp_path / "run")
    with run.owned("train"):
        code = main([command, str(run.path)])
    err = capsys.readouterr().err
    assert code == 2 and f"in use by pid {os.getpid()}" in err and "Traceback" not in err


def test_runs_ls_reports_died_and_skips_a_corrupt_record(tmp_path, capsys):
    run = make_run(tmp_path / "runs" / "a", last_checkpoint_step=4)
    run.lock_file.touch()
    torn = tmp_path / "runs" / "b" / "run.json"
    torn.parent.mkdir()
    torn.write_text('{"status": "runn')
    assert main(["runs", "ls", str(tmp_path / "runs")]) == 0
    captured = capsys.readouterr()
    assert "died" in captured.out and f"{run.path} died at step 4" in captured.out
    assert f"ftorch resume {run.path}" in captured.out
    assert "skipping" in captured.err and "corrupt" in captured.err and "Traceback" not in captured.err


def test_resume_refuses_a_corrupt_record(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_bytes(b'{"status": "interrupted", "rec\x00')
    assert main(["resume", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "run.json is corrupt" in err and "Traceback" not in err


def test_a_second_ctrl_c_cannot_cut_the_status_short(tmp_path, monkeypatch):
    """Ctrl-C arrives again while run.json is written, and a third while the plot is drawn: still interrupted."""
    run = make_run(tmp_path / "run")
    real_finish = RunDir.finish

    def finish(self, status, **fields):
        os.kill(os.getpid(), signal.SIGINT)  # held back until the record is written
        return real_finish(self, status, **fields)

    monkeypatch.setattr(RunDir, "finish", finish)
    monkeypatch.setattr(runner, "loss_plot", lambda *a: os.kill(os.getpid(), signal.SIGINT))

    def work():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.supervise(run, work, "t")
    assert run.read()["status"] == "interrupted"


def test_a_signal_while_success_is_recorded_comes_after_it(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    real_finish = RunDir.finish

    def finish(self, status, **fields):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_finish(self, status, **fields)

    monkeypatch.setattr(RunDir, "finish", finish)
    with runner.sigterm_as_interrupt(), pytest.raises(runner.RunInterrupted):
        runner.supervise(run, lambda: Result("succeeded", metrics={"global_step": 1}), "t")
    assert run.read()["status"] == "succeeded"


def test_a_full_disk_is_an_exit_2_error_with_the_resume_command(tmp_path):
    import errno

    run = make_run(tmp_path / "run")

    def work():
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "optimizer.pt")
        except OSError as exc:
            raise RuntimeError("PytorchStreamWriter failed writing file") from exc

    with pytest.raises(runner.DiskFull) as caught:
        runner.supervise(run, work, "t")
    assert caught.value.exit_code == 2
    record = run.read()
    assert record["status"] == "failed" and "disk is full" in record["error"] and "ftorch resume" in record["error"]


def test_resume_drops_incomplete_checkpoints_and_later_metrics(tmp_path, capsys):
    from ftorch.backends.hf import checkpoints

    run = make_run(tmp_path / "run")
    for step, files in ((2, None), (4, {"optimizer.pt": b""})):
        folder = run.checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        for name in ("adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt",
                     "rng_state.pth", "training_args.bin"):
            (folder / name).write_bytes((files or {}).get(name, b"x"))
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 8}))
    run.metrics.write_text("".join(json.dumps({"step": s, "kind": "train"}) + "\n" for s in (1, 2, 3, 4))
                           + '{"step": 5, "ki')
    assert checkpoints.resume_point(run) == str(run.checkpoints / "checkpoint-2")
    assert not (run.checkpoints / "checkpoint-4").exists()
    assert [json.loads(line)["step"] for line in run.metrics.read_text().splitlines()] == [1, 2]
    assert "checkpoint-4 is incomplete (empty optimizer.pt)" in capsys.readouterr().err
    assert "checkpoint-4 is incomplete" in run.log.read_text()
    assert not checkpoints.training_finished(str(run.checkpoints / "checkpoint-2"))
