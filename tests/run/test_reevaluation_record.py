"""A re-evaluation that does not finish never hides the earlier successful one: its verdict stays in run.json
(under evaluation.last_succeeded), `evaluated` stays true, and `runs ls` keeps its headline. Before, an
interrupted `ftorch eval` left evaluated=false and no verdict."""

from __future__ import annotations

import pytest

from ftorch.cli import main
from ftorch.eval.finished import evaluate_run, record_interrupted
from ftorch.run.rundir import RunDir

from support.fakes import Scripted
from support.finished import finished_run


@pytest.fixture
def evaluated(tmp_path):
    run, cfg = finished_run(tmp_path / "runs" / "r")
    report = evaluate_run(run, cfg, console=None, models=(Scripted(), None, None))
    first = run.read()
    assert first["evaluated"] is True and first["evaluation"]["verdict"] == report.verdict
    return run, cfg, first


def test_an_interrupted_re_evaluation_keeps_the_earlier_verdict(evaluated, capsys, monkeypatch):
    from ftorch.cli import console

    monkeypatch.setattr(console.out, "width", 250)  # the table's cells on one line each
    run, cfg, first = evaluated
    model = Scripted(run, interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(run, cfg, console=None, models=(model, None, None))
    while_running = model.seen_while_running["evaluation"]
    assert while_running["status"] == "running" and while_running["last_succeeded"] == first["evaluation"]
    record = run.read()
    assert record["evaluated"] is True and record["metrics"] == first["metrics"]
    assert record["evaluation"]["status"] == "interrupted"
    assert record["evaluation"]["last_succeeded"] == first["evaluation"]  # verdict, dir, headline, regressions
    assert record["evaluations"] == first["evaluations"]
    assert run.record().headline_metric == 1.0
    assert main(["runs", "ls", str(run.path.parent)]) == 0
    out = capsys.readouterr().out
    assert "succeeded, eval interrupted" in out and "exact_match 100.0%" in out


def test_a_re_evaluation_killed_outright_keeps_it_too(evaluated):
    """kill -9: run.json is left saying running; a reader reports the evaluation died, the earlier one kept."""
    run, cfg, first = evaluated
    model = Scripted(run, interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(run, cfg, console=None, models=(model, None, None))
    RunDir(run.path).update(**model.seen_while_running)  # as the killed process left it
    seen = run.observed()
    assert seen.evaluation.status == "died" and seen.evaluation.last_succeeded == first["evaluation"]
    assert seen.evaluated is True and seen.headline_metric == 1.0


def test_a_successful_re_evaluation_replaces_it(evaluated):
    run, cfg, first = evaluated
    evaluate_run(run, cfg, console=None, models=(Scripted(), None, None))
    record = run.read()
    assert record["evaluation"]["status"] == "succeeded" and "last_succeeded" not in record["evaluation"]
    assert record["evaluation"]["dir"] != first["evaluation"]["dir"] and len(record["evaluations"]) == 2


def test_a_first_evaluation_interrupted_has_nothing_to_keep(tmp_path):
    run, cfg = finished_run(tmp_path / "r")
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(run, cfg, console=None, models=(Scripted(run, interrupt=True), None, None))
    record = run.read()
    assert record["evaluated"] is False and record["evaluation"]["status"] == "interrupted"
    assert "last_succeeded" not in record["evaluation"]
    record_interrupted(run)  # what training's interrupt handler calls afterwards: it changes nothing
    assert run.read()["evaluation"]["status"] == "interrupted"
