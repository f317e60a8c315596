"""The typed evaluation report: what the suite writes reads back unchanged, older report.json shapes still load,
and a file that is not a report is a clear error, never a traceback."""

from __future__ import annotations

import json

import pytest

from ftorch.errors import ConfigError
from ftorch.eval.finished import evaluate_run
from ftorch.eval.report_model import EvalReport

from support.fakes import ScriptedModel
from support.reports import real_run


def test_report_json_round_trips_through_the_model(scripted_project):
    run, cfg = scripted_project
    report = evaluate_run(run, cfg, console=None, models=(ScriptedModel(), None, None))
    folder = run.path / "eval"
    written = json.loads(next(folder.glob("*/report.json")).read_text())
    assert EvalReport.load(next(folder.glob("*/report.json"))).to_json() == written
    # the sections the suite built are typed, and absent ones stay absent
    assert report.general is not None and report.general.answers == "general.jsonl"
    assert report.safety is not None and report.safety.tuned.harmful_compliance_rate == 1.0
    assert report.task.mean("tuned", "exact_match") == 1.0 and report.headline == "exact_match"
    assert "drift" not in written and "lm_eval" not in written and "preference" not in written
    assert written["files"]["predictions"] == "predictions.jsonl" and written["verdict"] == report.verdict


def test_older_latency_shapes_are_read():
    bare = real_run(latency=(0.2, 0.5, 0.25))
    assert EvalReport.model_validate(bare).seconds_per_call("prompted") == 0.5
    in_cost = real_run()
    for name, seconds in (("base", 0.1), ("prompted", 0.4), ("tuned", 0.2)):
        in_cost["cost"][name]["latency"] = {"mean_s": seconds}
    typed = EvalReport.model_validate(in_cost)
    assert typed.seconds_per_call("tuned") == 0.2 and typed.cost["tuned"].prompt_tokens_per_call == 84.0


def test_a_typo_in_a_section_is_refused():
    report = real_run()
    report["general"]["tuned"]["prompt_levle"] = 0.5
    with pytest.raises(ValueError, match="prompt_levle"):
        EvalReport.model_validate(report)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", json.dumps({"task": {"headline": "x"}})])
def test_a_file_that_is_not_a_report_is_a_config_error(tmp_path, content):
    path = tmp_path / "run" / "eval" / "2026" / "report.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        EvalReport.load(path)
    assert str(path) in caught.value.render()
