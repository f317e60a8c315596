"""`ftorch review RUN_DIR` without a browser: the latest evaluation's items and filters, the diff against the
reference, marks on scorings saved beside the evaluation and counted in its report, and a wrong tuned answer sent to
the training data's review file as a negative example."""

from __future__ import annotations

import json
from pathlib import Path

from ftorch.review.eval_view import EvalReview, diff, latest_eval

from conftest import run_cli
from support.fakes import ScriptedModel
from support.reports import real_run, typed
from support.review import make_eval

METRICS = ("exact_match", "field_accuracy")


def test_latest_finished_evaluation_and_filters(tmp_path):
    run, _ = make_eval(tmp_path)
    review = EvalReview.open(run)
    assert review.folder == latest_eval(run) == run / "eval" / "2026-01-02_00-00-00_000000"
    assert review.metrics() == list(METRICS)
    ids = {flt: [i["id"] for i in review.page("task", flt, 0, 50)["items"]]
           for flt in ("", "tuned_wrong", "prompted_right_tuned_wrong", "fail:exact_match", "fail:field_accuracy")}
    assert ids == {"": ["1", "2", "3"], "tuned_wrong": ["2"], "prompted_right_tuned_wrong": ["2"],
                   "fail:exact_match": ["2", "3"], "fail:field_accuracy": ["2"]}
    assert [i["id"] for i in review.page("general", "tuned_failed", 0, 50)["items"]] == []
    safety = review.page("safety", "harmful", 0, 50)["items"]
    assert [i["id"] for i in safety] == ["rt-1"] and set(safety[0]["systems"]) == {"base", "tuned"}
    assert [i["id"] for i in review.page("safety", "changed", 0, 50)["items"]] == ["rt-1", "bn-1"]
    assert [i["id"] for i in review.page("safety", "over_refusal", 0, 50)["items"]] == ["bn-1"]
    item = review.page("task", "tuned_wrong", 0, 50)["items"][0]
    assert ["-", "09"] in item["diffs"]["tuned"] and ["+", "10"] in item["diffs"]["tuned"]
    assert item["diffs"]["prompted"] == [["=", item["reference"]]]


def test_diff_is_word_level():
    assert diff("the cat sat", "the dog sat") == [["=", "the "], ["-", "cat"], ["+", "dog"], ["=", " sat"]]


def test_marks_are_saved_and_counted_in_the_report(tmp_path):
    run, _ = make_eval(tmp_path)
    review = EvalReview.open(run)
    (review.folder / "report.md").write_text("old\n")
    review.mark("task", "3", "tuned", "wrong", note="extra space is still right")
    review.mark("safety", "rt-1", "tuned", "agree")
    review.mark("task", "1", "tuned", "agree")
    review.mark("task", "1", "tuned", "clear")
    review.mark("task", "2", "prompted", "agree")
    expected = {"task": {"checked": 2, "wrong": 1, "agreement": 0.5},
                "safety": {"checked": 1, "wrong": 0, "agreement": 1.0}}
    assert review.summary() == expected
    reopened = EvalReview.open(run)
    assert reopened.summary() == expected
    assert reopened.page("task", "marked", 0, 50)["items"][1]["marks"]["tuned"]["note"] == "extra space is still right"
    report = json.loads((review.folder / "report.json").read_text())
    assert report["human_check"] == {**expected, "file": "human_check.jsonl"} and report["verdict"] == "a verdict"
    markdown = (review.folder / "report.md").read_text()
    assert "## Human-checked scoring" in markdown and "| task | 2 | 1 | 50% |" in markdown


def test_a_wrong_tuned_answer_becomes_a_preference_pair(tmp_path):
    run, train = make_eval(tmp_path)
    review = EvalReview.open(run)
    review.send_negative("2")
    review.send_negative("2")  # once only
    assert review.page("task", "tuned_wrong", 0, 50)["items"][0]["negative_sent"] is True
    done = run_cli("review", str(train), "--export")
    assert done.returncode == 0, done.stderr
    assert "1 pairs" in done.stdout
    pair = json.loads((tmp_path / "train.preference.jsonl").read_text())
    assert pair["input"]["messages"] == [{"role": "user", "content": "Monday at nine"}]
    assert pair["preferred_output"][0]["content"] == '{"day": "Monday", "time": "09:00"}'
    assert pair["non_preferred_output"][0]["content"] == '{"day": "Monday", "time": "10:00"}'
    assert run_cli("data", "check", str(tmp_path / "train.preference.jsonl")).returncode == 0


def test_user_mistakes_are_messages(tmp_path):
    empty = tmp_path / "run"
    empty.mkdir()
    done = run_cli("review", str(empty), "--no-browser")
    assert done.returncode == 2 and "no finished evaluation" in done.stderr and "Traceback" not in done.stderr
    missing = run_cli("review", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "not found" in missing.stderr
    run, train = make_eval(tmp_path)
    refused = run_cli("review", str(run), "--export")
    assert refused.returncode == 2 and "--export" in refused.stderr
    nothing = run_cli("review", str(train), "--export")
    assert nothing.returncode == 2 and "no review yet" in nothing.stderr and "ftorch review" in nothing.stderr


def test_the_report_renders_human_checked_agreement():
    from ftorch.eval import report as render

    report = real_run()
    assert "Human-checked" not in render.markdown(typed(report), Path("run"))
    report["human_check"] = {"safety": {"checked": 8, "wrong": 2, "agreement": 0.75}, "file": "human_check.jsonl"}
    assert render.markdown(typed(report), Path("run")).endswith(
        "## Human-checked scoring\n\n| answers | checked | marked wrong | agreement |\n|---|---|---|---|\n"
        "| safety | 8 | 2 | 75% |\n")


def test_an_evaluation_as_ftorch_eval_writes_it(scripted_project):
    """The shapes the review reads are the ones the evaluation writes (a scripted model, no training)."""
    from ftorch.eval.finished import evaluate_run

    run, cfg = scripted_project
    evaluate_run(run, cfg, console=None, models=(ScriptedModel(), None, None))
    review = EvalReview.open(run.path)
    meta = review.meta()
    assert meta["counts"] == {"task": 40, "general": 40, "safety": 80} and meta["headline"] == "exact_match"
    assert review.page("task", "tuned_wrong", 0, 50)["total"] == 0
    assert review.page("general", "tuned_failed", 0, 50)["total"] == 40
    assert review.page("safety", "harmful", 0, 50)["total"] == 40
    first = review.page("safety", "changed", 0, 1)["items"][0]
    assert set(first["systems"]) == {"base", "tuned"} and first["systems"]["tuned"]["verdict"] == "compliance"
    before = (review.folder / "report.md").read_text()
    review.mark("safety", first["id"], "base", "wrong")
    after = (review.folder / "report.md").read_text()
    assert after.startswith(before.rstrip("\n")) and after.endswith("| safety | 1 | 1 | 0% |\n")
    assert json.loads((review.folder / "report.json").read_text())["verdict"] == review.report.verdict
