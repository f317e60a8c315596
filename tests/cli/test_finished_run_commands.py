"""Commands on a finished run: `ftorch eval RUN key=value` (the saved config with eval overrides in Hydra's grammar)
and `ftorch cancel RUN`."""

import pytest
import yaml

from ftorch.config.compose import find_project
from ftorch.errors import ConfigError
from ftorch.eval.finished import config_of
from ftorch.run.lifecycle import prepare
from ftorch.run.rundir import RunDir

from conftest import TINY

PROJECT = find_project()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    config = prepare(PROJECT, [*TINY, "eval=default", "eval.max_new_tokens=7"]).config
    (folder / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return RunDir(folder)


def test_a_group_option_merges_over_the_run_s_eval_settings(run):
    assert config_of(run, []).eval.headline != "field_accuracy"
    cfg = config_of(run, ["eval=json"])
    assert cfg.eval.headline == "field_accuracy" and "json_valid" in cfg.eval.metrics
    assert cfg.eval.max_new_tokens == 7  # the run's own eval settings are kept


def test_values_use_hydra_s_grammar(run):
    cfg = config_of(run, ["eval=json", "eval.metrics=[exact_match,field_accuracy]", "eval.limit=3",
                          "eval.system_prompt='a, b: c'"])
    assert cfg.eval.metrics == ["exact_match", "field_accuracy"] and cfg.eval.limit == 3
    assert cfg.eval.system_prompt == "a, b: c"


@pytest.mark.parametrize("overrides, message", [
    (["eval=jsn"], "did you mean 'json'?"),
    (["train.lr=1"], "only eval.* settings"),
    (["eval.limit=1,2"], "not a sweep"),
    (["eval.limit=[1"], "command line: eval.limit=[1"),
    (["eval.limt=3"], "eval.limt"),
])
def test_bad_overrides_are_config_errors(run, overrides, message):
    with pytest.raises(ConfigError) as raised:
        config_of(run, overrides)
    assert message in raised.value.render()


def test_cancel_of_a_local_run_says_there_is_no_remote_job(run, capsys):
    from ftorch.cli import main

    run.update(status="succeeded")
    assert main(["cancel", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert "provider=peft trains on this machine: there is no remote job to cancel" in err
    assert "Traceback" not in err
