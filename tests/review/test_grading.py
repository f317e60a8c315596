"""The grading view of `ftorch review RUN`, through its JSON API (no browser): a seeded, stratified sample of the
latest pairwise-judged evaluation, each item blinded (A and B, never which is tuned, never the judge's verdict);
a grade mapped back to tuned/prompted and appended durably to RUN/grades.jsonl (a failed write is an error, a
kill -9 mid-grading loses no acknowledged grade); the statistics line; and grades made here calibrating the
next `ftorch eval` of the run."""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from ftorch.config.schema import RunConfig
from ftorch.eval import judging
from ftorch.eval.finished import evaluate_run
from ftorch.eval.grades import GRADES_FILE, load_grades, sample, tuned_shown_first
from ftorch.eval.judge_client import CachedJudge
from ftorch.eval.judge_stats import agreement, grades_for_width, ppi_mean
from ftorch.eval.judged import THREE_WAY, calibration_inputs
from ftorch.review import store
from ftorch.review.eval_view import EvalReview
from ftorch.run.rundir import RunDir

from conftest import chat
from support.grading import GOOD, Answers, ScriptedJudge, make_judged_run, person, run_config
from support.review import make_eval, post, request, serve_in_process, serving

LATEST = "2026-01-02_00-00-00_000000"


def rows_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "eval" / LATEST / "predictions.jsonl").read_text().splitlines()]


def records(run: Path) -> list[dict]:
    path = run / GRADES_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def truth(row: dict) -> str:
    good = {s: "Kind regards" in row["systems"][s]["output"] for s in ("tuned", "prompted")}
    return "tie" if good["tuned"] == good["prompted"] else "tuned" if good["tuned"] else "prompted"


def test_the_sample_is_blinded(tmp_path):
    run = make_judged_run(tmp_path, judge_wrong_every=7)
    rows = rows_of(run)
    review = EvalReview.open(run)
    assert review.meta()["grading"] == {"sample": 20, "evaluation": str(run / "eval" / LATEST)}
    with serving(review) as server:
        status, page = request(server, "GET", "/api/grading")
    assert status == 200
    items = page["items"]
    # the seeded, stratified sample of the judge's outcomes (eval.judge.grade_sample=20, eval.seed=0)
    chosen = sample([r["pairwise"]["judge"] for r in rows], 20, 0)
    assert [i["line"] for i in items] == [rows[n]["line"] for n in chosen]
    assert [i["item"] for i in items] == [str(n) for n in range(1, 21)]
    for item in items:
        assert set(item) == {"item", "line", "input", "reference", "A", "B", "grade"}
        row = rows[item["line"] - 1]
        first = tuned_shown_first(row["pairwise"]["key"], 0)
        tuned, prompted = row["systems"]["tuned"]["output"], row["systems"]["prompted"]["output"]
        assert (item["A"], item["B"]) == ((tuned, prompted) if first else (prompted, tuned))
        assert item["input"] == row["input"] and item["reference"] == GOOD and item["grade"] is None
    # both orders occur, and nothing in what the page gets says which answer is whose or what the judge said
    orders = {tuned_shown_first(rows[n]["pairwise"]["key"], 0) for n in chosen}
    assert orders == {True, False}
    text = json.dumps(page).lower()
    for word in ("tuned", "prompted", "base", "pairwise", "verdict", "first", "second", "judge\":"):
        assert word not in text, word
    assert "0 of 20 graded" in page["state"]["line"]


def test_a_grade_is_mapped_back_and_saved(tmp_path):
    run = make_judged_run(tmp_path)
    rows = rows_of(run)
    with serving(EvalReview.open(run)) as server:
        items = request(server, "GET", "/api/grading")[1]["items"]
        for item in items[:6]:
            status, answer = post(server, "/api/grade", {"item": item["item"], "choice": person(item)})
            assert status == 200 and answer["ok"] and answer["item"]["grade"] == person(item)
            assert "tuned" not in json.dumps(answer) and "prompted" not in json.dumps(answer)
        saved = records(run)
        assert len(saved) == 6
        for record, item in zip(saved, items):
            row = rows[item["line"] - 1]
            assert record["key"] == row["pairwise"]["key"] and record["line"] == row["line"]
            assert record["grade"] == truth(row)  # A/B mapped back to the system that wrote the answer
            assert record["shown"] == ("tuned_first" if tuned_shown_first(record["key"], 0) else "prompted_first")
        # "both bad", then undo: the grade is withdrawn; clearing an ungraded item writes nothing
        first = items[0]["item"]
        assert post(server, "/api/grade", {"item": first, "choice": "both_bad"})[1]["item"]["grade"] == "both_bad"
        status, answer = post(server, "/api/grade", {"item": first, "choice": "clear"})
        assert status == 200 and answer["item"]["grade"] is None and answer["state"]["graded"] == 5
        before = len(records(run))
        assert post(server, "/api/grade", {"item": items[10]["item"], "choice": "clear"})[0] == 200
        assert len(records(run)) == before
        # refused: a system's name as the choice, an item outside the sample
        for body in ({"item": first, "choice": "tuned"}, {"item": "0", "choice": "A"}, {"item": "21", "choice": "A"},
                     {"item": "x", "choice": "A"}, {"item": 1, "choice": "A"}, {"item": first}):
            status, answer = post(server, "/api/grade", body)
            assert status == 400 and not answer["ok"], body
    assert len(records(run)) == before
    assert len(load_grades(run)) == 5
    # reopened (a restart): the grades are found by the answers they judged
    items = EvalReview.open(run).grading.items()["items"]
    assert [i["grade"] for i in items[:6]] == [None, *map(person, items[1:6])]


