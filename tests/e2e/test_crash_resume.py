"""Fault injection: kill -9 a run at seeded points (mid-step, while a checkpoint or the adapter is written, during
evaluation), resume, and require the adapter of an uninterrupted run, byte for byte, with run.json truthful after
every kill. Processes are forked from a server that has imported torch and transformers once (multiprocessing's
forkserver), so a kill/resume cycle costs a model load, not an interpreter start; a kill is SIGKILL sent by the
process to itself at the chosen point, optionally after a random delay (a timer thread), or mid-write (half
the file's bytes on disk, then SIGKILL). bench/soak_resume.py runs the same cycles many more times."""

from __future__ import annotations

import signal

import pytest

from support.crash import (
    ARGS,
    MAX_STEPS,
    QUICK_EVAL,
    adapter_bytes,
    assert_truthful_after_kill,
    crash_and_resume,
    kill_points,
    run_cli_forked,
    the_run,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_anywhere_then_resume_gives_the_uninterrupted_adapter(reference, tmp_path, seed):
    """3 seeds x 8 kill points (24), each followed by a resume; the last resume reaches the reference adapter."""
    crash_and_resume(tmp_path, kill_points(seed, 8), reference)


def test_kill_while_the_final_adapter_is_written_never_trains_past_max_steps(reference, tmp_path):
    """The last checkpoint is complete, adapter/ is not: resume saves it from the checkpoint, no step more."""
    crash_and_resume(tmp_path, [("publish", 1, 0.0)], reference)
    run_dir = the_run(tmp_path / "1")
    assert "saving its adapter without training further" in (run_dir / "train.log").read_text()
    assert not (run_dir / "checkpoints" / f"checkpoint-{MAX_STEPS + 1}").exists()


def test_kill_during_evaluation_leaves_a_truthful_record(reference, tmp_path):
    from ftorch.run.rundir import RunDir

    assert run_cli_forked(["train", f"paths.runs={tmp_path}", *ARGS]) == 0
    run_dir = the_run(tmp_path)
    for delay in (0.0, 0.2):
        assert run_cli_forked(["eval", str(run_dir), *QUICK_EVAL], kill=("eval", 1, delay)) == -signal.SIGKILL
        assert_truthful_after_kill(run_dir)
        folders = sorted((run_dir / "eval").iterdir())
        assert (folders[-1] / "INCOMPLETE").is_file()  # the killed one says so
        assert all((p / "report.json").is_file() for p in folders if not (p / "INCOMPLETE").is_file())
    assert run_cli_forked(["eval", str(run_dir), *QUICK_EVAL]) == 0  # and a new evaluation still succeeds
    record = RunDir(run_dir).observed()
    assert record.evaluation.status == "succeeded" and record.status == "succeeded"
    assert adapter_bytes(run_dir) == reference
