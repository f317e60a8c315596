"""The review server answers every request, and answers it in JSON: a body with Infinity or NaN, nested too
deeply, too large, not JSON, or with a field of the wrong type is a 400 (or 413) with a message the page shows,
never an empty reply and a traceback on the console; a mark on a system the evaluation did not score is refused
and never counted; a burst of 300 concurrent decisions is served and recorded whole; a port out of range or in use
is an exit-2 message."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from pathlib import Path

import pytest

from ftorch.review import store
from ftorch.review.eval_view import EvalReview
from ftorch.review.server import MAX_BODY, MAX_DEPTH

from conftest import chat, run_cli
from support.review import make_eval, open_data, post, request, serving


@pytest.fixture
def data(chat_jsonl) -> Path:
    return chat_jsonl([chat(f"question {n}", f"answer {n}") for n in range(1, 4)], "train.jsonl")


def test_hostile_bodies_are_400_with_a_message_and_no_traceback(data, capsys):
    review = open_data(data)
    digest = review.index.hashes[1]
    nested = b'{"line": 1, "hash": "h", "action": "edit", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    deep: list = []
    for _ in range(MAX_DEPTH + 3):  # under Python's recursion limit, over the API's
        deep = [deep]
    shallow_but_deep = {"line": 1, "hash": digest, "action": "edit", "messages": deep}
    cases = [
        (b'{"line": Infinity, "hash": "h", "action": "accept"}', "Infinity"),
        (b'{"line": NaN, "hash": "h", "action": "accept"}', "NaN"),
        (b'{"line": 1, "hash": "h", "action": "accept", "note": -Infinity}', "Infinity"),
        (b'{"line": 1e400, "hash": "h", "action": "accept"}', "line must be a whole number"),
        (b'{"line": 1.5, "hash": "h", "action": "accept"}', "line must be a whole number"),
        (b'{"line": true, "hash": "h", "action": "accept"}', "line must be a whole number"),
        (b'{"line": "x", "hash": "h", "action": "accept"}', "line must be a whole number"),
        (b'{"hash": "h", "action": "accept"}', "missing field 'line'"),
        (b'{"line": 1, "hash": ["h"], "action": "accept"}', "hash must be text"),
        (nested, "nested too deeply"),
        (json.dumps(shallow_but_deep).encode(), "nested too deeply"),
        (b"[1, 2]", "expected a JSON object"),
        (b"{not json", "not JSON"),
        (b'{"line": "\xff"}', "not UTF-8"),
    ]
    with serving(review) as server:
        for body, message in cases:
            status, answer = post(server, "/api/decide", body)
            assert (status, answer["ok"]) == (400, False), (body[:60], answer)
            assert message in answer["error"], (body[:60], answer)
        status, answer = request(server, "GET", "/api/items?start=abc")
        assert status == 400 and "start must be a whole number" in answer["error"]
        for path in ("/api/mark", "/api/negative", "/api/validate"):
            status, answer = post(server, path, b'{"line": Infinity}')
            assert status == 400 and "Infinity" in answer["error"]
        status, answer = post(server, "/api/decide", {"line": 1, "hash": digest, "action": "accept"})
        assert status == 200 and answer["ok"]  # the server still serves after all of that
    assert capsys.readouterr().err == ""  # no traceback, no line on the console
    records, _ = store.read_records(store.review_path(data))
    assert [(r["line"], r["action"]) for r in records] == [(1, "accept")]


def test_an_oversized_or_unsized_body_is_refused_without_reading_it(data, capsys):
    with serving(open_data(data)) as server:
        for length, status in ((str(MAX_BODY + 1), 413), ("-5", 400), ("lots", 400)):
            connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
            connection.putrequest("POST", f"/api/decide?token={server.token}")
            connection.putheader("Content-Length", length)
            connection.endheaders()  # no body sent: the server must answer without waiting for it
            response = connection.getresponse()
            answer = json.loads(response.read())
            connection.close()
            assert response.status == status and not answer["ok"] and "Content-Length" in answer["error"]
    assert capsys.readouterr().err == ""


def test_a_mark_on_a_system_the_evaluation_did_not_score_is_refused_and_never_counted(tmp_path, capsys):
    run, _ = make_eval(tmp_path)
    review = EvalReview.open(run)
    with serving(review) as server:
        status, answer = post(server, "/api/mark", {"section": "task", "item": "1", "system": "root", "mark": "wrong"})
        assert status == 400 and "has no 'root' answer" in answer["error"] and "tuned" in answer["error"]
        status, answer = post(server, "/api/mark", {"section": "general", "item": "if-001", "system": "prompted",
                                                    "mark": "wrong"})  # general was run on base and tuned only
        assert status == 400 and "has no 'prompted' answer" in answer["error"]
        status, answer = post(server, "/api/mark", {"section": "task", "item": "1", "system": "tuned",
                                                    "mark": "agree"})
        assert status == 200 and answer["human_check"] == {"task": {"checked": 1, "wrong": 0, "agreement": 1.0}}
    assert capsys.readouterr().err == ""
    assert not any(r["system"] == "root" for r in store.read_records(review.marks_file)[0])
    # a line forged into the marks file by hand is not counted either
    with review.marks_file.open("a") as handle:
        handle.write(json.dumps({"section": "task", "item": "2", "system": "root", "mark": "wrong"}) + "\n")
    reopened = EvalReview.open(run)
    assert reopened.summary() == {"task": {"checked": 1, "wrong": 0, "agreement": 1.0}}
    reopened.mark("task", "3", "tuned", "wrong")
    markdown = (reopened.folder / "report.md").read_text() if (reopened.folder / "report.md").exists() else ""
    assert "root" not in markdown
    assert json.loads((reopened.folder / "report.json").read_text())["human_check"]["task"]["checked"] == 2


def test_300_concurrent_decisions_are_all_served_and_recorded(chat_jsonl):
    count = 300
    path = chat_jsonl([chat(f"question {n}", f"answer {n}") for n in range(1, count + 1)], "many.jsonl")
    review = open_data(path)
    hashes = review.index.hashes
    start = threading.Barrier(count)
    results: dict[int, object] = {}

    def decide(line: int) -> None:
        start.wait()  # every connection at the same moment: a short listen queue would reset some
        try:
            results[line] = post(server, "/api/decide", {"line": line, "hash": hashes[line], "action": "accept"})
        except Exception as exc:  # noqa: BLE001 (a reset connection is what this test looks for)
            results[line] = exc

    with serving(review) as server:
        threads = [threading.Thread(target=decide, args=(line,)) for line in range(1, count + 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    failed = {line: result for line, result in results.items() if not (isinstance(result, tuple)
                                                                       and result[0] == 200 and result[1]["ok"])}
    assert len(results) == count and not failed, list(failed.items())[:5]
    reopened = open_data(path)
    assert reopened.decisions.counts()["accept"] == count and reopened.decisions.unreadable == []
    assert len(store.review_path(path).read_bytes().splitlines()) == count


def test_a_port_out_of_range_or_in_use_is_a_message(data):
    for port in ("70000", "-1"):
        done = run_cli("review", str(data), "--port", port, "--no-browser", timeout=120)
        assert done.returncode == 2 and "--port" in done.stderr and "0 to 65535" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("review", str(data), "--port", str(port), "--no-browser", timeout=120)
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
