"""No secret on disk or on screen (issue 15, item 4): what a secret is, the one scrubber, and each writer and
printout that goes through it. Fast: no training. tests/e2e/test_secrets_e2e.py scans whole run dirs."""

import json
import logging
import stat
import sys
import types
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from ftorch import secrets
from ftorch.cli import main
from ftorch.run.rundir import RunDir, write_json_atomic
from ftorch.secrets import REDACTED, redact, redact_hydra_dir, redact_override, redact_override_line, scrub

from conftest import TINY


@pytest.fixture(autouse=True)
def forget_remembered_secrets():
    """Each test starts with no secret remembered by an earlier one in this process (cli.main remembers them)."""
    held = (secrets._remembered, secrets._remembered_env, secrets._names)
    saved = [set(values) for values in held]
    for values in held:
        values.clear()
    yield
    for values, before in zip(held, saved):
        values.clear()
        values.update(before)

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
    problems = secrets.key_env_problems({"provider": {"api_key_env": PASTED},
                                         "eval": {"openai_api_key_env": "OK_NAME"}})
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
    from ftorch.run import library_log

    handler = library_log.attach_log_file(run)
    try:
        logging.getLogger("ftorch.test").info("header %s", ENV_KEY)
        try:
            raise ValueError(f"bad key {PROMPT_KEY}")
        except ValueError:
            logging.getLogger("transformers.test").exception("failed")
    finally:
        library_log.detach_log_file(handler)
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


