"""The objective a trial reports, its direction, and Hydra's sweep syntax mapped to Optuna."""

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from ftorch.run.record import RunRecord
from ftorch.sweep.objective import direction_of, objectives, planned
from hydra_plugins.ftorch_optuna.optuna_sweeper import distribution


def test_auto_objective_prefers_the_evaluation_headline():
    record = RunRecord(status="succeeded", metrics={"eval_tuned_field_accuracy": 0.8, "final_loss": 1.2},
                       evaluation={"status": "succeeded", "headline": "field_accuracy"})
    assert objectives(record, "auto", "auto") == [{"name": "eval_tuned_field_accuracy", "value": 0.8,
                                                   "direction": "maximize"}]
    assert objectives(RunRecord(status="succeeded", metrics={"final_loss": 1.2}), "auto", "auto")[0] == {
        "name": "final_loss", "value": 1.2, "direction": "minimize"}


def test_multi_objective_with_forgetting():
    record = RunRecord(status="succeeded", metrics={"eval_general_base": 0.5, "eval_general_tuned": 0.4,
                                                    "final_loss": 2.0})
    found = objectives(record, ["final_loss", "general_change"], "auto")
    assert [f["direction"] for f in found] == ["minimize", "maximize"]
    assert found[1]["value"] == pytest.approx(-0.1)


def test_planned_objectives_follow_the_config():
    assert planned({"eval": {"enabled": True, "headline": "exact_match"}})[0]["name"] == "eval_tuned_exact_match"
    assert planned({"eval": {"enabled": False}, "data": {"validation": "v.jsonl"}})[0]["name"] == "final_eval_loss"
    assert direction_of("final_loss", "maximize") == "maximize"


@pytest.mark.parametrize("override,kind,fields", [
    ("train.lr=tag(log, interval(1e-4, 1e-2))", "FloatDistribution", {"low": 1e-4, "high": 1e-2, "log": True}),
    ("train.lora.r=choice(4, 8, 16)", "CategoricalDistribution", {"choices": (4, 8, 16)}),
    ("train.batch_size=range(2, 10, 2)", "IntDistribution", {"low": 2, "high": 8, "step": 2}),
    ("train.epochs=int(interval(1, 4))", "IntDistribution", {"low": 1, "high": 4}),
    ("train.epochs=interval(1, 4)", "FloatDistribution", {"low": 1.0, "high": 4.0}),
])
def test_hydra_sweep_syntax_to_optuna(override, kind, fields):
    (parsed,) = OverridesParser.create().parse_overrides([override])
    found = distribution(parsed)
    assert type(found).__name__ == kind
    for name, value in fields.items():
        assert getattr(found, name) == value


class _Launcher:
    """Stands in for Hydra's launcher: every job it is given finishes with final_loss = 1.0."""

    def __init__(self):
        self.launched = []

    def launch(self, batch, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        self.launched.extend(range(initial_job_idx, initial_job_idx + len(batch)))
        results = []
        for _ in batch:
            result = JobReturn()
            result.status, result._return_value = JobStatus.COMPLETED, 1.0
            results.append(result)
        return results


def test_a_trial_finished_before_the_interruption_is_counted_on_resume(tmp_path):
    """A Ctrl-C between a trial's run succeeding and the sweeper being told: on resume the run's
    own record scores it; it is neither run again nor replaced."""
    import json

    import optuna
    from omegaconf import OmegaConf

    from hydra_plugins.ftorch_optuna.optuna_sweeper import OptunaSweeper

    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    study = optuna.create_study(study_name="ftorch", storage=f"sqlite:///{sweep_dir / 'optuna.db'}",
                                directions=["minimize"])
    study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})  # left RUNNING
    trial_dir = sweep_dir / "trial_0"
    (trial_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"hydra": {"job": {"num": 0}}}), trial_dir / ".hydra" / "hydra.yaml")
    (trial_dir / "run.json").write_text(json.dumps({"status": "succeeded", "metrics": {"final_loss": 0.25}}))

    sweeper = OptunaSweeper(n_trials=2, n_jobs=1, seed=0, sampler="random", study_name="ftorch",
                            storage=None, params={"train.lr": "tag(log, interval(1e-4, 1e-2))"})
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}},
                                       "sweep": {"objective": "final_loss", "direction": "auto"}})
    sweeper.launcher = _Launcher()
    sweeper.hydra_context = type("Context", (), {"config_loader": None})()
    sweeper.sweep([])

    trials = optuna.load_study(study_name="ftorch", storage=f"sqlite:///{sweep_dir / 'optuna.db'}").trials
    assert [(t.number, t.state.name, t.values) for t in trials] == [(0, "COMPLETE", [0.25]), (1, "COMPLETE", [1.0])]
    assert sweeper.launcher.launched == [1]
    assert json.loads((trial_dir / "run.json").read_text())["objective"] == [
        {"name": "final_loss", "value": 0.25, "direction": "minimize"}]


def test_objectives_and_directions_must_pair_up():
    from pydantic import ValidationError

    from ftorch.config.schema import SweepSettings

    with pytest.raises(ValidationError, match="lists 1 directions for 2 objective"):
        SweepSettings(objective=["final_loss", "eval_tuned_field_accuracy"], direction=["minimize"])
    with pytest.raises(ValidationError, match="lists 2 directions for 1 objective"):
        SweepSettings(objective="final_loss", direction=["minimize", "maximize"])
    assert SweepSettings(objective=["a", "b"], direction="maximize").direction == "maximize"
    with pytest.raises(ValueError):  # the record-side pairing never cuts a list short either
        objectives(RunRecord(status="succeeded"), ["a", "b"], ["minimize"])


def test_planned_objectives_take_their_defaults_from_the_schema():
    from ftorch.config.schema import EvalConfig
    from ftorch.sweep.objective import planned

    headline = EvalConfig().headline
    assert planned({}) == [{"name": f"eval_tuned_{headline}", "direction": "maximize"}]
    assert planned({"eval": {"enabled": False}, "data": {"validation": "v.jsonl"}}) == [
        {"name": "final_eval_loss", "direction": "minimize"}]
    assert planned({"eval": {"enabled": False}}) == [{"name": "final_loss", "direction": "minimize"}]
    assert planned({"sweep": {"objective": ["general_change", "final_loss"], "direction": ["maximize", "auto"]}}) \
        == [{"name": "general_change", "direction": "maximize"}, {"name": "final_loss", "direction": "minimize"}]
