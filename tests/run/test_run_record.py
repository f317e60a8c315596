"""run.json through the typed RunRecord: round trip, old files, hand-edited ones, keys from newer versions."""

import json

import pytest

from ftorch.cli import main
from ftorch.errors import ConfigError
from ftorch.run.record import RunRecord
from ftorch.run.rundir import RunDir


def run_with(tmp_path, record: dict) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.run_json.write_text(json.dumps(record))
    return run


def test_round_trip_keeps_every_key_and_adds_none(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.start(recipe="r", provider="peft", project_root=tmp_path, overrides=["train.lr=1"])
    written = json.loads(run.run_json.read_text())
    run.finish("succeeded", metrics={"final_loss": 1.5}, device="cpu",
               evaluation={"status": "succeeded", "dir": "eval/1", "headline": "exact_match"})
    record = run.record()
    assert record.status == "succeeded" and record.metrics == {"final_loss": 1.5} and record.device == "cpu"
    assert record.evaluation is not None and record.evaluation.headline == "exact_match"
    on_disk = json.loads(run.run_json.read_text())
    assert set(on_disk) == set(written) | {"device", "evaluation"}  # only the keys set: no nulls for the rest
    assert on_disk["evaluation"] == {"status": "succeeded", "dir": "eval/1", "headline": "exact_match"}
    assert RunRecord.from_dict(on_disk, "x").to_json() == on_disk


def test_an_old_run_json_with_few_keys_reads(tmp_path):
    run = run_with(tmp_path, {"status": "succeeded", "metrics": {"final_loss": 2.0}})
    record = run.record()
    assert record.recipe is None and record.evaluations == [] and record.objective == []
    assert record.headline_metric is None and record.cost_usd is None
    run.update(regressed=False)  # writing it back adds only what was set
    assert json.loads(run.run_json.read_text()) == {"status": "succeeded", "metrics": {"final_loss": 2.0},
                                                    "regressed": False}


def test_a_hand_edited_status_is_a_config_error_naming_file_and_key(tmp_path, capsys):
    run = run_with(tmp_path, {"status": "finished", "recipe": "r"})
    with pytest.raises(ConfigError) as caught:
        run.record()
    problem = caught.value.problems[0]
    assert problem.where == f"{run.run_json}: status" and "'finished'" in problem.message
    assert "succeeded" in problem.hint
    assert main(["runs", "ls", str(tmp_path)]) == 0  # a listing skips the bad record, naming it
    err = capsys.readouterr().err
    assert "unknown run status 'finished'" in err and "Traceback" not in err


def test_a_wrong_type_names_the_nested_key(tmp_path):
    run = run_with(tmp_path, {"status": "succeeded", "evaluation": {"status": "succeeded", "regressions": 3},
                              "last_checkpoint_step": "six"})
    with pytest.raises(ConfigError) as caught:
        run.record()
    where = [p.where for p in caught.value.problems]
    assert where == [f"{run.run_json}: last_checkpoint_step", f"{run.run_json}: evaluation.regressions"]


def test_not_a_record_and_corrupt_files_are_config_errors(tmp_path):
    run = run_with(tmp_path, {"recipe": "r"})
    with pytest.raises(ConfigError, match="not a run record"):
        run.record()
    run.run_json.write_text('{"status": "runn')
    with pytest.raises(ConfigError, match="run.json is corrupt"):
        run.read()


def test_unknown_keys_from_a_newer_version_are_kept(tmp_path):
    run = run_with(tmp_path, {"status": "running", "future_field": {"a": [1, 2]},
                              "evaluation": {"status": "running", "future_eval_key": 7}})
    record = run.record()
    assert record.model_extra == {"future_field": {"a": [1, 2]}}
    run.finish("succeeded", metrics={"final_loss": 1.0})
    on_disk = json.loads(run.run_json.read_text())
    assert on_disk["future_field"] == {"a": [1, 2]} and on_disk["evaluation"]["future_eval_key"] == 7
    assert run.read()["future_field"] == {"a": [1, 2]}  # the dict view (backends/) keeps them too


def test_writers_are_validated(tmp_path):
    run = run_with(tmp_path, {"status": "running"})
    with pytest.raises(ValueError, match="bad run status 'died'"):  # 'died' is what readers say, never written
        run.update(status="died")
    with pytest.raises(ConfigError, match="last_checkpoint_step"):
        run.update(last_checkpoint_step="six")
    assert json.loads(run.run_json.read_text()) == {"status": "running"}  # nothing half-written


def test_unsloth_training_exports_and_ftorch_exports_are_separate_fields(tmp_path):
    """provider=unsloth records its training-time exports as {name: outcome} under unsloth_exports; `ftorch
    export` appends to the list `exports`: an export after an Unsloth run keeps both."""
    outcome = {"status": "succeeded", "path": "merged", "error": None}
    run = run_with(tmp_path, {"status": "succeeded", "unsloth_exports": {"merged_16bit": outcome}})
    run.update(exports=[*run.record().exports, {"dir": "export/merged-float32"}])
    record = run.record()
    assert record.unsloth_exports == {"merged_16bit": outcome} and record.exports == [{"dir": "export/merged-float32"}]
    with pytest.raises(ConfigError, match="exports"):
        RunRecord.from_dict({"status": "succeeded", "exports": {"merged_16bit": outcome}}, "run.json")
