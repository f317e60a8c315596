"""backends/child.py on tiny Python children: one stop policy (SIGINT, SIGTERM, SIGKILL to the child's whole
process group), one result record, and what a child that dies without one turns into."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

import ftorch
from ftorch.backends import child
from ftorch.errors import BackendError, ConfigError, Problem
from ftorch.run.rundir import RunDir

SRC = str(Path(ftorch.__file__).resolve().parents[1])
FAST = ((signal.SIGINT, 0.5), (signal.SIGTERM, 0.5), (signal.SIGKILL, 5.0))


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, "PYTHONUNBUFFERED": "1"}


def interrupt_soon(after: float = 0.5) -> threading.Timer:
    """Ctrl-C in this process after `after` seconds (the parent's KeyboardInterrupt while it waits)."""
    timer = threading.Timer(after, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_a_child_that_reports_a_result_becomes_that_result(tmp_path):
    run = RunDir(tmp_path)
    code = ("import sys\nfrom ftorch.backends import child\n"
            "child.report(sys.argv[1], 'succeeded', metrics={'final_loss': 1.5}, artifacts={'adapter': 'a'}, "
            "extra={'device': 'cpu'})")
    ended = child.supervise(python(code, str(tmp_path)), run, what="tiny child", env=env())
    assert ended.code == 0 and ended.record["status"] == "succeeded"
    result = child.outcome(ended, where="provider=x", log=run.log)
    assert (result.status, result.metrics, result.artifacts, result.extra) == (
        "succeeded", {"final_loss": 1.5}, {"adapter": "a"}, {"device": "cpu"})
    assert not (tmp_path / child.RESULT).exists()  # read once, then gone
    assert "tiny child started (pid " in run.log.read_text()


def test_a_child_error_comes_back_as_the_same_error_type(tmp_path):
    run = RunDir(tmp_path)
    code = ("import sys\nfrom ftorch.backends import child\nfrom ftorch.errors import ConfigError, Problem\n"
            "error = ConfigError(Problem('train.lr', 'too high', 'lower it'))\n"
            "child.report_error(sys.argv[1], error)\nsys.exit(error.exit_code)")
    ended = child.supervise(python(code, str(tmp_path)), run, what="tiny child", env=env())
    with pytest.raises(ConfigError) as info:
        child.outcome(ended, where="provider=x", log=run.log)
    assert ended.code == 2 and info.value.problems == [Problem("train.lr", "too high", "lower it")]


def test_a_child_that_dies_without_a_record_is_a_backend_error_with_its_last_lines(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / child.RESULT).write_text(json.dumps({"status": "succeeded"}))  # an earlier attempt's
    code = "import os, signal\nprint('loading', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)"
    chunks: list[bytes] = []
    ended = child.supervise(python(code), run, what="tiny child", env=env(), pump=chunks.append)
    assert ended.code == -signal.SIGKILL and ended.record is None
    assert b"".join(chunks) == b"loading\n" and chunks[-1] == b""  # b"" marks the end of the output
    with pytest.raises(BackendError) as info:
        child.outcome(ended, where="provider=x", log=run.log, tail=["loading"])
    text = info.value.render()
    assert "provider=x: the training process exited with code -9 without a result" in text
    assert "    | loading" in text and str(run.log) in text


def test_interrupted_children_are_interruptions(tmp_path):
    run = RunDir(tmp_path)
    for ended in (child.Ended(130, {"status": "interrupted"}), child.Ended(-signal.SIGTERM, None)):
        with pytest.raises(KeyboardInterrupt):
            child.outcome(ended, where="provider=x", log=run.log)


STUBBORN = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGINT, lambda *a: print('ignoring SIGINT', flush=True))\n"
            "{more}"
            "grandchild = subprocess.Popen([sys.executable, '-c', 'import signal, time; '\n"
            "    'signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); '\n"
            "    'time.sleep(60)'])\n"
            "print('grandchild', grandchild.pid, flush=True)\n"
            "time.sleep(60)\n")


