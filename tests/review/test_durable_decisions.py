"""No confirmed review decision is lost: a record is acknowledged only once the whole of it is written and
fsynced; a short write is continued; a write the disk refuses part-way (ENOSPC) is rolled back to the size before
it and the page gets an error, so the next decision is never glued onto a torn line; a torn last line left by a
crash is cut off on opening and the page and the terminal say so. Tested with os.write made short or failing, and
on a real full tmpfs (root only)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from ftorch.review import store
from ftorch.review.eval_view import EvalReview

from conftest import chat, run_cli
from support.review import make_eval, open_data, post, request, serving


class _Os:
    """The os module as store.py sees it, with another os.write (nothing else in the process is affected)."""

    def __init__(self, write):
        self.write = write

    def __getattr__(self, name: str):
        return getattr(os, name)


def _long_edit(review, line: int, size: int = 10_000) -> list[dict]:
    example, _ = review.index.example(line)
    return [*example["messages"][:-1], {"role": "assistant", "content": "long answer " + "x" * size}]


@pytest.fixture
def data(chat_jsonl) -> Path:
    return chat_jsonl([chat(f"question {n}", f"answer {n}") for n in range(1, 5)], "train.jsonl")


def test_a_short_write_is_continued_until_the_record_is_whole(data, monkeypatch):
    review = open_data(data)
    calls = []

    def short(fd, payload):  # the disk takes 100 bytes at a time, as a nearly full one can
        calls.append(len(payload))
        return os.write(fd, bytes(payload[:100]))

    monkeypatch.setattr(store, "os", _Os(short))
    result = review.decide(2, review.index.hashes[2], "edit", messages=_long_edit(review, 2, 1000))
    assert result["ok"] and len(calls) > 10
    monkeypatch.undo()
    records, unreadable = store.read_records(store.review_path(data))
    assert unreadable == [] and records[-1]["messages"][-1]["content"].endswith("x" * 1000)
    assert open_data(data).decisions.current[2]["action"] == "edit"


def test_a_disk_full_part_way_is_rolled_back_and_reported_to_the_page(data, monkeypatch, capsys):
    review = open_data(data)
    hashes = review.index.hashes
    review_file = store.review_path(data)
    with serving(review) as server:
        assert post(server, "/api/decide", {"line": 1, "hash": hashes[1], "action": "accept"})[0] == 200
        before = review_file.read_bytes()

        def full(fd, payload):  # the first 4096 bytes fit, then the disk is full
            if len(payload) > 4096:
                return os.write(fd, bytes(payload[:4096]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(store, "os", _Os(full))
        status, answer = post(server, "/api/decide", {"line": 2, "hash": hashes[2], "action": "edit",
                                                      "messages": _long_edit(review, 2)})
        assert status == 507 and answer["ok"] is False
        assert "not saved" in answer["error"] and "No space left on device" in answer["error"]
        assert review_file.read_bytes() == before  # rolled back: no torn line for the next record to join
        status, answer = request(server, "GET", "/api/meta")
        assert answer["decisions"]["edit"] == 0  # the page's state never took the refused decision
        monkeypatch.undo()  # space again
        assert post(server, "/api/decide", {"line": 3, "hash": hashes[3], "action": "reject"})[0] == 200
        assert post(server, "/api/decide", {"line": 2, "hash": hashes[2], "action": "edit",
                                            "messages": _long_edit(review, 2)})[0] == 200
    assert capsys.readouterr().err == ""
    reopened = open_data(data)
    assert {n: r["action"] for n, r in reopened.decisions.current.items()} == {1: "accept", 2: "edit", 3: "reject"}
    assert reopened.decisions.unreadable == [] and reopened.decisions.repaired == ""


def test_a_failed_fsync_is_not_acknowledged_either(data, monkeypatch):
    review = open_data(data)
    review.decide(1, review.index.hashes[1], "accept")
    before = store.review_path(data).read_bytes()

    class NoSync(_Os):
        def fsync(self, fd):
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(store, "os", NoSync(os.write))
    with pytest.raises(store.NotSaved, match="not saved: Input/output error"):
        review.decide(2, review.index.hashes[2], "reject")
    monkeypatch.undo()
    assert store.review_path(data).read_bytes() == before and 2 not in review.decisions.current


def test_a_torn_last_line_is_cut_off_on_opening_and_the_page_and_terminal_say_so(data):
    review = open_data(data)
    hashes = review.index.hashes
    review.decide(1, hashes[1], "accept")
    review.decide(2, hashes[2], "reject")
    review_file = store.review_path(data)
    whole = review_file.read_bytes()
    with review_file.open("ab") as handle:
        handle.write(b'{"v": 1, "action": "edit", "line": 3, "messages": [{"role": "us')  # a crash mid-write
    done = run_cli("review", str(data), "--export", timeout=120)
    assert done.returncode == 0 and "last line was cut off" in done.stderr and str(review_file) in done.stderr
    assert review_file.read_bytes() == whole
    with review_file.open("ab") as handle:
        handle.write(b'{"v": 1, "action": "acc')
    reopened = open_data(data)
    meta = reopened.meta()
    assert "last line was cut off" in meta["repaired"] and meta["unreadable_records"] == []
    assert review_file.read_bytes() == whole
    reopened.decide(3, hashes[3], "accept")  # the next decision starts a line of its own
    again = open_data(data)
    assert {n: r["action"] for n, r in again.decisions.current.items()} == {1: "accept", 2: "reject", 3: "accept"}
    assert again.decisions.repaired == "" and again.decisions.unreadable == []


def test_a_whole_last_record_missing_only_its_newline_is_kept(data):
    review_file = store.review_path(data)
    digest = open_data(data).index.hashes[4]
    review_file.write_text(json.dumps({"v": 1, "action": "reject", "line": 4, "hash": digest}))
    reopened = open_data(data)
    assert reopened.decisions.current[4]["action"] == "reject" and reopened.decisions.repaired == ""
    assert review_file.read_text().endswith("}\n")
    review_file.write_text(json.dumps({"v": 1, "action": "reject", "line": 4, "hash": digest}) + "\n<garbage>\n")
    assert "cut off" in open_data(data).decisions.repaired and review_file.read_text().endswith("}\n")


def test_a_line_torn_by_another_process_after_opening_does_not_swallow_the_next_decision(data):
    review = open_data(data)
    hashes = review.index.hashes
    review.decide(1, hashes[1], "accept")
    with store.review_path(data).open("ab") as handle:
        handle.write(b'{"v": 1, "action": "rej')  # another writer died mid-line while this page was open
    review.decide(2, hashes[2], "reject")
    reopened = open_data(data)
    assert {n: r["action"] for n, r in reopened.decisions.current.items()} == {1: "accept", 2: "reject"}
    assert reopened.decisions.unreadable == [2]  # reported, and the confirmed decision after it kept


def test_the_marks_file_of_an_evaluation_is_repaired_too(tmp_path):
    run, _ = make_eval(tmp_path)
    review = EvalReview.open(run)
    review.mark("task", "1", "tuned", "agree")
    with review.marks_file.open("ab") as handle:
        handle.write(b'{"v": 1, "section": "task", "item": "2", "sys')
    reopened = EvalReview.open(run)
    assert "last line was cut off" in reopened.meta()["repaired"]
    reopened.mark("task", "2", "tuned", "wrong")
    assert EvalReview.open(run).summary()["task"] == {"checked": 2, "wrong": 1, "agreement": 0.5}


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs: mounting needs root (CAP_SYS_ADMIN); elsewhere the test is skipped, saying why."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True,
                             text=True, check=False) if os.geteuid() == 0 else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN): " +
                    (mounted.stderr.strip() if mounted else "not root"))
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 1024)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_no_confirmed_decision_is_lost_on_a_full_tmpfs(small_disk, capsys):
    data = small_disk / "train.jsonl"
    data.write_text("".join(json.dumps(chat(f"question {n}", f"answer {n}")) + "\n" for n in range(1, 5)))
    review = open_data(data)
    hashes = review.index.hashes
    review_file = store.review_path(data)
    with serving(review) as server:
        assert post(server, "/api/decide", {"line": 1, "hash": hashes[1], "action": "accept"})[0] == 200
        filler = _fill(small_disk)
        os.truncate(filler, filler.stat().st_size - 4096)  # one page free: a long record fits only in part
        before = review_file.read_bytes()
        status, answer = post(server, "/api/decide", {"line": 2, "hash": hashes[2], "action": "edit",
                                                      "messages": _long_edit(review, 2, 20_000)})
        assert status == 507 and "No space left on device" in answer["error"]
        assert review_file.read_bytes() == before
        status, answer = post(server, "/api/decide", {"line": 3, "hash": hashes[3], "action": "reject"})
        assert status == 200 and answer["ok"]  # a short record still fits: saved, on a line of its own
        filler.unlink()
        assert post(server, "/api/decide", {"line": 2, "hash": hashes[2], "action": "edit",
                                            "messages": _long_edit(review, 2, 20_000)})[0] == 200
    assert capsys.readouterr().err == ""
    reopened = open_data(data)
    assert {n: r["action"] for n, r in reopened.decisions.current.items()} == {1: "accept", 2: "edit", 3: "reject"}
    assert reopened.decisions.unreadable == [] and reopened.decisions.repaired == ""
