"""The review never writes through a symlink: the review file (appended) is opened with O_NOFOLLOW, so a symlink
planted there is refused with a message; the exported curated and preference files and the evaluation's
report.md are written to a temporary file made exclusively and renamed over, so a symlink at the target or at the
old fixed temporary name is never followed."""

from __future__ import annotations

import json

import pytest

from ftorch.review import store
from ftorch.review.eval_view import EvalReview
from ftorch.review.export import export, export_paths
from ftorch.safe_io import UnsafePath

from conftest import chat
from support.review import make_eval, open_data, post, serving


@pytest.fixture
def data(chat_jsonl):
    return chat_jsonl([chat(f"question {n}", f"answer {n}") for n in range(1, 4)], "train.jsonl")


def test_a_symlinked_review_file_is_refused_not_written_through(data, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    store.review_path(data).symlink_to(victim)
    with pytest.raises(UnsafePath, match="symlink"):
        open_data(data)
    with pytest.raises(UnsafePath, match="symlink"):
        store.append_record(store.review_path(data), {"action": "accept", "line": 1, "hash": "h"})
    assert victim.read_text() == "precious\n"


def test_a_symlink_planted_while_the_page_is_open_is_an_error_on_the_page(data, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    review = open_data(data)
    with serving(review) as server:
        store.review_path(data).symlink_to(victim)
        status, answer = post(server, "/api/decide", {"line": 1, "hash": review.index.hashes[1], "action": "accept"})
    assert status == 500 and not answer["ok"] and "symlink" in answer["error"]
    assert victim.read_text() == "precious\n" and 1 not in review.decisions.current
    assert capsys.readouterr().err == ""


def test_export_replaces_a_symlink_instead_of_writing_through_it(data, tmp_path):
    review = open_data(data)
    hashes = review.index.hashes
    review.decide(1, hashes[1], "accept")
    example, _ = review.index.example(2)
    review.decide(2, hashes[2], "edit", messages=[*example["messages"][:-1],
                                                   {"role": "assistant", "content": "a better answer"}])
    victims = []
    for target in export_paths(data):
        victim = tmp_path / f"victim-{target.name}"
        victim.write_text("precious\n")
        target.symlink_to(victim)
        victims.append(victim)
    (data.parent / f"{data.stem}.curated.jsonl.tmp").symlink_to(victims[0])  # the old fixed temporary name
    done = export(open_data(data))
    assert done.accepted == 1 and done.edited == 1 and done.pairs == 1
    assert all(victim.read_text() == "precious\n" for victim in victims)
    curated, preference = export_paths(data)
    assert not curated.is_symlink() and len(curated.read_text().splitlines()) == 2
    assert not preference.is_symlink() and json.loads(preference.read_text())["preferred_output"][0]["content"] \
        == "a better answer"


def test_a_mark_never_writes_report_md_through_a_symlink(tmp_path):
    run, _ = make_eval(tmp_path)
    review = EvalReview.open(run)
    (review.folder / "report.md").write_text("# report\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (review.folder / "report.md.tmp").symlink_to(victim)  # the fixed temporary name the report used to go through
    review.mark("task", "1", "tuned", "agree")
    assert victim.read_text() == "precious\n"
    markdown = review.folder / "report.md"
    assert not markdown.is_symlink() and "## Human-checked scoring" in markdown.read_text()
    review.marks_file.unlink()
    review.marks_file.symlink_to(victim)
    with pytest.raises(UnsafePath):
        review.mark("task", "2", "tuned", "wrong")
    assert victim.read_text() == "precious\n"
