"""The data side of `ftorch review` without a browser: the append-only decisions file (replay, undo, a torn last
line, decisions following their example when the data changed, stale ones reported), live validation through
`data check`'s own checks, export to curated chat + DPO preference files, and the server's token."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ftorch.data.tokens import counter_for
from ftorch.review import store
from ftorch.review.data_view import DataReview
from ftorch.review.export import export, pair_from_edit

from conftest import chat, run_cli


@pytest.fixture
def data(chat_jsonl) -> Path:
    rows = [chat(f"question {n}", f"answer {n}", "be brief") for n in range(1, 5)]
    rows.append(rows[0])  # line 5 duplicates line 1
    rows.append('{"messages": [{"role": "user", "content": "no answer"}]}')  # line 6: no_assistant
    return chat_jsonl(rows, "train.jsonl")


def _open(path: Path) -> DataReview:
    return DataReview.open(path, "chat", counter_for(None))


def test_index_carries_data_check_issues_tokens_and_clusters(data):
    review = _open(data)
    meta = review.meta()
    assert meta["examples"] == 6 and meta["codes"] == {"duplicate": 1, "no_assistant": 1}
    item = review.page(0, 10)["items"][0]
    assert item["line"] == 1 and item["tokens"] > 0
    assert item["cluster"] == {"kind": "exact", "lines": [1, 5]}
    assert [i["code"] for i in review.page(0, 10, code="no_assistant")["items"][0]["issues"]] == ["no_assistant"]
    assert [i["line"] for i in review.page(0, 10, query="QUESTION 3")["items"]] == [3]
    assert review.page(2, 2)["start"] == 2 and len(review.page(2, 2)["items"]) == 2


def test_live_validation_uses_the_data_check_codes(data):
    review = _open(data)
    messages = json.loads(data.read_text().splitlines()[1])["messages"]
    bad = review.index.validate(2, [*messages[:2], {"role": "assistant", "content": "  "}])
    assert not bad["ok"] and [i["code"] for i in bad["issues"]] == ["missing_content"]
    weight = review.index.validate(2, [*messages[:2], {"role": "assistant", "content": "x", "weight": 2}])
    assert [i["code"] for i in weight["issues"]] == ["bad_weight"]
    dupe = review.index.validate(2, json.loads(data.read_text().splitlines()[2])["messages"])
    assert dupe["ok"] and [i["code"] for i in dupe["issues"]] == ["duplicate"]
    good = review.index.validate(2, [*messages[:2], {"role": "assistant", "content": "better"}])
    assert good["ok"] and good["issues"] == [] and good["tokens"] > 0
    with pytest.raises(LookupError):
        review.decide(2, "not-the-hash", "accept")
    refused = review.decide(2, review.index.hashes[2], "edit", messages=bad["example"]["messages"])
    assert refused["ok"] is False and not store.review_path(data).exists()


def test_decisions_replay_undo_and_survive_a_torn_line(data):
    review = _open(data)
    h = review.index.hashes
    review.decide(1, h[1], "accept")
    review.decide(2, h[2], "reject", note="off-task")
    review.decide(2, h[2], "accept")
    review.decide(2, h[2], "undo")
    with store.review_path(data).open("a") as handle:
        handle.write('{"v": 1, "action": "acc')  # a power cut mid-line
    reopened = _open(data)
    assert {n: r["action"] for n, r in reopened.decisions.current.items()} == {1: "accept", 2: "reject"}
    assert reopened.decisions.current[2]["note"] == "off-task"
    assert reopened.decisions.unreadable == [] and "last line was cut off" in reopened.meta()["repaired"]
    assert store.review_path(data).read_bytes().endswith(b"\n")  # the torn line is gone: the next append is whole
    assert reopened.meta()["decisions"] == {"accept": 1, "reject": 1, "edit": 0, "undecided": 4}
    assert reopened.meta()["resume"] == 3  # the first undecided example after the newest decision (line 2)
    page = reopened.page(0, 2, around=3)
    assert (page["start"], page["current"], page["items"][page["current"]]["line"]) == (2, 0, 3)


def test_changed_data_maps_by_content_hash_and_reports_stale(data):
    review = _open(data)
    h = review.index.hashes
    review.decide(2, h[2], "accept")
    review.decide(3, h[3], "reject")
    review.decide(4, h[4], "edit", messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    lines = data.read_text().splitlines(keepends=True)
    # a new first line (everything moves down one), and the example at old line 3 rewritten
    changed = [json.dumps(chat("new", "one")) + "\n", lines[0], lines[1],
               json.dumps(chat("question 3 changed", "x")) + "\n", *lines[3:]]
    data.write_text("".join(changed))
    reopened = _open(data)
    current = {n: (r["action"], r.get("moved_from")) for n, r in reopened.decisions.current.items()}
    assert current == {3: ("accept", 2), 5: ("edit", 4)}
    assert [(s.line, s.action) for s in reopened.decisions.stale] == [(3, "reject")]
    assert reopened.decisions.moved == 2
    # a decision made at the new line supersedes the one that followed the example there, as a replay says
    reopened.decide(5, reopened.index.hashes[5], "reject")
    fresh = _open(data).decisions
    assert reopened.decisions.current == fresh.current and reopened.decisions.moved == fresh.moved == 1
    # undo at the new line reaches the decision recorded at the old one
    reopened.decide(3, reopened.index.hashes[3], "undo")
    assert 3 not in _open(data).decisions.current
    done = run_cli("review", str(data), "--export")
    assert done.returncode == 0 and "1 decisions no longer apply" in done.stderr and "lines 3" in done.stderr


def test_the_page_state_after_each_decision_equals_a_fresh_replay(data):
    import random

    review = _open(data)
    rng = random.Random(0)
    for _ in range(40):
        line = rng.choice(review.index.lines[:5])
        action = rng.choice(["accept", "reject", "undo", "undo"])
        review.decide(line, review.index.hashes[line], action)
        assert review.decisions.current == _open(data).decisions.current


def test_export_curated_and_preference_pass_data_check(data, tmp_path):
    before = data.read_bytes()
    review = _open(data)
    h = review.index.hashes
    original = json.loads(data.read_text().splitlines()[1])["messages"]
    review.decide(1, h[1], "accept")
    review.decide(2, h[2], "edit", messages=[*original[:2], {"role": "assistant", "content": "a better answer"}])
    review.decide(3, h[3], "reject")
    review.decide(4, h[4], "edit", messages=[{"role": "system", "content": "terse"},
                                             *json.loads(data.read_text().splitlines()[3])["messages"][1:]])
    store.add_negative(review.review_file, "n1", "eval:1", [{"role": "user", "content": "q"},
                                                            {"role": "assistant", "content": "right"}], "wrong")
    done = export(_open(data))
    assert (done.accepted, done.edited, done.rejected, done.undecided, done.pairs) == (1, 2, 1, 2, 2)
    curated = [json.loads(x) for x in done.curated.read_text().splitlines()]
    assert curated[0] == json.loads(data.read_text().splitlines()[0])
    assert curated[1]["messages"][-1] == {"role": "assistant", "content": "a better answer"}
    pairs = [json.loads(x) for x in done.preference.read_text().splitlines()]
    assert pairs[0] == {"input": {"messages": original[:2]},
                        "preferred_output": [{"role": "assistant", "content": "a better answer"}],
                        "non_preferred_output": [original[2]]}
    assert pairs[1]["non_preferred_output"] == [{"role": "assistant", "content": "wrong"}]
    assert data.read_bytes() == before
    for path in (done.curated, done.preference):
        check = run_cli("data", "check", str(path), "--json")
        assert check.returncode == 0, check.stdout
        assert json.loads(check.stdout)["format"] == ("preference" if path == done.preference else "chat")


def test_an_edit_of_only_the_system_prompt_makes_no_pair():
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 1}]
    assert pair_from_edit(messages, [{"role": "system", "content": "s"}, *messages]) is None
    pair = pair_from_edit(messages, [messages[0], {"role": "assistant", "content": "b", "weight": 1}])
    assert pair["preferred_output"] == [{"role": "assistant", "content": "b"}]


def test_server_refuses_requests_without_the_token(data):
    from ftorch.review.server import ReviewServer

    server = ReviewServer(_open(data))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = server.url.split("?")[0]
        for path in ("", "api/meta", "static/data.js", "api/meta?token=nope"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=5)
            assert refused.value.code == 403
        with urllib.request.urlopen(server.url, timeout=5) as page:
            html = page.read().decode()
        assert server.token in html and "cdn" not in html.lower() and "http" not in html.split("<body>")[1]
        meta = json.loads(urllib.request.urlopen(f"{base}api/meta?token={server.token}", timeout=5).read())
        assert meta["examples"] == 6
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_accepted_writes_no_curated_file(data):
    review = _open(data)
    review.decide(1, review.index.hashes[1], "reject")
    done = run_cli("review", str(data), "--export")
    assert done.returncode == 0 and "curated: none written" in done.stdout and "preference: none written" in done.stdout
    assert not (data.parent / "train.curated.jsonl").exists()
