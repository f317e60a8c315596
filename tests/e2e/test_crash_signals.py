"""Signals, their timing, a full disk and two resumes at once: run.json and the console always tell the truth.
Runs are forked from the crash harness's preloaded server, tests/support/crash.py (a cycle costs a model load, not
a start-up)."""

from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest

from support.crash import (
    ARGS,
    MAX_STEPS,
    QUICK_EVAL,
    assert_finished_like,
    run_cli_forked,
    start_forked,
    the_run,
)

pytestmark = pytest.mark.slow
LONG = [*ARGS, "train.max_steps=400"]  # replaces max_steps: a run that is still training when signalled


def wait_for(predicate, process, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not _holds(predicate):
        assert process.is_alive(), "the run ended before the moment to signal it"
        assert time.time() < deadline
        time.sleep(0.02)


def _holds(predicate) -> bool:
    """The predicate, where a folder the run renames while it is searched (.adapter.partial -> adapter) counts as
    not yet."""
    try:
        return bool(predicate())
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("seed,signals", [(1, "INT INT"), (2, "INT INT INT"), (3, "TERM"), (4, "INT TERM INT"),
                                          (5, "TERM TERM")])
def test_repeated_signals_leave_a_true_status(tmp_path, seed, signals):
    """Ctrl-C twice or three times 0.05-0.3 s apart, or SIGTERM, at a random moment of training or saving."""
    from ftorch.run.rundir import RunDir

    rng = random.Random(seed)
    console = tmp_path / "console.txt"
    process = start_forked(["train", f"paths.runs={tmp_path / 'runs'}", *LONG], output=console)
    wait_for(lambda: list(tmp_path.rglob("checkpoint-2/trainer_state.json")), process)
    time.sleep(rng.uniform(0, 0.5))
    for name in signals.split():
        try:
            os.kill(process.pid, getattr(signal, f"SIG{name}"))
        except ProcessLookupError:  # it had already finished unwinding
            break
        time.sleep(rng.uniform(0.05, 0.3))
    process.join(60)
    text = console.read_text()
    run_dir = the_run(tmp_path / "runs")
    run = RunDir(run_dir)
    record = run.read()
    assert process.exitcode == 130, text[-3000:]
    assert record["status"] == "interrupted" and run.holder() is None, record
    assert f"ftorch resume {run_dir}" in record["error"] and f"ftorch resume {run_dir}" in text
    assert "Traceback" not in text and "This is a bug" not in text, text[-3000:]
    assert ("SIGTERM" in record["error"]) == signals.startswith("TERM")


def test_sigterm_during_evaluation_is_recorded(tmp_path):
    from ftorch.run.rundir import RunDir

    console = tmp_path / "console.txt"
    process = start_forked(["train", f"paths.runs={tmp_path / 'runs'}", *ARGS, "eval=json", *QUICK_EVAL],
                           kill=None, output=console)
    wait_for(lambda: list(tmp_path.rglob("eval/*/INCOMPLETE")), process)
    os.kill(process.pid, signal.SIGTERM)
    process.join(60)
    run_dir = the_run(tmp_path / "runs")
    record = RunDir(run_dir).observed()
    text = console.read_text()
    assert process.exitcode == 130, text[-3000:]
    assert record.status == "succeeded" and record.evaluation.status == "interrupted", record
    assert not list((run_dir / "eval").iterdir())  # the unfinished evaluation's folder is gone
    assert "evaluation: interrupted" in text and "Traceback" not in text, text[-3000:]


def test_full_disk_is_a_clear_error_and_resume_recovers(reference, tmp_path):  # noqa: F811
    console = tmp_path / "console.txt"
    code = run_cli_forked(["train", f"paths.runs={tmp_path / 'runs'}", *ARGS], kill=("enospc", 5, 0.0),
                          output=console)
    text = console.read_text()
    run_dir = the_run(tmp_path / "runs")
    record = json.loads((run_dir / "run.json").read_text())
    assert code == 2 and "disk is full" in text and "Traceback" not in text, text[-3000:]
    assert record["status"] == "failed" and "disk is full" in record["error"]
    assert f"ftorch resume {run_dir}" in record["error"]
    assert run_cli_forked(["resume", str(run_dir)]) == 0
    assert_finished_like(run_dir, reference)


def test_two_resumes_at_the_same_instant_one_trains(reference, tmp_path):  # noqa: F811
    from ftorch.run.rundir import RunDir

    assert run_cli_forked(["train", f"paths.runs={tmp_path / 'runs'}", *ARGS], kill=("step", 3, 0.0)) == -9
    run_dir = the_run(tmp_path / "runs")
    outputs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    processes = [start_forked(["resume", str(run_dir)], output=out) for out in outputs]
    for process in processes:
        process.join(120)
    codes = sorted(p.exitcode for p in processes)
    texts = [out.read_text() for out in outputs]
    assert codes == [0, 2], texts
    refused = next(t for t in texts if "cannot resume" in t)
    assert "in use by pid" in refused and "Traceback" not in refused
    assert_finished_like(run_dir, reference)
    assert RunDir(run_dir).read()["resumed"] == ["died"]
    assert max(json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()) == MAX_STEPS
