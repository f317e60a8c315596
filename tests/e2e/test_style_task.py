"""The shipped open-ended task end to end on the tiny model: `ftorch train recipe=style-quickstart` with the
run's own base model as the local judge (held to its choices), then human grades scripted by the style oracle
(datasets/style/style_rules.py, which the project's judge never sees) for the grading sample, then
`ftorch eval RUN`: the report's judged section uses those grades and the verdict says what they show."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import ROOT, TINY, run_cli, train_run

pytestmark = pytest.mark.slow
STYLE = ["recipe=style-quickstart", *TINY[1:], "model=tiny", "train.max_steps=4", "train.batch_size=4",
         "train.max_length=1024", "train.save_steps=4", "eval.limit=12", "eval.max_new_tokens=24",
         "eval.general=false", "eval.safety=false", "eval.drift=false", "eval.prompt_arms=[]", "eval.few_shot=1",
         "eval.judge.grade_sample=12", "eval.metrics=[exact_match,chrf,judge]"]


def oracle():
    spec = importlib.util.spec_from_file_location("style_rules", ROOT / "datasets" / "style" / "style_rules.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grade_by_oracle(run_dir: Path) -> int:
    """A person's grades for the grading sample, as the style rules decide (the better-scoring rewrite wins)."""
    from ftorch.eval.grades import GRADES_FILE, sample

    rules = oracle()
    (folder,) = [p for p in (run_dir / "eval").iterdir() if (p / "report.json").is_file()]
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    chosen = sample([r["pairwise"]["judge"] for r in rows], 12, seed=0)
    with (run_dir / GRADES_FILE).open("a") as handle:
        for index in chosen:
            tuned, prompted = (rules.score(rows[index]["systems"][s]["output"]) for s in ("tuned", "prompted"))
            grade = "tie" if tuned == prompted else "tuned" if tuned > prompted else "prompted"
            handle.write(json.dumps({"key": rows[index]["pairwise"]["key"], "grade": grade}) + "\n")
    return len(chosen)


def test_style_quickstart_judged_then_graded(tmp_path):
    run_dir, result = train_run(tmp_path / "runs", *STYLE)
    report = json.loads(next((run_dir / "eval").glob("*/report.json")).read_text())
    judged = report["judged"]
    assert judged["state"] == "uncalibrated" and judged["n"] == 12 and judged["endpoint"] == "local"
    assert judged["unreadable"] == 0  # the local judge is held to its choices
    assert judged["tuned_wins"] + judged["prompted_wins"] + judged["ties"] == 12
    assert "uncalibrated judge" in result.stdout + result.stderr
    assert "judge" in report["task"]["systems"]["tuned"]
    assert grade_by_oracle(run_dir) == 12
    again = run_cli("eval", str(run_dir))
    assert again.returncode == 0, again.stderr[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    folder = Path(record["evaluation"]["dir"])
    report = json.loads((folder / "report.json").read_text())
    judged = report["judged"]
    assert judged["grades"] == 12 and judged["state"] in ("calibrated", "unreliable")
    assert record["evaluation"]["judged"] == judged["state"]
    estimate = judged["estimate"]
    assert estimate["n_human"] == 12 and estimate["ci"] is not None
    low, high = estimate["ci"]
    verdict = record["evaluation"]["verdict"]
    if low > 0:
        assert verdict.startswith("Fine-tuning beat") or "disagrees with people" in verdict
    elif high < 0:
        assert " wins: people prefer its answer" in verdict
    else:
        assert "Quality ties with" in verdict
    assert ("disagrees with people" in verdict) == (judged["state"] == "unreliable")
    assert "## Judged comparison" in (folder / "report.md").read_text()
    assert (folder / "judge.jsonl").is_file()
