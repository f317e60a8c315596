"""No secret on disk (issue 15, item 4), end to end: secrets are planted every way a user could (an env var
interpolated into a config value, a secret-keyed override, a key in a free-text field, the provider key in the
environment), then every file of the run dir (recursively, as bytes) and everything printed is searched for them.
provider=openai runs against the local spec-validated stand-in; peft trains the tiny model with a short
evaluation; axolotl/unsloth are covered without their environments in tests/test_secrets.py (plans, and a fake
Axolotl interpreter run)."""

import json
from pathlib import Path

import pytest

from conftest import TINY, read_run, run_cli, run_dirs
from support.openai_standin import SPEC_PATH, start_standin

pytestmark = pytest.mark.slow
ENV_SECRET = "plantedEnvSecret-7x9q2"  # held by a secret-named variable and interpolated into a config value
TOKEN = "plantedOverrideTok-55k"  # given as +provider.metadata.token=...
FREE_KEY = "sk-proj-PLANTEDfreeText0123456789"  # a key pasted into a free-text field
HF = "hf_PLANTEDhubtoken0123456789abcd"  # HF_TOKEN in the environment


def assert_nothing_leaked(planted: list[str], root: Path, *printed: str) -> None:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        data = path.read_bytes()
        for value in planted:
            for encoding in ("utf-8", "utf-16-le"):
                assert value.encode(encoding) not in data, f"{value!r} found in {path}"
    for text in printed:
        for value in planted:
            assert value not in text, f"{value!r} printed:\n{text[-3000:]}"


def test_peft_run_with_evaluation_keeps_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("FTORCH_PLANTED_TOKEN", ENV_SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", FREE_KEY.replace("proj", "envk"))
    monkeypatch.setenv("HF_TOKEN", HF)
    monkeypatch.setenv("MY_API_KEY", "quickstart-tiny")  # a recipe's name is never a secret (issue 25, item 7)
    result = run_cli("train", f"paths.runs={tmp_path}", *TINY, "train.max_steps=2", "train.save_steps=1",
                     "train.batch_size=4", "eval.limit=2", "eval.few_shot=1", "eval.general_limit=2",
                     "eval.safety_limit=2", "eval.max_new_tokens=4", "tracking=tensorboard",
                     "eval.system_prompt=Answer in JSON. ${oc.env:FTORCH_PLANTED_TOKEN}",
                     f"tracking.experiment=exp {FREE_KEY}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    record = read_run(run_dir)
    assert record["status"] == "succeeded" and record["evaluated"] is True
    assert record["recipe"] == "quickstart-tiny" and run_dir.parent.name == "quickstart-tiny"
    assert "***REDACTED***" not in json.dumps(record["artifacts"]) + json.dumps(record.get("evaluation"))
    assert all(Path(p).exists() for p in record["artifacts"].values() if isinstance(p, str) and "/" in p)
    assert (run_dir / "tensorboard").is_dir() and (run_dir / "plan.json").is_file()
    assert_nothing_leaked([ENV_SECRET, FREE_KEY, FREE_KEY.replace("proj", "envk"), HF], tmp_path,
                          result.stdout, result.stderr)
    overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "${oc.env:FTORCH_PLANTED_TOKEN}" in overrides and "***REDACTED***" in overrides


@pytest.mark.skipif(not SPEC_PATH.is_file(), reason=f"OpenAI spec not found at {SPEC_PATH}")
def test_openai_run_keeps_no_secret(tmp_path, monkeypatch):
    with start_standin() as standin:
        standin.scenario.chat_reply = lambda request: '{"action": "move"}'
        monkeypatch.setenv("OPENAI_BASE_URL", standin.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", standin.api_key)
        monkeypatch.setenv("FTORCH_PLANTED_TOKEN", ENV_SECRET)
        result = run_cli("train", f"paths.runs={tmp_path}", "recipe=openai-quickstart", "provider.poll_interval_s=0.01",
                         "provider.max_poll_interval_s=0.05", "eval.limit=2", "eval.few_shot=1",
                         "eval.general_limit=2", "eval.safety_limit=2", "eval.max_new_tokens=8",
                         "+provider.metadata.note=${oc.env:FTORCH_PLANTED_TOKEN}", f"+provider.metadata.token={TOKEN}",
                         f"eval.system_prompt=Reply in JSON {FREE_KEY}")
        assert result.returncode == 0, result.stderr[-3000:]
        (run_dir,) = run_dirs(tmp_path)
        assert read_run(run_dir)["status"] == "succeeded"
        for name in ("job.json", "events.jsonl", "plan.json", "config.yaml", ".hydra/hydra.yaml"):
            assert (run_dir / name).is_file(), name
        body = standin.requests_to("POST", "/v1/fine_tuning/jobs")[0].json
        assert body["metadata"]["token"] == TOKEN  # the API got it; the disk did not
        job = json.loads((run_dir / "job.json").read_text())
        assert job["metadata"]["token"] == "***REDACTED***"
        assert_nothing_leaked([ENV_SECRET, TOKEN, FREE_KEY, standin.api_key], tmp_path, result.stdout, result.stderr)


@pytest.mark.parametrize("provider", ["axolotl", "unsloth"])
def test_plan_of_the_other_providers_prints_no_secret(tmp_path, monkeypatch, provider):
    monkeypatch.setenv("FTORCH_PLANTED_TOKEN", ENV_SECRET)
    monkeypatch.setenv("HF_TOKEN", HF)
    extra = [f"+provider.axolotl.hub_token={TOKEN}"] if provider == "axolotl" else ["provider.allow_cpu=true"]
    result = run_cli("plan", f"provider={provider}", *TINY, f"paths.runs={tmp_path}", *extra,
                     "eval.system_prompt=Hi ${oc.env:FTORCH_PLANTED_TOKEN}", f"tracking.experiment=x {FREE_KEY}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "backend input" in result.stdout
    for text in (result.stdout, result.stderr):
        for value in (ENV_SECRET, TOKEN, FREE_KEY, HF):
            assert value not in text


def test_a_secret_in_the_model_suffix_is_refused_by_plan(tmp_path, monkeypatch):
    """Redacted in run.json, the fine-tuned model's id (ft:...:SUFFIX:...) would be useless: refused before any
    upload, naming the key and the variable, and without echoing the value."""
    monkeypatch.setenv("FTORCH_PLANTED_TOKEN", ENV_SECRET)
    result = run_cli("plan", "recipe=openai-quickstart", f"paths.runs={tmp_path}",
                     "provider.suffix=${oc.env:FTORCH_PLANTED_TOKEN}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "provider.suffix: contains the value of FTORCH_PLANTED_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    assert ENV_SECRET not in result.stdout + result.stderr
