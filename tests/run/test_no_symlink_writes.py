"""No write follows a symlink inside a run folder, an eval or export folder, a cache or a sweep folder (issue 25,
item 1). Each test plants a symlink to a victim file (or folder) outside the run at a name ftorch writes, runs the
writer, and shows the victim untouched: an appended or locked file is refused (UnsafePath, exit 2, naming the
path); an atomically replaced file has its link replaced, never written through. Unit-level calls of the writers
(fast); one slow test resumes a real tiny run with symlinks at every fixed name that resume writes."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from ftorch.cli import main
from ftorch.run.rundir import RunDir, write_json_atomic
from ftorch.safe_io import UnsafePath

PRECIOUS = "precious: not ftorch's file\n"


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file of someone else's, outside every run folder."""
    path = tmp_path / "elsewhere" / "victim.txt"
    path.parent.mkdir()
    path.write_text(PRECIOUS)
    return path


@pytest.fixture
def victim_dir(tmp_path) -> Path:
    """A folder of someone else's, outside every run folder (empty: anything in it was written through a link)."""
    path = tmp_path / "elsewhere-folder"
    path.mkdir()
    return path


def make_run(folder: Path, status: str = "failed", **fields) -> RunDir:
    run = RunDir(folder)
    folder.mkdir(parents=True)
    run.update(**{"status": status, "recipe": "r", "provider": "peft", "started": "2026-01-01T00:00:00+00:00",
                  "ended": None, "pid": os.getpid(), "host": socket.gethostname(), **fields})
    return run


