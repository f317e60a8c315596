"""No secret on disk or on screen (issue 15, item 4): what a secret is, the one scrubber, and each writer and
printout that goes through it. Fast: no training. tests/e2e/test_secrets_e2e.py scans whole run dirs."""

import json
import logging
import os
import stat
import sys
import types
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import TINY
from ftorch import secrets
from ftorch.cli import main
from ftorch.run.rundir import RunDir, write_json_atomic
from ftorch.secrets import REDACTED, redact, redact_hydra_dir, redact_override, redact_override_line, scrub


@pytest.fixture(autouse=True)
def forget_remembered_secrets():
    """Each test starts with no secret remembered by an earlier one in this process (cli.main remembers them)."""
    saved = (set(secrets._remembered), set(secrets._remembered_env))
    secrets._remembered.clear()
    secrets._remembered_env.clear()
    yield
    secrets._remembered.clear()
    secrets._remembered_env.clear()
    secrets._remembered.update(saved[0])
    secrets._remembered_env.update(saved[1])

# Planted values: each must never be written or printed. Names are unique to this file (secrets are remembered
# for the life of the process).
ENV_KEY = "sk-PLANTEDenvKEY0123456789abcdef"
TOKEN = "plantedMetaTok31"
PROMPT_KEY = "sk-proj-PLANTEDprompt0123456789"
PASTED = "sk-PLANTEDpasted0123456789abcd"
PLANTED = (ENV_KEY, TOKEN, PROMPT_KEY, PASTED)


def assert_clean(text: str, what: str = "") -> None:
    for value in PLANTED:
        assert value not in text, f"{value} in {what}:\n{text[:3000]}"


@pytest.fixture
def planted(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)


@pytest.mark.parametrize("text,expected", [
    ("key sk-abcdefghijklmnopqrstuv here", f"key {REDACTED} here"),
    ("sk-proj-abcdefghijklmnopqrstuv", REDACTED),
    ("hf_abcdefghijklmnopqrstuvwxyz", REDACTED),
    ("ghp_abcdefghijklmnopqrstuvwxyz0123", REDACTED),
    ("Authorization: Bearer abc.def-ghi_123456", f"Authorization: Bearer {REDACTED}"),
    ("mlflow_uri https://alice:t0ken-value@mlflow.example.com/x", f"mlflow_uri https://{REDACTED}@mlflow.example.com/x"),
    # not keys: left alone
    ("sqlite:///tmp/mlflow.db and http://localhost:5000/api", None),
    ("max_new_tokens=128 sk-learn task-abcdefghijklmnopqrstu /work/main", None),
    ("hf_hub offline; pad_token <pad>", None),
])
def test_key_shapes_are_scrubbed_anywhere_in_a_text(text, expected):
    assert scrub(text) == (text if expected is None else expected)


def test_environment_secrets_are_scrubbed_by_value(monkeypatch):
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "plainvalue-4242")
    monkeypatch.setenv("PWD", "/work/not-a-secret")
    assert scrub("got plainvalue-4242 and /work/not-a-secret") == f"got {REDACTED} and /work/not-a-secret"


@pytest.mark.parametrize("key,secret", [("api_key", True), ("hf_token", True), ("OPENAI_API_KEY", True),
                                        ("client_secret", True), ("password", True), ("authorization", True),
                                        ("max_new_tokens", False), ("max_tokens", False), ("tokenizer", False),
                                        ("keyword", False), ("pad_token", False), ("eos_token", False),
                                        ("api_key_env", False), ("openai_api_key_env", False)])
def test_secret_key_names(key, secret):
    assert secrets.secret_name(key) is secret
    value = f"value-of-{key}"  # each its own: a redacted value is remembered and scrubbed everywhere after
    assert (redact({key: value}, {key: value})[key] == REDACTED) is secret


