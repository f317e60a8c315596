"""Judged open-ended evaluation end to end with scripted answers, a scripted judge and scripted human grades:
the report's judged section, its three states (uncalibrated, calibrated, unreliable), the verdict that agrees
with its numbers, the judge cache, the grading sample, and everything the judge said saved beside the answers."""

from __future__ import annotations

import json

import pytest

from ftorch.config.schema import RunConfig
from ftorch.eval import judging
from ftorch.eval.finished import evaluate_run
from ftorch.eval.grades import GRADES_FILE, sample
from ftorch.eval.judge_client import CachedJudge
from ftorch.run.rundir import RunDir

from conftest import chat
from support.grading import GOOD, Answers, ScriptedJudge


@pytest.fixture
def project(tmp_path, chat_jsonl):
    train = chat_jsonl([chat(f"Rewrite refund #{i}", GOOD) for i in range(100, 120)], "train.jsonl")
    test = chat_jsonl([chat(f"Rewrite refund #{i}", GOOD.replace("refund", f"refund #{i}")) for i in range(40)],
                      "test.jsonl")
    cfg = RunConfig.model_validate({
        "provider": {"name": "peft"}, "model": {"name": "scripted"},
        "data": {"train": str(train), "test": str(test)},
        "eval": {"metrics": ["exact_match", "judge"], "headline": "exact_match", "few_shot": 1, "prompt_arms": [],
                 "general": False, "safety": False, "drift": False,
                 "judge": {"model": "scripted-judge", "endpoint": "local", "rubric": "style", "grade_sample": 30}}})
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.start(recipe="t", provider="peft", project_root=tmp_path, overrides=[])
    run.finish("succeeded")
    return run, cfg


def use_judge(monkeypatch, tmp_path, judge: ScriptedJudge) -> None:
    monkeypatch.setattr(judging, "judge_for", lambda cfg, *_, **__: CachedJudge(judge, cfg, folder=tmp_path / "cache"))


def grade(run: RunDir, report, people_err_every: int = 0, how_many: int = 30) -> None:
    """A person grades the sampled prompts as the house style says (with an error every n-th grade)."""
    predictions = [json.loads(line) for line in (report.folder / "predictions.jsonl").read_text().splitlines()]
    chosen = sample([p["pairwise"]["judge"] for p in predictions], how_many, seed=0)
    with (run.path / GRADES_FILE).open("a") as handle:
        for n, index in enumerate(chosen):
            line = predictions[index]
            good = {s: "Kind regards" in line["systems"][s]["output"] for s in ("tuned", "prompted")}
            label = "tie" if good["tuned"] == good["prompted"] else "tuned" if good["tuned"] else "prompted"
            if people_err_every and n % people_err_every == 0:
                label = {"tuned": "prompted", "prompted": "tuned", "tie": "tuned"}[label]
            handle.write(json.dumps({"key": line["pairwise"]["key"], "grade": label}) + "\n")