def plant(link: Path, target: Path) -> Path:
    """A symlink at `link` (in place of the file ftorch made there, if any) to `target`."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    return link


def untouched(victim: Path) -> bool:
    return victim.read_text() == PRECIOUS


# --- the three reported cases -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_resume_refuses_a_symlinked_run_lock(tmp_path, victim, capsys, dangling):
    run = make_run(tmp_path / "runs" / "r")
    target = tmp_path / "elsewhere" / "not-yet" if dangling else victim
    plant(run.lock_file, target)
    assert main(["resume", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert str(run.lock_file) in err and "symlink" in err and "Traceback" not in err
    assert untouched(victim) and not (tmp_path / "elsewhere" / "not-yet").exists()
    assert run.record().status == "failed"  # nothing was started


@pytest.mark.parametrize("command", ["eval", "cancel"])
def test_other_commands_that_lock_refuse_a_symlinked_run_lock(tmp_path, victim, capsys, command):
    run = make_run(tmp_path / "runs" / "r", status="running")
    plant(run.lock_file, victim)
    assert main([command, str(run.path)]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert untouched(victim)


def test_a_symlinked_lock_names_nobody_as_holder(tmp_path, victim):
    import fcntl

    run = make_run(tmp_path / "runs" / "r")
    plant(run.lock_file, victim)
    with victim.open() as other:  # the victim's owner has it locked: that must not pass for this run's holder
        fcntl.flock(other, fcntl.LOCK_EX)
        assert run.holder() is None  # opened with O_NOFOLLOW: the victim is neither read nor locked
    assert untouched(victim)


def test_metrics_rewrite_replaces_a_symlinked_temporary_file(tmp_path, victim):
    from ftorch.run.metrics_log import keep_metrics_until

    run = make_run(tmp_path / "runs" / "r")
    run.metrics.write_text("".join(json.dumps({"step": s, "kind": "train", "loss": 1.0}) + "\n" for s in (1, 2, 3)))
    plant(run.path / ".metrics.jsonl.tmp", victim)
    keep_metrics_until(run, 2)
    assert untouched(victim)
    assert [json.loads(line)["step"] for line in run.metrics.read_text().splitlines()] == [1, 2]
    assert not run.metrics.is_symlink()


def test_metrics_rewrite_replaces_a_symlinked_metrics_file(tmp_path, victim):
    from ftorch.run.metrics_log import keep_metrics_until

    run = make_run(tmp_path / "runs" / "r")
    plant(run.metrics, victim)
    keep_metrics_until(run, 2)
    assert untouched(victim) and not run.metrics.is_symlink()


def test_train_log_symlink_is_refused_by_every_log_writer(tmp_path, victim):
    from ftorch.run.library_log import attach_log_file

    run = make_run(tmp_path / "runs" / "r")
    plant(run.log, victim)
    with pytest.raises(UnsafePath, match="train.log"):
        run.append_log("a line")
    with pytest.raises(UnsafePath, match="train.log"):
        attach_log_file(run)  # the handler library warnings go through
    assert untouched(victim)


def test_resume_with_a_symlinked_train_log_exits_2_before_any_work(tmp_path, victim, capsys):
    run = make_run(tmp_path / "runs" / "r")
    plant(run.log, victim)
    assert main(["resume", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert str(run.log) in err and "Traceback" not in err
    assert untouched(victim) and run.record().status == "failed"


def test_library_log_handler_appends_to_a_real_train_log(tmp_path):
    import logging

    from ftorch.run.library_log import attach_log_file, detach_log_file

    run = make_run(tmp_path / "runs" / "r")
    handler = attach_log_file(run)
    try:
        logging.getLogger("ftorch").info("through the handler")
    finally:
        detach_log_file(handler)
    assert "through the handler" in run.log.read_text()


# --- every other file ftorch writes in a run folder ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["run.json", "plan.json", "data/manifest.json", "checkpoints.json",
                                  "unsloth/request.json", "child_result.json"])
def test_json_records_replace_a_symlink(tmp_path, victim, name):
    run = make_run(tmp_path / "runs" / "r")
    plant(run.path / name, victim)
    write_json_atomic(run.path / name, {"status": "succeeded"})
    assert untouched(victim)
    assert not (run.path / name).is_symlink() and json.loads((run.path / name).read_text())["status"] == "succeeded"


def test_run_json_update_replaces_a_symlink(tmp_path):
    run = make_run(tmp_path / "runs" / "r")
    other = make_run(tmp_path / "other-users-run")  # a valid run.json, so the update reads it
    before = other.run_json.read_text()
    plant(run.run_json, other.run_json)
    run.update(status="succeeded")
    assert other.run_json.read_text() == before and not run.run_json.is_symlink()


def test_config_yaml_replaces_a_symlink(tmp_path, victim):
    run = make_run(tmp_path / "runs" / "r")
    plant(run.path / "config.yaml", victim)
    run.write_config({"train": {"lr": 0.1}}, {"train": {"lr": 0.1}})
    assert untouched(victim) and "lr: 0.1" in (run.path / "config.yaml").read_text()


def test_metrics_append_refuses_a_symlink(tmp_path, victim):
    from ftorch.run import metrics_log

    run = make_run(tmp_path / "runs" / "r")
    plant(run.metrics, victim)
    with pytest.raises(UnsafePath, match="metrics.jsonl"):
        metrics_log.append(run.metrics, metrics_log.MetricsRow(step=1, kind="train", loss=1.0))
    assert untouched(victim)


@pytest.mark.parametrize("name", ["loss.png", ".loss.partial.png"])
def test_loss_plot_replaces_a_symlink(tmp_path, victim, name):
    from ftorch.run.lifecycle import _plot

    run = make_run(tmp_path / "runs" / "r")
    run.metrics.write_text("".join(json.dumps({"step": s, "kind": "train", "loss": 1.0 / s}) + "\n" for s in (1, 2)))
    plant(run.path / name, victim)
    assert _plot(run, "t") == run.path / "loss.png"
    assert untouched(victim)
    assert (run.path / "loss.png").read_bytes().startswith(b"\x89PNG") and not (run.path / "loss.png").is_symlink()


def test_split_manifest_copy_replaces_a_symlink(tmp_path, victim):
    from types import SimpleNamespace

    from ftorch.data.split import MANIFEST
    from ftorch.run.lifecycle import _copy_split_manifests

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("")
    (data / MANIFEST).write_text('{"split": 1}\n')
    run = make_run(tmp_path / "runs" / "r")
    plant(run.manifest.parent / MANIFEST, victim)
    report = SimpleNamespace(splits={"train": SimpleNamespace(path=data / "train.jsonl")})
    _copy_split_manifests(report, run)  # type: ignore[arg-type]
    assert untouched(victim) and (run.manifest.parent / MANIFEST).read_text() == '{"split": 1}\n'


@pytest.mark.parametrize("folder", ["checkpoints", "adapter", "data", "eval", "export", ".hydra", "unsloth"])
def test_a_symlinked_run_subfolder_is_refused_before_any_work(tmp_path, victim_dir, capsys, folder):
    run = make_run(tmp_path / "runs" / "r")
    plant(run.path / folder, victim_dir)
    assert main(["resume", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert str(run.path / folder) in err and "Traceback" not in err
    assert list(victim_dir.iterdir()) == [] and run.record().status == "failed"


# --- the adapter's staging folders (save_pretrained writes there) -------------------------------------------------


@pytest.mark.parametrize("existing_adapter", [False, True])
def test_adapter_staging_folders_planted_as_symlinks_are_not_followed(tmp_path, victim_dir, existing_adapter):
    from ftorch.backends.hf.publish import publish_adapter

    run = make_run(tmp_path / "runs" / "r")
    if existing_adapter:
        run.adapter.mkdir()
        (run.adapter / "old.bin").write_text("old")
    plant(run.path / ".adapter.partial", victim_dir)
    plant(run.path / ".adapter.old", victim_dir)

    def write(folder: Path) -> None:  # what save_pretrained does: makedirs(exist_ok=True), then files inside
        os.makedirs(folder, exist_ok=True)
        (folder / "adapter_config.json").write_text("{}")

    publish_adapter(run, write)
    assert list(victim_dir.iterdir()) == []
    assert (run.adapter / "adapter_config.json").read_text() == "{}" and not run.adapter.is_symlink()
    assert not (run.path / ".adapter.partial").exists()


# --- eval and export folders ----------------------------------------------------------------------------------------


def test_eval_folder_refuses_a_symlinked_eval_root(tmp_path, victim_dir):
    from ftorch.eval.suite import eval_dir

    run = make_run(tmp_path / "runs" / "r")
    plant(run.path / "eval", victim_dir)
    with pytest.raises(UnsafePath, match="eval"):
        eval_dir(run)
    assert list(victim_dir.iterdir()) == []


@pytest.mark.parametrize("name", ["predictions.jsonl", "general.jsonl", "safety.jsonl", "report.json"])
def test_eval_files_replace_a_symlink(tmp_path, victim, name):
    from ftorch.eval.report_model import EvalReport
    from ftorch.eval.suite import Evaluation, eval_dir, save

    run = make_run(tmp_path / "runs" / "r")
    path = eval_dir(run)
    plant(path / name, victim)
    scores = {"prompt_level": 1.0, "instruction_level": 1.0}
    safety = {"harmful_compliance_rate": 0.0}
    report = EvalReport.model_validate({
        "n": 1, "task": {"headline": "exact_match", "systems": {}},
        "general": {"n": 1, "base": scores, "tuned": scores, "answers": [{"q": "a"}]},
        "safety": {"base": safety, "tuned": safety, "answers": [{"q": "b"}]}})
    save(path, Evaluation(report, [{"prompt": "p", "tuned": "t"}]))
    assert untouched(victim) and not (path / name).is_symlink()
    assert json.loads((path / "report.json").read_text())["files"]["predictions"] == "predictions.jsonl"


def test_export_folder_refuses_a_symlinked_export_root(tmp_path, victim_dir):
    from ftorch.export.source import new_folder

    run = make_run(tmp_path / "runs" / "r")
    plant(run.path / "export", victim_dir)
    with pytest.raises(UnsafePath, match="export"):
        new_folder(run, "merged-float32")
    assert list(victim_dir.iterdir()) == []


def test_export_never_takes_a_name_planted_as_a_symlink(tmp_path, victim_dir):
    from ftorch.export.source import new_folder

    run = make_run(tmp_path / "runs" / "r")
    plant(run.path / "export" / "merged-float32", victim_dir)
    assert new_folder(run, "merged-float32") == run.path / "export" / "merged-float32-2"
    assert list(victim_dir.iterdir()) == []


def test_ollama_files_replace_a_symlink(tmp_path, victim):
    from types import SimpleNamespace

    from ftorch.export import ollama

    folder = tmp_path / "runs" / "r" / "export" / "ollama-q8_0"
    folder.mkdir(parents=True)
    plant(folder / "Modelfile", victim)
    plant(folder / "ollama-create.sh", victim)
    source = SimpleNamespace(record=SimpleNamespace(recipe="r"), run=SimpleNamespace(path=tmp_path / "runs" / "r"))
    original = (ollama.recognise, ollama.modelfile_text, ollama.system_prompt)
    try:
        ollama.recognise = lambda tokenizer: None  # type: ignore[assignment]
        ollama.modelfile_text = lambda *a: "FROM ./m.gguf\n"  # type: ignore[assignment]
        ollama.system_prompt = lambda source: None  # type: ignore[assignment]
        ollama.write_modelfile(source, folder, folder / "m.gguf", SimpleNamespace(eos_token="</s>"), "q8_0")
    finally:
        ollama.recognise, ollama.modelfile_text, ollama.system_prompt = original
    assert untouched(victim) and (folder / "Modelfile").read_text() == "FROM ./m.gguf\n"


# --- caches, sweep reports, hosted and Axolotl runs ---------------------------------------------------------------


def test_cache_manifest_replaces_a_symlink(tmp_path, victim):
    from ftorch.cache import MANIFEST, damage, write_manifest

    entry = tmp_path / "cache" / "entry"
    entry.mkdir(parents=True)
    (entry / "weights.bin").write_bytes(b"w" * 10)
    plant(entry / MANIFEST, victim)
    write_manifest(entry)
    assert untouched(victim) and damage(entry) is None


def test_gguf_header_cache_replaces_a_symlink(tmp_path, victim, monkeypatch):
    from ftorch import models

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    cached = models.converted_dir(gguf).with_name(models.converted_dir(gguf).name + ".header.json")
    plant(cached, tmp_path / "elsewhere" / "dangling")  # read fails, so the header is parsed and cached
    plant(cached.with_name(cached.name + f".{os.getpid()}.partial"), victim)  # the old fixed temporary name
    monkeypatch.setattr(models, "_read_gguf_header", lambda path: {"architecture": "llama"})
    assert models.gguf_metadata(gguf) == {"architecture": "llama"}
    assert untouched(victim) and not (tmp_path / "elsewhere" / "dangling").exists()
    assert json.loads(cached.read_text()) == {"architecture": "llama"} and not cached.is_symlink()


def test_redacted_hydra_files_replace_a_symlinked_temporary_file(tmp_path, victim):
    from ftorch.secrets import redact_hydra_dir

    hydra = tmp_path / "runs" / "r" / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "overrides.yaml").write_text("- provider.api_key=sk-abcdefghijklmnopqrstuvwxyz0123456789\n")
    plant(hydra / ".overrides.yaml.redact.tmp", victim)  # the fixed name the old helper wrote through
    redact_hydra_dir(hydra)
    assert untouched(victim) and "abcdefghijklmnop" not in (hydra / "overrides.yaml").read_text()


@pytest.mark.parametrize("name", ["leaderboard.csv", "leaderboard.md", "sweep.png", "best.yaml"])
def test_sweep_report_replaces_a_symlink(tmp_path, victim, name):
    from ftorch.sweep.report import write_report

    sweep = tmp_path / "sweep"
    for index, loss in enumerate((0.5, 0.4)):
        trial = make_run(sweep / str(index), status="succeeded", metrics={"final_eval_loss": loss},
                         objective=[{"name": "final_eval_loss", "direction": "minimize", "value": loss}])
        (trial.path / "config.yaml").write_text(f"train:\n  lr: {index + 1}.0e-4\n")
        (trial.path / "metrics.jsonl").write_text('{"step": 1, "kind": "train", "loss": 1.0}\n')
    plant(sweep / name, victim)
    outputs = write_report(sweep)
    assert untouched(victim) and name in {p.name for p in outputs.values()} and not (sweep / name).is_symlink()


def test_openai_files_never_follow_a_symlink(tmp_path, victim):
    from types import SimpleNamespace

    from ftorch.backends.openai import backend

    run = make_run(tmp_path / "runs" / "r", provider="openai")
    plant(run.path / "events.jsonl", victim)
    poller = backend._Follower.__new__(backend._Follower)  # only what _events uses
    event = SimpleNamespace(id="e1", message="m", model_dump=lambda mode: {"id": "e1", "message": "m"})
    page = SimpleNamespace(data=[event])
    poller.client = SimpleNamespace(fine_tuning=SimpleNamespace(jobs=SimpleNamespace(
        list_events=lambda job_id, limit: page)))
    poller.job_id, poller.seen, poller.events = "job", set(), run.path / "events.jsonl"
    with pytest.raises(UnsafePath, match="events.jsonl"):
        poller._events()
    plant(run.path / "result_file.csv", victim)
    job = SimpleNamespace(id="job", result_files=["f"])
    raw = b"step,train_loss\n1,0.5\n"
    client = SimpleNamespace(files=SimpleNamespace(content=lambda file_id: SimpleNamespace(read=lambda: raw)))
    backend._download_metrics(client, job, run)
    assert untouched(victim) and not (run.path / "result_file.csv").is_symlink()


def test_axolotl_writes_never_follow_a_symlink(tmp_path, victim, victim_dir):
    from ftorch.backends.axolotl import config as axolotl_config
    from ftorch.backends.axolotl.backend import _finish

    run = make_run(tmp_path / "runs" / "r", provider="axolotl")
    plant(run.path / "axolotl_data", victim_dir)
    with pytest.raises(UnsafePath, match="axolotl_data"):
        axolotl_config.write_rl_data("dpo", {"train": []}, run.path)
    assert list(victim_dir.iterdir()) == []
    run.checkpoints.mkdir()
    (run.checkpoints / "adapter_config.json").write_text("{}")
    run.adapter.mkdir()
    plant(run.adapter / "adapter_config.json", victim)
    _finish(run, {})
    assert untouched(victim) and (run.adapter / "adapter_config.json").read_text() == "{}"


def test_axolotl_child_result_replaces_a_symlink(tmp_path, victim):
    from ftorch.backends.axolotl import child as axolotl_child

    plant(tmp_path / "child_result.json", victim)
    plant(tmp_path / f"child_result.json.{os.getpid()}.tmp", victim)  # the old fixed temporary name
    axolotl_child._write_atomic(str(tmp_path / "child_result.json"), {"status": "succeeded"})
    assert untouched(victim) and json.loads((tmp_path / "child_result.json").read_text()) == {"status": "succeeded"}


def test_unsloth_probe_replaces_a_symlink_and_refuses_a_symlinked_folder(tmp_path, victim, victim_dir):
    """RUN/unsloth/probe.pt (the reload check's logits, written in the Unsloth child) without Unsloth: the write
    is factored out, and it is the same call the child makes."""
    import torch

    from ftorch.backends.unsloth.child import save_probe

    run = make_run(tmp_path / "runs" / "r", provider="unsloth")
    plant(run.path / "unsloth" / "probe.pt", victim)
    probe = {"input_ids": torch.tensor([[1, 2, 3]]), "logits": torch.ones(1, 3, 4)}
    path = save_probe(run, probe)
    assert untouched(victim) and path == run.path / "unsloth" / "probe.pt" and not path.is_symlink()
    got = torch.load(path)
    assert torch.equal(got["input_ids"], probe["input_ids"]) and torch.equal(got["logits"], probe["logits"])
    assert [p.name for p in path.parent.iterdir()] == ["probe.pt"]  # no temporary file left behind

    (run.path / "unsloth" / "probe.pt").unlink()
    (run.path / "unsloth").rmdir()
    plant(run.path / "unsloth", victim_dir)
    with pytest.raises(UnsafePath, match="unsloth"):
        save_probe(run, probe)
    assert list(victim_dir.iterdir()) == []


# --- a real run ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_of_a_real_run_writes_through_no_planted_symlink(tmp_path, victim, victim_dir):
    """A tiny run whose last checkpoint is its final step, marked failed: resume publishes the adapter again,
    rewrites metrics.jsonl and loss.png. Symlinks at each fixed name it writes leave their targets untouched."""
    from conftest import TINY, run_cli, train_run

    run_dir, _ = train_run(tmp_path / "runs", *TINY, "train.max_steps=4", "train.batch_size=4", "train.save_steps=2",
                           "eval.enabled=false")
    run = RunDir(run_dir)
    run.update(status="failed", error="planted")
    for name in (".metrics.jsonl.tmp", ".loss.partial.png", "loss.png"):
        plant(run.path / name, victim)
    plant(run.path / ".adapter.partial", victim_dir)
    plant(run.path / ".adapter.old", victim_dir)
    result = run_cli("resume", str(run.path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert untouched(victim) and list(victim_dir.iterdir()) == []
    assert run.record().status == "succeeded"
    assert (run.adapter / "adapter_config.json").is_file() and not (run.path / "loss.png").is_symlink()
