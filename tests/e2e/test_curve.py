"""`ftorch curve` on the tiny model: a sweep over nested data fractions, the strongest prompt computed once on the
largest trial, the curve's files, the sentence in that trial's verdict and report, the leaderboard ranked by the
tuned headline; run again on the finished sweep, the kept answers are reused (no evaluation runs twice). Then
`ftorch data suspects` on a trained run: every training example ranked, with the model's answer beside the label."""

import json

import pytest

from conftest import TINY, read_run, run_cli

pytestmark = pytest.mark.slow
QUICK = [*TINY, "train.max_steps=2", "train.save_steps=100", "eval.general=false", "eval.safety=false",
         "eval.drift=false", "eval.k_shots=[1]", "eval.limit=6", "eval.validation_limit=4"]


def test_curve_sweeps_fractions_fits_and_reports(tmp_path):
    runs = tmp_path / "runs"
    result = run_cli("curve", f"paths.runs={runs}", "fractions=0.25,0.5,1.0", *QUICK, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sweep: 3 trials checked" in result.stdout
    (sweep,) = list((runs / "quickstart-tiny" / "sweeps").iterdir())
    curve = json.loads((sweep / "curve.json").read_text())
    assert [p["examples"] for p in curve["points"]] == [60, 120, 240]
    assert [p["fraction"] for p in curve["points"]] == [0.25, 0.5, 1.0]
    assert curve["baseline_arm"] and curve["baseline"] is not None
    assert (sweep / "curve.png").stat().st_size > 10_000
    sentence = curve["sentence"]
    assert sentence.startswith(("more data", "the learning curve is inconclusive"))
    assert f"curve: {sentence}" in " ".join(result.stdout.split())
    largest = curve["largest_trial"]
    record = read_run(tmp_path / largest if not largest.startswith("/") else __import__("pathlib").Path(largest))
    assert "Learning curve: " + sentence[0].upper() + sentence[1:] in record["evaluation"]["verdict"]
    report_md = (__import__("pathlib").Path(record["evaluation"]["dir"]) / "report.md").read_text()
    assert "## Learning curve" in report_md and "| 1× | 240 |" in report_md
    trials = sorted(sweep.glob("trial_*"))
    for trial in trials:  # every trial evaluated on the same test examples; only the largest has an eval/ folder
        answers = [json.loads(line) for line in (trial / "curve_answers.jsonl").read_text().splitlines()]
        assert len(answers) == 6
        assert read_run(trial)["objective"][0]["name"] == "eval_tuned_field_accuracy"
    assert sum((trial / "eval").is_dir() for trial in trials) == 1
    leaderboard = (sweep / "leaderboard.csv").read_text().splitlines()
    assert "data.train_fraction" in leaderboard[0] and "eval_tuned_field_accuracy" in leaderboard[0]

    again = run_cli("curve", "--sweep", str(sweep), *[o for o in QUICK if o.startswith("eval.")], timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((sweep / "curve.json").read_text())["sentence"] == sentence
    assert len(list((trials[-1] / "eval").iterdir())) == 1  # the strongest prompt was not computed again
    assert record["evaluation"]["verdict"].count("Learning curve:") == 1
    assert read_run(trials[-1])["evaluation"]["verdict"].count("Learning curve:") == 1

    refused = run_cli("curve", "--sweep", str(sweep), "train.lr=1")
    assert refused.returncode == 2 and "only eval.* settings" in refused.stderr
    bad = run_cli("curve", *TINY, "fractions=0,2")
    assert bad.returncode == 2 and "fractions are numbers in (0, 1]" in bad.stderr

    suspects = run_cli("data", "suspects", str(trials[0]), "--top", "3", timeout=600)
    assert suspects.returncode == 0, suspects.stderr[-3000:]
    lines = (trials[0] / "suspects.jsonl").read_text().splitlines()
    header, rows = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    assert header["count"] == 60 and len(rows) == 60  # the run's own fraction of the training file
    assert [r["rank"] for r in rows] == list(range(1, 61))
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert all(r["answer"] is not None and r["label"] and r["loss"] > 0 for r in rows)
    assert "--order suspects --run" in suspects.stdout