def test_uncalibrated_then_calibrated_by_grades(project, monkeypatch, tmp_path):
    run, cfg = project
    judge = ScriptedJudge()
    use_judge(monkeypatch, tmp_path, judge)
    report = evaluate_run(run, cfg, console=None, models=(Answers(), None, None))
    judged = report.judged
    assert judged is not None and judged.state == "uncalibrated" and judged.grades == 0
    # the truth by construction: tuned good on 30, prompted on 12, both on 8 -> tuned better 22, prompted 4
    assert (judged.tuned_wins, judged.prompted_wins, judged.ties) == (22, 4, 14)
    assert judged.bias.position_consistency == 1.0 and judged.estimate is None
    assert report.verdict.startswith("Inconclusive: the comparison with the prompted baseline rests on an "
                                     "uncalibrated judge (scripted-judge, rubric style)")
    assert "not evidence" in report.verdict and "won" not in report.verdict
    # the rubric judge's metric, and everything the judge said, beside the answers
    assert report.task.mean("tuned", "judge") == pytest.approx(30 / 40)
    saved = [json.loads(line) for line in (report.folder / "judge.jsonl").read_text().splitlines()]
    assert len(saved) == 3 * 40 + 2 * 40 and {r["kind"] for r in saved} == {"rubric", "pairwise"}
    markdown = (report.folder / "report.md").read_text()
    assert "## Judged comparison" in markdown and "uncalibrated" in markdown
    assert "| judge (graded by scripted-judge, rubric style) |" in markdown
    assert run.record().judged_summary() == "judged: uncalibrated"  # runs ls and the leaderboard show no number

    grade(run, report)
    calls = judge.seen
    again = evaluate_run(run, cfg, console=None, models=(Answers(), None, None))
    assert judge.seen == calls  # every judge call came from the cache
    assert again.judged is not None and again.judged.usage.cached == 200 and again.judged.usage.calls == 0
    judged = again.judged
    assert judged.state == "calibrated" and judged.grades == 30
    assert judged.agreement is not None and judged.agreement.raw == 1.0
    assert judged.estimate is not None and judged.estimate.method == "ppi++"
    low, high = judged.estimate.ci
    assert 0 < low < (22 - 4) / 40 < high
    assert again.verdict.startswith("Fine-tuning beat the prompted baseline: people prefer the tuned answer by")
    assert "prediction-powered: 30 human grades and 10 more judge labels" in again.verdict
    assert "Cohen's kappa 1.00" in again.verdict
    run_json = run.read()
    assert run_json["metrics"]["eval_judged_preference"] == pytest.approx(judged.estimate.estimate)
    assert run.record().judged_summary() == f"judged {judged.estimate.estimate * 100:+.1f} pts (calibrated)"


def test_a_judge_that_disagrees_with_people_is_set_aside(project, monkeypatch, tmp_path):
    run, cfg = project
    use_judge(monkeypatch, tmp_path, ScriptedJudge(first=True))  # always "A": biased, useless
    report = evaluate_run(run, cfg, console=None, models=(Answers(), None, None))
    assert report.judged is not None and report.judged.bias.position_consistency == 0.0
    assert report.judged.bias.first_position_share == 1.0
    grade(run, report)
    again = evaluate_run(run, cfg, console=None, models=(Answers(), None, None))
    judged = again.judged
    assert judged is not None and judged.state == "unreliable"
    assert judged.estimate is not None and judged.estimate.method == "human only"
    assert again.verdict.startswith("The judge (scripted-judge) disagrees with people")
    assert "the human grades alone (30 prompts)" in again.verdict


def test_grades_for_other_answers_do_not_count(project, monkeypatch, tmp_path):
    run, cfg = project
    use_judge(monkeypatch, tmp_path, ScriptedJudge())
    (run.path / GRADES_FILE).write_text(json.dumps({"key": "0" * 64, "grade": "tuned"}) + "\n")
    report = evaluate_run(run, cfg, console=None, models=(Answers(), None, None))
    assert report.judged is not None and report.judged.state == "uncalibrated" and report.judged.grades == 0


def test_the_grading_sample_is_seeded_and_proportional():
    outcomes = [1] * 60 + [0] * 30 + [-1] * 10
    chosen = sample(outcomes, 20, seed=7)
    assert chosen == sample(outcomes, 20, seed=7) and len(set(chosen)) == 20
    assert sorted(outcomes[i] for i in chosen).count(1) == 12 and [outcomes[i] for i in chosen].count(-1) == 2
    assert sample(outcomes, 20, seed=8) != chosen


def test_a_regression_comes_first_and_the_judged_comparison_stays_the_headline(project, monkeypatch, tmp_path):
    from ftorch.eval import suite

    run, cfg = project
    use_judge(monkeypatch, tmp_path, ScriptedJudge())
    monkeypatch.setattr(suite, "regressions", lambda report, allowed: ["general instruction-following fell"])
    report = evaluate_run(run, cfg, console=None, models=(Answers(), None, None))
    assert report.verdict.startswith("The tuned model regressed: general instruction-following fell. On the task "
                                     "itself: Inconclusive: the comparison with the prompted baseline rests on an "
                                     "uncalibrated judge")
    assert "exact_match" not in report.verdict  # the string metric is not this task's headline