def test_a_value_from_a_secret_env_var_is_redacted_under_any_key_and_remembered(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_KEY", "fromenv-98765")
    raw = {"provider": {"suffix": "${oc.env:MY_SERVICE_KEY}", "base": "http://x"},
           "eval": {"system_prompt": f"say {PROMPT_KEY} ok"}}
    clean = redact(OmegaConf.to_container(OmegaConf.create(raw), resolve=True), raw)
    assert clean == {"provider": {"suffix": REDACTED, "base": "http://x"},
                     "eval": {"system_prompt": f"say {REDACTED} ok"}}
    secrets.remember_config({"provider": {"metadata": {"token": TOKEN}}})
    assert scrub(f"metadata: {{'token': '{TOKEN}'}}") == f"metadata: {{'token': '{REDACTED}'}}"


def test_variables_named_by_key_env_settings_are_secret(monkeypatch):
    monkeypatch.setenv("ACME_LLM", "acme-credential-555")  # a name that does not look like a secret
    secrets.remember_config({"provider": {"api_key_env": "ACME_LLM"}})
    assert scrub("sent acme-credential-555") == f"sent {REDACTED}"


def test_key_env_settings_refuse_a_key_without_echoing_it():
    problems = secrets.key_env_problems({"provider": {"api_key_env": PASTED}, "eval": {"openai_api_key_env": "OK_NAME"}})
    assert [(k, m) for k, m, _ in problems] == [("provider.api_key_env",
                                                 "looks like a key, not the name of an environment variable")]
    assert_clean(repr(problems))


def test_overrides_and_hydra_override_dirname(tmp_path):
    assert redact_override(f"+provider.metadata.token={TOKEN}") == f"+provider.metadata.token={REDACTED}"
    assert redact_override("provider.suffix=${oc.env:OPENAI_API_KEY}") == "provider.suffix=${oc.env:OPENAI_API_KEY}"
    assert redact_override(f"eval.system_prompt=use {PROMPT_KEY}") == f"eval.system_prompt=use {REDACTED}"
    line = f"+provider.metadata.token={TOKEN},eval.limit=3,provider.api_key_env={PASTED},train.lr=1e-4"
    assert redact_override_line(line) == (f"+provider.metadata.token={REDACTED},eval.limit=3,"
                                          f"provider.api_key_env={REDACTED},train.lr=1e-4")
    hydra = tmp_path / "run" / ".hydra"
    hydra.mkdir(parents=True)
    task = [f"+provider.metadata.token={TOKEN}", f"eval.system_prompt=a {PROMPT_KEY}", "train.lr=1"]
    (hydra / "overrides.yaml").write_text(yaml.safe_dump(task))
    (hydra / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": task}, "job": {
        "override_dirname": ",".join(task), "env_set": {"HF_TOKEN": "hf_abcdefghijklmnopqrstuvwx"}}}}))
    (hydra / "config.yaml").write_text(yaml.safe_dump({"provider": {"metadata": {"token": TOKEN}},
                                                       "x": "${oc.env:OPENAI_API_KEY}"}))
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": task}}}))
    redact_hydra_dir(hydra)
    for path in [*hydra.iterdir(), tmp_path / "multirun.yaml"]:
        text = path.read_text()
        assert_clean(text, path.name)
        assert "hf_abcdefghijklmnop" not in text
    assert "train.lr=1" in (hydra / "overrides.yaml").read_text()
    assert "${oc.env:OPENAI_API_KEY}" in (hydra / "config.yaml").read_text()  # a name, kept


def test_json_artifacts_and_train_log_are_scrubbed(tmp_path, planted):
    run = RunDir(tmp_path)
    write_json_atomic(tmp_path / "x.json", {"error": f"failed with key {ENV_KEY}", "n": [PROMPT_KEY, 1]})
    run.append_log(f"request had Bearer {ENV_KEY}")
    from ftorch.backends import _hf

    handler = _hf.attach_log_file(run)
    try:
        logging.getLogger("ftorch.test").info("header %s", ENV_KEY)
        try:
            raise ValueError(f"bad key {PROMPT_KEY}")
        except ValueError:
            logging.getLogger("transformers.test").exception("failed")
    finally:
        _hf.detach_log_file(handler)
    for name in ("x.json", "train.log"):
        text = (tmp_path / name).read_text()
        assert_clean(text, name)
        assert REDACTED in text
    assert "ValueError: bad key" in (tmp_path / "train.log").read_text()


def test_console_is_scrubbed_whatever_prints(capsys, planted):
    secrets.guard_console()
    print(f"a {ENV_KEY} b")
    print(f"{PROMPT_KEY}", file=sys.stderr)
    out, err = capsys.readouterr()
    assert_clean(out + err)
    assert out == f"a {REDACTED} b\n"


def plan_output(capsys, *overrides: str) -> str:
    code = main(["plan", *overrides])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out + err


OPENAI = ["recipe=openai-quickstart", "provider.suffix=${oc.env:OPENAI_API_KEY}", f"+provider.metadata.token={TOKEN}",
          f"eval.system_prompt=use {PROMPT_KEY} ok"]
LOCAL = [*TINY, f"eval.system_prompt=use {PROMPT_KEY} ok", "eval=none"]


@pytest.mark.parametrize("overrides", [OPENAI, ["provider=axolotl", *LOCAL], ["provider=unsloth", *LOCAL,
                                                                            "provider.allow_cpu=true"],
                                       ["provider=peft", *LOCAL]], ids=["openai", "axolotl", "unsloth", "peft"])
