"""run.json is atomic and truthful; secrets never reach the run directory."""

import json

import pytest
from omegaconf import OmegaConf

from ftorch.backends import Result
from ftorch.errors import BackendError, RunInterrupted
from ftorch.run.lifecycle import supervise
from ftorch.run.rundir import REDACTED, RunDir, redact, redact_hydra_dir, redact_override, write_json_atomic


def started(tmp_path) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.start(recipe="r", provider="peft", project_root=tmp_path, overrides=["train.lr=1"])
    return run


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "x.json"
    write_json_atomic(target, {"a": 1})
    write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_start_records_provenance_and_refuses_to_overwrite(tmp_path):
    run = started(tmp_path)
    record = run.read()
    assert record["status"] == "running" and record["provider"] == "peft"
    assert "torch" in record["packages"] and record["host"]
    with pytest.raises(FileExistsError):
        run.start(recipe="r", provider="peft", project_root=tmp_path, overrides=[])


@pytest.mark.parametrize("failure,status", [(KeyboardInterrupt, "interrupted"), (RunInterrupted, "interrupted"),
                                            (BackendError("boom"), "failed"), (RuntimeError("bug"), "failed")])
def test_status_is_never_left_running(tmp_path, failure, status):
    run = started(tmp_path)

    def work():
        raise failure

    with pytest.raises(failure if isinstance(failure, type) else type(failure)):  # the failure itself, re-raised
        supervise(run, work, title="t")
    record = run.read()
    assert record["status"] == status
    assert record["ended"] and record["error"]


def test_success_records_metrics(tmp_path):
    run = started(tmp_path)
    supervise(run, lambda: Result("succeeded", metrics={"final_loss": 1.5}, extra={"device": "cpu"}), title="t")
    record = run.read()
    assert record["status"] == "succeeded" and record["metrics"]["final_loss"] == 1.5 and record["device"] == "cpu"


def test_env_secrets_and_secret_looking_values_are_redacted(monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "abc123")
    raw = {"provider": {"api_key": "${oc.env:MY_API_TOKEN}", "org": "${oc.env:MY_API_TOKEN}", "base": "http://x"},
           "note": "sk-abcdefghijklmnop", "lr": 0.1}
    resolved = OmegaConf.to_container(OmegaConf.create(raw), resolve=True)
    clean = redact(resolved, raw)
    assert clean["provider"] == {"api_key": REDACTED, "org": REDACTED, "base": "http://x"}
    assert clean["note"] == REDACTED and clean["lr"] == 0.1
    assert "abc123" not in json.dumps(clean)


def test_secrets_in_hydra_overrides_are_redacted(tmp_path):
    hydra_dir = tmp_path / ".hydra"
    hydra_dir.mkdir()
    (hydra_dir / "overrides.yaml").write_text("- train.lr=1\n- +provider.api_key=sk-secretsecretsecret\n")
    (hydra_dir / "hydra.yaml").write_text(
        "hydra:\n  overrides:\n    task:\n    - +provider.api_key=sk-secretsecretsecret\n")
    redact_hydra_dir(hydra_dir)
    for path in hydra_dir.iterdir():
        assert "sk-secret" not in path.read_text()
    assert "train.lr=1" in (hydra_dir / "overrides.yaml").read_text()
    assert redact_override("hub.token=hf_abcdefghijklmnopqrstu") == f"hub.token={REDACTED}"


@pytest.mark.parametrize("key,secret", [("api_key", True), ("hf_token", True), ("OPENAI_API_KEY", True),
                                        ("client_secret", True), ("password", True), ("max_new_tokens", False),
                                        ("max_tokens", False), ("tokenizer", False), ("keyword", False)])
def test_secret_key_names(key, secret):
    assert (redact({key: "value"}, {key: "value"})[key] == REDACTED) is secret


def test_a_run_seen_without_writes_is_left_alone(tmp_path):
    """What ranks other than 0 of a distributed run get (peft/child.py): the same code runs, nothing lands."""
    owner = RunDir(tmp_path)
    owner.update(status="running")
    owner.append_log("from rank 0")
    quiet = RunDir(tmp_path, writes=False)
    assert quiet.update(last_checkpoint_step=4).last_checkpoint_step == 4  # validated, not written
    quiet.append_log("from rank 1")
    assert owner.read() == {"status": "running"}
    assert "from rank 0" in owner.log.read_text() and "from rank 1" not in owner.log.read_text()


def test_an_interruption_names_the_newest_complete_checkpoint_on_disk(tmp_path):
    """A Ctrl-C between a checkpoint's save and the callback that records it: run.json names the checkpoint that
    `ftorch resume` will continue from, not the one before it; an incomplete newer one does not count."""
    run = started(tmp_path)
    run.update(last_checkpoint_step=3)
    for step, files in ((6, ("adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt",
                             "rng_state.pth", "training_args.bin")), (9, ("adapter_config.json",))):
        folder = run.checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        for name in files:
            (folder / name).write_bytes(b"x")
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))

    def work():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        supervise(run, work, title="t")
    record = run.read()
    assert record["status"] == "interrupted" and record["last_checkpoint_step"] == 6
    (tmp_path / "hosted").mkdir()
    other = started(tmp_path / "hosted")  # no checkpoints folder (a hosted provider): nothing added
    with pytest.raises(KeyboardInterrupt):
        supervise(other, work, title="t")
    assert other.read().get("last_checkpoint_step") is None