def test_ctrl_c_stops_a_child_that_ignores_sigint_with_sigterm(tmp_path, monkeypatch):
    monkeypatch.setattr(child, "STOP_POLICY", FAST)
    run = RunDir(tmp_path)
    out: list[bytes] = []
    timer = interrupt_soon()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        child.supervise(python(STUBBORN.format(more="")), run, what="stubborn", env=env(), pump=out.append)
    timer.cancel()
    assert time.monotonic() - started < 4
    log = run.log.read_text()
    assert "stopping stubborn" in log and "with SIGINT" in log and "with SIGTERM" in log and "SIGKILL" not in log
    assert f"stubborn exited with {-signal.SIGTERM}" in log and not (tmp_path / child.RESULT).exists()
    text = b"".join(out).decode()
    assert "ignoring SIGINT" in text  # its output still came through while it was being stopped
    # its own child ignores SIGINT and SIGTERM and outlives it: killed with the group once the child exited
    assert gone(int(text.split("grandchild ")[1].split()[0]))


def gone(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):  # dead, waiting to be reaped by init
            return True
        time.sleep(0.05)
    return False


def test_a_child_that_ignores_sigint_and_sigterm_is_killed(tmp_path, monkeypatch):
    monkeypatch.setattr(child, "STOP_POLICY", FAST)
    run = RunDir(tmp_path)
    deaf = STUBBORN.format(more="signal.signal(signal.SIGTERM, signal.SIG_IGN)\n")
    timer = interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        child.supervise(python(deaf), run, what="deaf", env=env())  # no pump: its output goes to the console
    timer.cancel()
    log = run.log.read_text()
    assert "with SIGINT" in log and "with SIGTERM" in log and "with SIGKILL" in log
    assert f"deaf exited with {-signal.SIGKILL}" in log


def test_the_child_holds_the_run_lock(tmp_path):
    run = RunDir(tmp_path)
    code = ("import fcntl, os, sys\nfrom ftorch.backends import child\n"
            "fd = int(sys.argv[2])\nos.fstat(fd)  # inherited, still open\n"
            "child.report(sys.argv[1], 'succeeded', extra={'holds': os.readlink(f'/proc/self/fd/{fd}')})")
    with run.owned("train") as fd:
        ended = child.supervise(python(code, str(tmp_path), str(fd)), run, what="tiny child", env=env())
    assert ended.code == 0 and ended.record["extra"]["holds"] == str(run.lock_file.resolve())


# --- axolotl_child.py --result: the same record from Axolotl's environment, which cannot import ftorch -------

AXOLOTL_CHILD = Path(child.__file__).parent / "axolotl" / "child.py"
SAVES_AND_EXITS_0 = ("import signal, sys, time\n"  # what Axolotl's train does on SIGINT
                     "signal.signal(signal.SIGINT, lambda *a: (print('saving', flush=True), sys.exit(0)))\n"
                     "print('ready', flush=True)\ntime.sleep(30)\n")


@pytest.mark.parametrize("body,status,code", [
    ("print('trained')", "succeeded", 0),
    ("raise ValueError('bad dataset')\n", "failed", 1),
    ("import sys; sys.exit(4)", "failed", 4),
])
def test_axolotl_child_reports_how_the_module_ended(tmp_path, body, status, code):
    (tmp_path / "fake_train.py").write_text(body)
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    command = [sys.executable, str(AXOLOTL_CHILD), "--result", str(child.result_path(run.path)), "-m", "fake_train"]
    ended = child.supervise(command, run, what="axolotl", env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert ended.code == code and ended.record["status"] == status
    if status == "failed":
        with pytest.raises(BackendError) as info:
            child.outcome(ended, where="provider=axolotl", log=run.log, tail=["last line"])
        assert ("bad dataset" if code == 1 else "fake_train exited with code 4") in info.value.render()


def test_axolotl_saving_on_sigint_and_exiting_0_is_still_an_interruption(tmp_path):
    (tmp_path / "fake_train.py").write_text(SAVES_AND_EXITS_0)
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    command = [sys.executable, str(AXOLOTL_CHILD), "--result", str(child.result_path(run.path)), "-m", "fake_train"]
    out: list[bytes] = []

    def pump(chunk: bytes) -> None:  # Ctrl-C to the child's group once it is ready, as a stop would send it
        out.append(chunk)
        if b"ready\n" in b"".join(out) and len(signalled) == 0:
            signalled.append(os.killpg(process_pid(), signal.SIGINT))

    signalled: list[None] = []

    def process_pid() -> int:
        return int(run.log.read_text().split("(pid ")[1].split(")")[0])

    ended = child.supervise(command, run, what="axolotl", env={**os.environ, "PYTHONPATH": str(tmp_path)}, pump=pump)
    assert b"saving" in b"".join(out)
    assert ended.code == 130 and ended.record == {"status": "interrupted"}
    with pytest.raises(KeyboardInterrupt):
        child.outcome(ended, where="provider=axolotl", log=run.log)
