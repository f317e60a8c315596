"""What `ftorch chat` and `ftorch serve` do with bad input: flags out of range are refused by argparse, an unfinished
run is called unfinished (not an "export error"), a chat line too long for the context or not UTF-8 is refused with
a message (at a terminal the session goes on; from a pipe it exits 2), and reading a huge line stays bounded.

The tests marked slow chat with the tiny run that tests/e2e trains once per session (tiny_run.trained_run)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from ftorch.chat import MessageRefused, read_message
from ftorch.cli import main
from ftorch.run.rundir import RunDir

from conftest import ROOT
from support.tiny_run import trained_run  # the shared tiny run: trained once whoever asks first


def make_run(folder: Path, status: str) -> RunDir:
    run = RunDir(folder)
    folder.mkdir(parents=True)
    run.update(status=status, recipe="r", provider="peft", started="2026-01-01T00:00:00+00:00", ended=None,
               pid=os.getpid(), host=socket.gethostname(), error=None)
    with run.owned("train"):  # leaves run.lock behind, free: a 'running' record is then a run that died
        pass
    return run


# ---- flags

@pytest.mark.parametrize("argv, message", [
    (["chat", "runs/x", "--max-new-tokens", "-5"], "'-5' is not a positive whole number"),
    (["chat", "runs/x", "--max-new-tokens", "0"], "'0' is not a positive whole number"),
    (["chat", "runs/x", "--max-new-tokens", "many"], "'many' is not a whole number"),
    (["serve", "runs/x", "--port", "70000"], "'70000' is not a port number (0 to 65535)"),
    (["serve", "runs/x", "--port", "-1"], "'-1' is not a port number (0 to 65535)"),
])
def test_numeric_flags_out_of_range_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    flag = argv[2]
    assert f"argument {flag}: {message}" in err and "Traceback" not in err


# ---- an unfinished run

@pytest.mark.parametrize("command", ["chat", "serve"])
@pytest.mark.parametrize("status, shown", [("failed", "failed"), ("interrupted", "interrupted"), ("running", "died")])
def test_an_unfinished_run_is_named_as_such(tmp_path, capsys, command, status, shown):
    run = make_run(tmp_path / "run", status)
    assert main([command, str(run.path)]) == 2
    err = capsys.readouterr().err
    assert "export error" not in err and "Traceback" not in err
    assert "run not ready" in err
    assert (f"{run.path} has not finished training (status: {shown}); {command} needs a finished run: "
            f"ftorch resume {run.path}") in " ".join(err.split())


def test_a_run_still_training_says_wait(tmp_path, capsys):
    run = make_run(tmp_path / "run", "running")
    with run.owned("train"):  # this process is the trainer
        assert main(["chat", str(run.path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{run.path} is still training (status: running, pid {os.getpid()}); chat needs a finished run" in err
    assert "wait for it to finish" in err and "export error" not in err


def test_not_a_run_is_named_as_such(tmp_path, capsys):
    assert main(["chat", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "no such run" in err and "no such run directory" in err and "export error" not in err


# ---- reading a line

def test_a_line_over_the_limit_is_refused_and_the_next_one_read():
    stream = io.BytesIO(b"x" * 5000 + b"\nhello\n")
    with pytest.raises(MessageRefused, match="this message is 5,000 bytes: longer than the 4,096 bytes"):
        read_message(stream, 4096)
    assert read_message(stream, 4096) == "hello"
    assert read_message(stream, 4096) is None
    exact = io.BytesIO(b"y" * 4096 + b"\n" + b"z" * 4096)  # at the limit, with or without its newline: accepted
    assert read_message(exact, 4096) == "y" * 4096 and read_message(exact, 4096) == "z" * 4096


def test_a_line_that_is_not_utf8_is_refused_and_the_next_one_read():
    stream = io.BytesIO(b"caf\xe9 au lait\nd\xc3\xa9j\xc3\xa0 vu\n")
    with pytest.raises(MessageRefused, match=r"not valid UTF-8 \(byte 0xe9 at position 4\)"):
        read_message(stream, 4096)
    assert read_message(stream, 4096) == "déjà vu"


class Endless(io.RawIOBase):
    """`size` bytes of one line, produced as they are read (never held whole), then a newline and 'next'."""

    def __init__(self, size: int):
        self.left, self.tail = size, b"\nnext\n"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.left:
            n = min(len(buffer), self.left)
            buffer[:n] = b"a" * n
            self.left -= n
            return n
        n = min(len(buffer), len(self.tail))
        buffer[:n], self.tail = self.tail[:n], self.tail[n:]
        return n


def test_a_huge_line_is_read_in_bounded_memory():
    stream = io.BufferedReader(Endless(64 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(MessageRefused, match="this message is 67,108,864 bytes"):
            read_message(stream, 4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20  # a plain readline() would hold all 64 MiB
    assert read_message(stream, 4096) == "next"


# ---- chatting with the tiny run (loads the model: slow)

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_run(tmp_path_factory.getbasetemp())


def chat_pipe(run_dir: Path, data: bytes, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftorch", "chat", str(run_dir), *flags], input=data, cwd=ROOT,
                          capture_output=True, timeout=240, env=os.environ.copy())


@pytest.mark.slow
@pytest.mark.parametrize("data, flags, message", [
    (b"a" * 2_000_000 + b"\n", [], "this message is 2,000,000 bytes: longer than the 4,096 bytes that could fit the "
                                   "model's context"),
    (b"hello\n", ["--max-new-tokens", "512"], "--max-new-tokens: 512 leaves no room for a message in the model's "
                                              "context of 512 tokens"),
])
def test_chat_from_a_pipe_refuses_with_exit_2(trained, data, flags, message):
    result = chat_pipe(trained, data, *flags)
    err = result.stderr.decode()
    assert result.returncode == 2, err[-3000:]
    assert message in " ".join(err.split()) and "Traceback" not in err
    assert "tuned>" not in result.stdout.decode()  # nothing was generated


@pytest.mark.slow
def test_chat_at_a_terminal_refuses_a_message_and_goes_on(trained):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "ftorch", "chat", str(trained), "--max-new-tokens", "8"],
                          cwd=str(ROOT), env=os.environ.copy(), timeout=240)
    child.expect(b"you> ")
    child.sendline(b"word " * 700)  # under the terminal's 4 KiB line, over the 504 tokens the context leaves
    child.expect(rb"message refused: this message is ([\d,]+) tokens; the model's context of 512 tokens leaves "
                 rb"504 for it after --max-new-tokens 8")
    assert int(child.match.group(1).replace(b",", b"")) > 504
    child.expect(b"you> ")
    child.sendline(b"caf\xe9")
    child.expect(rb"message refused: this message is not valid UTF-8 \(byte 0xe9 at position 4\)")
    child.expect(b"you> ")
    child.sendline(b"Book a call with Ana Monday 9am.")
    child.expect(b"tuned> ")
    child.expect(b"you> ")
    child.sendline(b"/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert b"Traceback" not in child.before
