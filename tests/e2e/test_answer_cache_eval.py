"""`ftorch eval RUN` twice on a tiny trained run: the second evaluation generates nothing (every answer of base,
the prompting arms, prompted, tuned and the general and safety suites comes from the answer cache, as the
report's reuse counts say), and its scores, answers and per-call latency are those of the first. A sweep's
second trial generates only its own tuned answers."""

from __future__ import annotations

import json

import pytest

from conftest import TINY, run_cli, run_dirs
from support.tiny_run import trained_run

EVAL = ["eval.limit=3", "eval.validation_limit=4", "eval.k_shots=[1,3]", "eval.general_limit=2",
        "eval.safety_limit=2", "eval.max_new_tokens=6", "eval.drift=false"]


def _evaluate(run_dir):
    result = run_cli("eval", str(run_dir), *EVAL)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    folder = sorted(p for p in (run_dir / "eval").iterdir() if p.is_dir())[-1]
    report = json.loads((folder / "report.json").read_text())
    answers = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    suites = [(folder / name).read_text() for name in ("general.jsonl", "safety.jsonl")]
    return result, report, answers, suites


@pytest.mark.slow
def test_a_second_evaluation_reuses_every_answer_with_identical_scores(tmp_path_factory):
    run_dir = trained_run(tmp_path_factory.getbasetemp())
    assert run_cli("cache", "clear", "answers").returncode == 0  # answers of other tests' evaluations go
    first, report, answers, suites = _evaluate(run_dir)
    use = report["answer_cache"]["systems"]
    assert set(use) == {"base", "prompted", "tuned"}
    assert use["tuned"]["generated"] > 0 and use["base"]["generated"] > 3  # base: the arms and suites too
    # 'prompted' may reuse base's answers of this very evaluation: with the zero-shot arm chosen, its prompts on
    # the test split are base's
    second, again, answers_again, suites_again = _evaluate(run_dir)
    use_again = again["answer_cache"]["systems"]
    assert all(s["generated"] == 0 for s in use_again.values()), use_again
    assert sum(s["reused"] for s in use_again.values()) == sum(s["generated"] + s["reused"] for s in use.values())
    assert "answers: 0 generated" in second.stdout
    assert report["answer_cache"]["measures_reused"] == [] and again["answer_cache"]["measures_reused"] == [
        "held_out_loss (base)", "held_out_loss (tuned)"] and again["held_out_loss"] == report["held_out_loss"]
    assert again["task"] == report["task"] and again["significance"] == report["significance"]
    assert again["prompt_arms"]["chosen"] == report["prompt_arms"]["chosen"]
    assert [a["systems"] for a in answers_again] == [a["systems"] for a in answers]
    assert suites_again == suites and again["general"] == report["general"] and again["safety"] == report["safety"]
    for name in ("base", "prompted", "tuned"):  # the latency recorded when the answers were generated
        assert again["latency"][name]["from_cache"] is True
        assert report["latency"][name]["from_cache"] is (name == "prompted" and use["prompted"]["generated"] == 0)
        assert again["latency"][name]["seconds_per_call"] == pytest.approx(
            report["latency"][name]["seconds_per_call"], rel=0.2)


@pytest.mark.slow
def test_sweep_trials_share_base_and_arm_answers(tmp_path, monkeypatch):
    """Two trials of a sweep (different learning rates, so different adapters): the second generates only the
    tuned answers; base, the prompting arms and prompted come from the first trial."""
    monkeypatch.setenv("FTORCH_CACHE", str(tmp_path / "cache"))  # an empty answer cache (the tiny model is rebuilt)
    result = run_cli("train", "-m", f"paths.runs={tmp_path / 'runs'}", *TINY, "train.max_steps=2",
                     "train.lr=1e-3,2e-3", *EVAL)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = []
    for run_dir in run_dirs(tmp_path / "runs"):  # in the order the trials ran (their timestamps)
        (folder,) = [p for p in (run_dir / "eval").iterdir() if p.is_dir()]
        reports.append(json.loads((folder / "report.json").read_text())["answer_cache"]["systems"])
    first, second = reports
    assert first["base"]["generated"] > 0 and first["tuned"]["generated"] > 0
    assert second["base"] == {"generated": 0, "reused": first["base"]["generated"] + first["base"]["reused"]}
    assert second["prompted"]["generated"] == 0
    assert second["tuned"]["generated"] == first["tuned"]["generated"] + first["tuned"]["reused"]