# the key interpolated into a value ftorch only sends (metadata); in the suffix it is refused (see below)
OPENAI = ["recipe=openai-quickstart", "+provider.metadata.note=${oc.env:OPENAI_API_KEY}",
          f"+provider.metadata.token={TOKEN}",
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
    from ftorch.config.schema import RunConfig
    from ftorch.run import tracking

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
    from ftorch.backends.openai.backend import _Follower

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


# Issue 25, item 7: redaction by value, not by substring; a secret inside a value ftorch needs is refused at plan
# time; more key shapes and secret-like names.
NEW_SHAPES = ["glpat-PLANTEDgitlab0123456789ab", "sk_live_PLANTEDstripe0123456789ab", "rk_live_PLANTEDrestrict01234567",
              "sk_test_PLANTEDstripeTest012345", "whsec_PLANTEDwebhook0123456789abcdef",
              "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.c2lnbmF0dXJlUExBTlRFRA"]


@pytest.mark.parametrize("token", NEW_SHAPES, ids=["gitlab", "stripe-live", "stripe-restricted", "stripe-test",
                                                   "stripe-webhook", "jwt"])
def test_more_key_shapes_are_scrubbed_in_text_and_nested_records(tmp_path, token):
    assert scrub(f"clone with {token}, then") == f"clone with {REDACTED}, then"
    record = {"error": f"401 for {token}", "rows": [{"messages": [{"content": f"use '{token}'"}]}], "n": 3}
    assert secrets.scrub_text_tree(record) == {"error": f"401 for {REDACTED}", "n": 3,
                                               "rows": [{"messages": [{"content": f"use '{REDACTED}'"}]}]}
    write_json_atomic(tmp_path / "run.json", record)
    assert token not in (tmp_path / "run.json").read_text()
    assert redact({"provider": {"note": token}})["provider"]["note"] == REDACTED


def test_a_publishable_stripe_key_and_lookalikes_are_not_keys():
    text = "pk_live_abcdefghijklmnop0123 task_live_abcdefghijklmnopq eyJustAWord.eyJump.x"
    assert scrub(text) == text


@pytest.mark.parametrize("name", ["accesskey", "access_key", "aws_secretkey", "passphrase", "GPG_PASSPHRASE",
                                  "credentials", "auth", "jwt"])
def test_accesskey_and_passphrase_names_are_secret(name):
    value = f"Xq7{name[:3]}Rw92LmPz4Tk"  # high-entropy, its own per name
    assert secrets.secret_name(name)
    assert redact({"provider": {"metadata": {name: value}}})["provider"]["metadata"][name] == REDACTED
    assert redact_override(f"+provider.metadata.{name}={value}") == f"+provider.metadata.{name}={REDACTED}"
    secrets._remembered.clear()  # from here on, found only by its name
    assert secrets.scrub_text_tree({"job": {name: value}}) == {"job": {name: REDACTED}}
    for text in (f"{name}={value}", f"{name}: {value}", f'{{"{name}": "{value}"}}', f"{{'{name}': '{value}'}}"):
        assert value not in scrub(text), text


@pytest.mark.parametrize("name", ["max_new_tokens", "max_tokens", "prompt_tokens", "tokens", "author", "auth_url",
                                  "keyword", "pad_token", "cache_key"])
def test_counts_and_lookalike_names_are_never_redacted(name):
    assert not secrets.secret_name(name)
    record = {name: "Xq7aRw92LmPz4Tk0", "counts": {name: 128}}
    assert secrets.scrub_text_tree(record) == record
    assert scrub(f"{name}=Xq7aRw92LmPz4Tk0") == f"{name}=Xq7aRw92LmPz4Tk0"
    assert redact({name: 12345678901234}) == {name: 12345678901234}


def test_a_secret_name_beside_a_word_or_a_count_is_not_redacted_in_text():
    text = "token: exact_match_accuracy, password: correct horse, key=128, auth: none"
    assert scrub(text) == text
    answer = '{"key": "ORD2024ab12cdXY", "action": "move"}'  # a dataset's own `key` field, in a model's answer
    assert scrub(answer) == answer
    assert secrets.scrub_text_tree({"key": "ORD2024ab12cdXY"}) == {"key": "ORD2024ab12cdXY"}


def test_a_value_too_short_to_be_a_secret_is_never_redacted(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tiny-model")  # 10 characters
    secrets.remember("gpt4o-mini")
    text = "model tiny-model or gpt4o-mini in runs/tiny-model/x"
    assert scrub(text) == text
    raw = {"eval": {"judge": {"model": "${oc.env:MY_SERVICE_TOKEN}"}}, "model": {"name": "tiny-model"}}
    # interpolated from the variable, it goes from its own key; the same text elsewhere stays
    assert redact({"eval": {"judge": {"model": "tiny-model"}}, "model": {"name": "tiny-model"}}, raw) == {
        "eval": {"judge": {"model": REDACTED}}, "model": {"name": "tiny-model"}}
    assert not secrets.recorded_value_problems({"model": {"name": "tiny-model"}})


def test_a_secret_inside_a_bigger_token_is_not_redacted_but_a_whole_one_is(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "Zq8plantedPart4k")
    for text in ("xZq8plantedPart4k", "Zq8plantedPart4kx", "Zq8plantedPart4k_v2", "pre-Zq8plantedPart4k",
                 "runs/Zq8plantedPart4k-2/adapter"):
        assert scrub(text) == text
    for text in ("Zq8plantedPart4k", "key=Zq8plantedPart4k,", "ft:gpt-4o-mini:org:Zq8plantedPart4k:abc",
                 "runs/Zq8plantedPart4k/adapter", '"Zq8plantedPart4k"'):
        assert "Zq8plantedPart4k" not in scrub(text), text


def test_a_recipe_name_path_or_file_name_is_never_a_secret(monkeypatch):
    monkeypatch.setenv("MY_API_KEY", "my-private-recipe")
    monkeypatch.setenv("OTHER_TOKEN", "support-tickets-v2.jsonl")
    texts = ["runs/my-private-recipe/2025-01-01/adapter", "data /data/support-tickets-v2.jsonl"]
    assert [scrub(t) for t in texts] == [f"runs/{REDACTED}/2025-01-01/adapter", f"data /data/{REDACTED}"]  # not yet
    secrets.note_names({"data": {"train": "/data/support-tickets-v2.jsonl"}}, {"recipe": "my-private-recipe"})
    assert [scrub(t) for t in texts] == texts
    assert not secrets.is_secret("suffix", "my-private-recipe")


def test_secret_named_variable_holding_a_recipe_name_leaves_records_intact(tmp_path, monkeypatch, capsys):
    """MY_API_KEY=quickstart-tiny: the recipe name and every path in plan --json, run.json and config.yaml stay."""
    monkeypatch.setenv("MY_API_KEY", "quickstart-tiny")
    plan = json.loads(plan_output(capsys, "--json", *TINY, f"paths.runs={tmp_path}"))
    assert plan["recipe"] == "quickstart-tiny" and REDACTED not in json.dumps(plan)
    run = RunDir(tmp_path / "quickstart-tiny" / "2025-01-01_00-00-00")
    run.path.mkdir(parents=True)
    run.start(recipe="quickstart-tiny", provider="peft", project_root=tmp_path, overrides=["recipe=quickstart-tiny"])
    run.update(adapter=str(run.adapter), error=f"see {run.log}")
    run.write_config(plan["config"], plan["config"])
    record = json.loads(run.run_json.read_text())
    assert record["recipe"] == "quickstart-tiny" and record["overrides"] == ["recipe=quickstart-tiny"]
    assert record["adapter"] == str(run.adapter) and record["error"] == f"see {run.log}"
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    assert config["data"] == plan["config"]["data"] and config["paths"]["runs"] == str(tmp_path)


def test_a_secret_in_the_model_suffix_is_refused_at_plan_time(capsys, planted):
    assert main(["plan", "recipe=openai-quickstart", "provider.suffix=${oc.env:OPENAI_API_KEY}"]) == 2
    out, err = capsys.readouterr()
    assert "provider.suffix: contains the value of OPENAI_API_KEY" in err
    assert "Traceback" not in err
    assert_clean(out + err)


@pytest.mark.parametrize("overrides,message", [
    ([f"+provider.metadata.token={TOKEN}", f"provider.suffix=ft-{TOKEN}"],
     "provider.suffix: contains the value of provider.metadata.token"),
    (["provider.suffix=glpat-PLANTEDgitlab0123456789ab"], "provider.suffix: contains something shaped like a key"),
    ([f"model.name=org/{ENV_KEY}"], "model.name: contains something shaped like a key"),
])
def test_other_secrets_inside_recorded_values_are_refused(capsys, planted, overrides, message):
    assert main(["plan", "recipe=openai-quickstart", *overrides]) == 2
    out, err = capsys.readouterr()
    assert message in err
    assert_clean(out + err)
    assert "glpat-PLANTED" not in out + err


def test_a_secret_variable_inside_a_data_path_is_refused(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "Zq8plantedDir4k"
    folder.mkdir()
    train = folder / "train.jsonl"
    train.write_text((Path(__file__).parents[1] / "datasets/quickstart/train.jsonl").read_text())
    monkeypatch.setenv("MY_SERVICE_TOKEN", "Zq8plantedDir4k")
    assert main(["plan", *TINY, f"data.train={train}"]) == 2
    assert "data.train: contains the value of MY_SERVICE_TOKEN" in capsys.readouterr().err