def test_grades_follow_identical_answers_into_a_new_evaluation(tmp_path):
    run = make_judged_run(tmp_path)
    grading = EvalReview.open(run).grading
    items = grading.items()["items"]
    for item in items[:4]:
        grading.grade(item["item"], person(item))
    newer = run / "eval" / "2026-01-03_00-00-00_000000"
    newer.mkdir()
    rows = rows_of(run)
    line = items[0]["line"]
    rows[line - 1]["systems"]["tuned"]["output"] += " Changed."  # one answer changed: its grade no longer applies
    rows[line - 1]["pairwise"]["key"] = "f" * 64
    (newer / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (newer / "report.json").write_text((run / "eval" / LATEST / "report.json").read_text())
    again = EvalReview.open(run).grading
    assert again.folder == newer
    state = again.state()
    assert state["grades"] == 3 and again.items()["items"][0]["grade"] is None


def test_the_statistics_line(tmp_path):
    run = make_judged_run(tmp_path, judge_wrong_every=5)
    rows = rows_of(run)
    grading = EvalReview.open(run).grading
    items = grading.items()["items"]
    assert grading.state()["line"] == ("0 of 20 graded · grade at least 2 to see the judge's agreement with you "
                                       "and the interval")
    for item in items[:12]:
        state = grading.grade(item["item"], person(item))["state"]
    judged = [r["pairwise"]["judge"] for r in rows]
    keys = [r["pairwise"]["key"] for r in rows]
    human, on_graded, on_rest = calibration_inputs(judged, keys, load_grades(run))
    assert len(human) == 12 and state["graded"] == 12 and state["sample"] == 20
    agree = agreement([THREE_WAY[j] for j in on_graded], [THREE_WAY[h] for h in human])
    width = ppi_mean(human, on_graded, on_rest).width
    more = grades_for_width(human, on_graded, on_rest, 0.2)
    assert state["agreement"]["raw"] == pytest.approx(agree.raw)
    assert state["agreement"]["kappa"] == pytest.approx(agree.kappa)
    assert state["width"] == pytest.approx(width) and state["more"] == more
    line = state["line"]
    assert line.startswith(f"12 of 20 graded · judge agrees with you on {100 * agree.raw:.0f}% "
                           f"(Cohen's kappa {agree.kappa:.2f}) · PPI interval width {width:.2f} · ")
    assert more is not None and more > 0
    assert f"{more} more grades would narrow the interval to eval.judge.target_width 0.20" in line


def test_a_wide_target_is_reached(tmp_path):
    run = make_judged_run(tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["eval"]["judge"]["target_width"] = 4.0
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    grading = EvalReview.open(run).grading
    for item in grading.items()["items"][:5]:
        state = grading.grade(item["item"], person(item))["state"]
    assert state["more"] == 0 and "already within eval.judge.target_width 4.00" in state["line"]


def test_a_failed_write_is_not_acknowledged(tmp_path, monkeypatch):
    run = make_judged_run(tmp_path)
    with serving(EvalReview.open(run)) as server:
        items = request(server, "GET", "/api/grading")[1]["items"]
        assert post(server, "/api/grade", {"item": "1", "choice": person(items[0])})[0] == 200
        before = (run / GRADES_FILE).read_bytes()

        def full(fd, data):
            os.write(fd, data[:7])
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(store, "write_all", full)
        status, answer = post(server, "/api/grade", {"item": "2", "choice": "A"})
        assert status == 507 and not answer["ok"] and "not saved" in answer["error"]
        assert (run / GRADES_FILE).read_bytes() == before  # rolled back: no torn line
        monkeypatch.undo()
        status, page = request(server, "GET", "/api/grading")
        assert page["state"]["graded"] == 1 and page["items"][1]["grade"] is None


def test_a_run_without_a_pairwise_judge_has_no_grading(tmp_path):
    run, _ = make_eval(tmp_path)
    review = EvalReview.open(run)
    assert review.grading is None and review.meta()["grading"]["sample"] == 0
    assert "ran the pairwise judge" in review.meta()["grading"]["why"]
    with serving(review) as server:
        status, answer = request(server, "GET", "/api/grading")
        assert status == 404 and "eval.judge.model" in answer["error"]
        assert post(server, "/api/grade", {"item": "1", "choice": "A"})[0] == 404


# ---- kill -9 of the server mid-grading --------------------------------------------------------------------------

def call(url: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    base, token = url.split("/?token=")
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{base}{path}?token={token}", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_kill_9_mid_grading_loses_no_acknowledged_grade(tmp_path):
    run = make_judged_run(tmp_path)
    proc, url = serve_in_process(run)
    acknowledged: list[str] = []
    try:
        items = call(url, "/api/grading")[1]["items"]

        def grade_all():
            for item in items:
                try:
                    status, _ = call(url, "/api/grade", {"item": item["item"], "choice": person(item)})
                except OSError:
                    return  # the server is gone: this grade was never acknowledged
                if status == 200:
                    acknowledged.append(item["item"])

        grader = threading.Thread(target=grade_all)
        grader.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 7 and time.monotonic() < deadline:
            time.sleep(0.001)
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-grading: a post may be in flight
        proc.wait(timeout=10)
    grader.join(timeout=60)
    assert 7 <= len(acknowledged) < len(items)
    keys = {i["item"]: r for i in items for r in [rows_of(run)[i["line"] - 1]["pairwise"]["key"]]}
    saved = load_grades(run)
    assert {keys[i] for i in acknowledged} <= set(saved)  # every acknowledged grade is on disk
    assert len(saved) <= len(acknowledged) + 1  # at most the one in flight besides

    proc, url = serve_in_process(run)  # reopened: the page shows every saved grade
    try:
        status, page = call(url, "/api/grading")
        assert status == 200 and page["state"]["graded"] == len(saved)
        assert [i["grade"] for i in page["items"] if i["item"] in acknowledged] == \
            [person(i) for i in items if i["item"] in acknowledged]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


# ---- grades from the page calibrate the next evaluation ---------------------------------------------------------

def test_grades_from_the_page_calibrate_the_next_evaluation(tmp_path, chat_jsonl, monkeypatch):
    train = chat_jsonl([chat(f"Rewrite refund #{i}", GOOD) for i in range(100, 120)], "train.jsonl")
    test = chat_jsonl([chat(f"Rewrite refund #{i}", GOOD.replace("refund", f"refund #{i}")) for i in range(40)],
                      "test.jsonl")
    config = run_config(train, test, grade_sample=30)
    cfg = RunConfig.model_validate(config)
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.start(recipe="t", provider="peft", project_root=tmp_path, overrides=[])
    run.finish("succeeded")
    (run.path / "config.yaml").write_text(yaml.safe_dump(config))
    judge = ScriptedJudge()
    monkeypatch.setattr(judging, "judge_for", lambda c, *_, **__: CachedJudge(judge, c, folder=tmp_path / "cache"))
    report = evaluate_run(run, cfg, console=None, models=(Answers(), None, None))
    assert report.judged is not None and report.judged.state == "uncalibrated"

    review = EvalReview.open(run.path)
    assert review.grading is not None and review.grading.folder == report.folder
    with serving(review) as server:
        items = request(server, "GET", "/api/grading")[1]["items"]
        assert len(items) == 30
        for item in items:
            assert post(server, "/api/grade", {"item": item["item"], "choice": person(item)})[0] == 200
        state = request(server, "GET", "/api/grading")[1]["state"]
    assert state["graded"] == 30 and state["agreement"]["raw"] == 1.0

    again = evaluate_run(run, cfg, console=None, models=(Answers(), None, None))
    judged = again.judged
    assert judged is not None and judged.state == "calibrated" and judged.grades == 30
    assert judged.agreement is not None and judged.agreement.raw == 1.0
    assert judged.estimate is not None and judged.estimate.method == "ppi++"
    low, high = judged.estimate.ci
    assert 0 < low < (22 - 4) / 40 < high  # the truth by construction: tuned better on 22, prompted on 4
    assert "prediction-powered: 30 human grades" in again.verdict


def test_the_evaluation_settings_it_ran_with_come_first(tmp_path):
    """`ftorch eval RUN eval.judge.grade_sample=10`: report.json records the eval settings in effect, and the
    grading view samples by them rather than by the run's config.yaml."""
    run = make_judged_run(tmp_path)
    report_file = run / "eval" / LATEST / "report.json"
    report = json.loads(report_file.read_text())
    recorded = RunConfig.model_validate(yaml.safe_load((run / "config.yaml").read_text())).eval.model_dump(mode="json")
    recorded["judge"]["grade_sample"], recorded["seed"] = 10, 3
    report_file.write_text(json.dumps({**report, "config": recorded}))
    grading = EvalReview.open(run).grading
    assert grading is not None and len(grading.chosen) == 10 and grading.seed == 3
    assert grading.chosen == sample([r["pairwise"]["judge"] for r in rows_of(run)], 10, 3)
