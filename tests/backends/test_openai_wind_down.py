"""OpenAI's self-serve fine-tuning wind-down in the product: plan states it with its dates and the alternatives,
and after 2027-01-06 refuses a new job at once (the date is injectable); Azure OpenAI is not part of it."""

from datetime import date

import pytest

from ftorch.config.compose import find_project
from ftorch.errors import ConfigError
from ftorch.openai_sdk import NEW_JOBS_END, wind_down
from ftorch.run.lifecycle import prepare

PROJECT = find_project()


def test_before_the_end_plan_states_the_dates_and_the_alternatives():
    note = wind_down("openai", date(2026, 12, 7))
    assert "2026-05-07" in note and "2027-01-06" in note and "30 days left" in note
    assert "provider=together" in note and "provider.api=azure" in note and "provider=peft" in note


def test_after_the_end_a_new_job_is_refused_naming_the_alternatives():
    with pytest.raises(ConfigError) as raised:
        wind_down("openai", date(2027, 1, 7))
    text = raised.value.render()
    assert "provider=openai" in text and "no new jobs after 2027-01-06" in text
    assert "provider=together" in text and "Azure OpenAI" in text and "ftorch eval" in text
    assert wind_down("openai", NEW_JOBS_END)  # the last day still plans


def test_azure_openai_is_not_part_of_it():
    assert "not part of" in wind_down("azure", date(2027, 6, 1))


def test_plan_with_provider_openai_carries_the_note(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    notes = prepare(PROJECT, ["recipe=openai-quickstart"]).plan.notes
    assert any("2027-01-06" in n and "provider=together" in n for n in notes)


def test_the_together_recipe_with_provider_openai_explains_the_wind_down(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(ConfigError) as raised:
        prepare(PROJECT, ["recipe=together-quickstart", "provider=openai"])
    text = raised.value.render()
    assert "provider.model: a setting of provider=together, not of provider=openai" in text
    assert "winding down" in text and "2027-01-06" in text


def test_after_the_end_existing_runs_keep_evaluating(monkeypatch, tmp_path):
    from ftorch.backends import get_backend
    from ftorch.run.rundir import RunDir

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    cfg = prepare(PROJECT, ["recipe=openai-quickstart"]).plan.config

    class Later(date):
        @classmethod
        def today(cls):
            return cls(2027, 2, 1)

    monkeypatch.setattr("ftorch.openai_sdk.date", Later)
    with pytest.raises(ConfigError, match="no new jobs after 2027-01-06"):
        prepare(PROJECT, ["recipe=openai-quickstart"])
    run = RunDir(tmp_path)
    run.update(status="succeeded", fine_tuned_model="ft:gpt-4o-mini-2024-07-18:org:x:abc")
    models = get_backend("openai").eval_models(run, cfg)  # the evaluation never asks about the wind-down
    assert models.generator.models["tuned"] == "ft:gpt-4o-mini-2024-07-18:org:x:abc"


def test_after_the_end_a_resumed_run_plans_again_to_follow_its_job(monkeypatch):
    """`ftorch resume` re-plans the run (make_plan(resuming=True)): a job created before the end is followed,
    while a new plan of the same recipe is refused."""
    from ftorch.backends import make_plan

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    prepared = prepare(PROJECT, ["recipe=openai-quickstart"])

    class Later(date):
        @classmethod
        def today(cls):
            return cls(2027, 2, 1)

    monkeypatch.setattr("ftorch.openai_sdk.date", Later)
    with pytest.raises(ConfigError, match="no new jobs after 2027-01-06"):
        make_plan(prepared.plan.config, prepared.plan.data)
    notes = make_plan(prepared.plan.config, prepared.plan.data, resuming=True).notes
    assert any("this resume follows the job the run recorded" in n for n in notes)
    with pytest.raises(ConfigError):  # the marker does not outlive the resumed plan
        make_plan(prepared.plan.config, prepared.plan.data)