def test_plan_printout_and_json_hold_no_secret(capsys, planted, overrides):
    text = plan_output(capsys, *overrides)
    assert_clean(text, "plan")
    assert "backend input" in text
    plan = json.loads(plan_output(capsys, "--json", *overrides))
    assert_clean(json.dumps(plan), "plan --json")


@pytest.mark.parametrize("key", ["provider.api_key_env", "eval.openai_api_key_env"])
def test_a_key_pasted_as_key_env_is_a_config_error_that_does_not_echo_it(capsys, key):
    extra = ["recipe=openai-quickstart"] if key.startswith("provider") else TINY
    assert main(["plan", *extra, f"{key}={PASTED}"]) == 2
    out, err = capsys.readouterr()
    assert_clean(out + err)
    assert f"{key}: looks like a key, not the name of an environment variable" in err


def test_mlflow_params_and_tags_hold_no_secret(tmp_path, planted, monkeypatch):
    logged: list = []
    fake = types.ModuleType("mlflow")

    class Active:
        info = types.SimpleNamespace(run_id="r1")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    fake.set_tracking_uri = fake.set_experiment = lambda *a, **k: None
    fake.get_experiment_by_name = lambda name: object()
    fake.start_run = lambda **k: (logged.append(k), Active())[1]
    fake.log_params = lambda params: logged.append(params)
    fake.log_metric = fake.log_metrics = fake.log_artifact = fake.log_artifacts = lambda *a, **k: None
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    from ftorch.run import tracking
    from ftorch.config.schema import RunConfig

    cfg = RunConfig.model_validate({"model": {"name": "m"}, "data": {"train": "t.jsonl"},
                                    "provider": {"name": "openai", "metadata": {"token": TOKEN},
                                                 "suffix": "x"}, "eval": {"system_prompt": f"p {PROMPT_KEY}"},
                                    "tracking": {"backend": "mlflow", "mlflow_uri": f"sqlite:///{tmp_path}/m.db"}})
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.update(status="succeeded", provider="openai", recipe="r", metrics={})
    tracking.record(run, cfg, tmp_path)
    assert_clean(json.dumps(logged, default=str), "mlflow")
    assert logged[1]["provider.metadata.token"] == REDACTED


def test_openai_job_and_events_records_are_scrubbed(tmp_path, planted):
    from ftorch.backends.openai import _Follower

    event = types.SimpleNamespace(id="e1", message=f"echo {ENV_KEY}",
                                  model_dump=lambda mode=None: {"id": "e1", "message": f"echo {ENV_KEY}",
                                                                "data": {"token": TOKEN}})
    client = types.SimpleNamespace(fine_tuning=types.SimpleNamespace(jobs=types.SimpleNamespace(
        list_events=lambda job_id, limit: types.SimpleNamespace(data=[event]))))
    follower = _Follower(client, "job-1", RunDir(tmp_path), 0.01, 0.01)
    follower._events()
    assert_clean((tmp_path / "events.jsonl").read_text(), "events.jsonl")


def test_a_fake_axolotl_run_writes_no_secret(tmp_path, planted, capsys):
    """provider=axolotl as far as it runs without Axolotl: a fake interpreter answers the probe and the config
    check, and its 'training' prints the key; axolotl.yaml, train.log, run dir and console stay clean."""
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\n"
                      'case "$2" in --probe) echo \'{"axolotl": "0-fake", "torch": "0", "gpus": 0, "cuda": false, '
                      '"bf16": false}\';; *.yaml) echo \'{"errors": [], "unknown_keys": [], "suggestions": {}}\';; '
                      '*) echo "child sees $OPENAI_API_KEY"; exit 3;; esac\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    runs = tmp_path / "runs"
    code = main(["train", "provider=axolotl", *LOCAL, f"paths.runs={runs}", f"provider.python={python}",
                 f"+provider.axolotl.hub_token={TOKEN}"])
    out, err = capsys.readouterr()
    assert code != 0 and "exited with code 3" in err, err
    assert_clean(out + err, "console")
    (axolotl_yaml,) = runs.rglob("axolotl.yaml")
    assert yaml.safe_load(axolotl_yaml.read_text())["hub_token"] == REDACTED
    assert_tree_clean(axolotl_yaml.parent)


def assert_tree_clean(root: Path) -> None:
    """Every file under `root`, read as bytes: no planted value, in UTF-8 or UTF-16."""
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for value in PLANTED:
            for encoding in ("utf-8", "utf-16-le"):
                assert value.encode(encoding) not in data, f"{value} in {path}"
