"""ftorch train as a user runs it, in its own process, on a tiny local model (CPU)."""

import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ROOT, TINY, assert_two_process_run, read_run, run_cli, run_dirs, train_run

pytestmark = pytest.mark.slow
FAST = [*TINY, "train.max_steps=4", "train.save_steps=2", "train.batch_size=4"]
QUICK_EVAL = ["eval.limit=6", "eval.few_shot=2", "eval.general_limit=6", "eval.safety_limit=6",
              "eval.max_new_tokens=8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return train_run(runs, *FAST, *QUICK_EVAL)


def test_run_directory_contents(trained):
    run_dir, result = trained
    assert run_dir.parent.name == "quickstart-tiny"
    assert str(run_dir) in result.stdout
    for name in ("config.yaml", ".hydra/config.yaml", ".hydra/overrides.yaml", "run.json", "plan.json",
                 "data/manifest.json", "metrics.jsonl", "train.log", "loss.png", "adapter/adapter_config.json",
                 "adapter/adapter_model.safetensors", "adapter/tokenizer.json"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "checkpoints").glob("checkpoint-*"))


def test_run_json_tells_the_whole_story(trained):
    record = read_run(trained[0])
    assert record["status"] == "succeeded"
    assert record["provider"] == "peft" and record["recipe"] == "quickstart-tiny"
    assert record["started"] <= record["ended"]
    assert record["metrics"]["global_step"] == 4 and record["metrics"]["final_loss"] > 0
    assert record["packages"]["peft"] and record["host"]
    assert 0 < record["trainable_params"] < record["total_params"]
    assert record["reload_check"]["matches_trained"] and record["reload_check"]["changes_base_output"]


def test_the_thread_policy_reaches_the_run_and_is_recorded(trained):
    """conftest applied the policy in this process; the ftorch it started inherited it (threads.py), ran torch
    with that many threads and said so in run.json and train.log."""
    run_dir = trained[0]
    policy = read_run(run_dir)["threads"]
    assert policy["source"] == "inherited" and policy["threads"] >= 1
    log = (run_dir / "train.log").read_text()
    assert f"threads: torch intra-op {policy['threads']}, inter-op " in log
    assert "OpenMP wait policy PASSIVE" in log or policy["kept_env"].get("OMP_WAIT_POLICY")


def test_config_manifest_and_metrics(trained):
    run_dir = trained[0]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["train"]["max_steps"] == 4 and config["model"]["tiny"]["hidden_size"] == 64
    assert "${" not in (run_dir / "config.yaml").read_text()  # fully resolved
    manifest = json.loads((run_dir / "data" / "manifest.json").read_text())
    train = next(f for f in manifest["files"] if f["split"] == "train")
    assert train["examples"] == 240 and len(train["sha256"]) == 64
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4]
    assert all("loss" in r and "lr" in r for r in rows if r["kind"] == "train")
    assert any("tokens_per_s" in r for r in rows)


def test_saved_adapter_reloads_and_changes_the_output(trained):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = trained[0]
    adapter = run_dir / "adapter"
    base_path = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "Book a call with Lee Friday 3pm."}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    base = AutoModelForCausalLM.from_pretrained(base_path).eval()
    with torch.no_grad():
        before = base(**inputs).logits
        tuned = PeftModel.from_pretrained(base, str(adapter)).eval()
        after = tuned(**inputs).logits
    assert not torch.allclose(before, after, atol=1e-4)


def test_failed_run_is_recorded_as_failed(tmp_path):
    not_a_model = tmp_path / "empty-model"
    not_a_model.mkdir()
    runs = tmp_path / "runs"
    result = run_cli("train", f"paths.runs={runs}", "model.tiny=null", f"model.name={not_a_model}", "eval=none")
    assert result.returncode == 2  # a model that will not load is the user's to fix
    assert f"cannot load a tokenizer from '{not_a_model}'" in result.stderr
    assert "Traceback" not in result.stderr
    (run_dir,) = run_dirs(runs)
    record = read_run(run_dir)
    assert record["status"] == "failed" and str(not_a_model) in record["error"] and record["ended"]


def test_missing_local_model_folder_is_a_config_error(tmp_path):
    result = run_cli("train", f"paths.runs={tmp_path}", "model.tiny=null", "model.name=/no/such/model")
    assert result.returncode == 2 and "no model folder at '/no/such/model'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_multirun_gives_each_trial_its_own_run_dir(tmp_path):
    result = run_cli("train", "-m", f"paths.runs={tmp_path}", *TINY, "train.max_steps=2", "train.lr=1e-3,2e-3",
                     "eval=none")
    assert result.returncode == 0, result.stderr[-3000:]
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 2
    assert dirs[0].parent == dirs[1].parent and dirs[0].parent.parent.name == "sweeps"
    lrs = sorted(yaml.safe_load((d / "config.yaml").read_text())["train"]["lr"] for d in dirs)
    assert lrs == [1e-3, 2e-3]
    assert all(read_run(d)["status"] == "succeeded" for d in dirs)


def test_interrupt_then_resume_reaches_the_same_final_step(tmp_path):
    args = ["train", f"paths.runs={tmp_path}", *TINY, "train.max_steps=40", "train.save_steps=3",
            "train.batch_size=16", "train.max_length=256", "eval=none"]
    process = subprocess.Popen([sys.executable, "-m", "ftorch", *args], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        checkpoints = list(tmp_path.rglob("checkpoint-*/trainer_state.json"))
        if checkpoints:
            break
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    record = read_run(run_dir)
    assert record["status"] == "interrupted" and "ftorch resume" in record["error"]
    stopped_at = record["last_checkpoint_step"]
    assert 0 < stopped_at < 40

    result = run_cli("resume", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    record = read_run(run_dir)
    assert record["status"] == "succeeded" and record["metrics"]["global_step"] == 40
    assert record["resumed"] == ["interrupted"]
    assert record["evaluated"] is False and record["evaluation"]["status"] == "skipped"
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 40 and min(s for s in steps if s > stopped_at) == stopped_at + 1


def test_resume_refuses_a_finished_run(trained):
    result = run_cli("resume", str(trained[0]))
    assert result.returncode == 2 and "already succeeded" in result.stderr


def test_evaluation_ran_on_the_three_systems(trained):
    run_dir, result = trained
    record = read_run(run_dir)
    assert record["evaluated"] is True and record["evaluation"]["status"] == "succeeded"
    assert "verdict:" in result.stdout
    (folder,) = list((run_dir / "eval").iterdir())
    report = json.loads((folder / "report.json").read_text())
    assert report["n"] == 6 and set(report["task"]["systems"]) == {"base", "prompted", "tuned"}
    safety = report["safety"]["tuned"]
    assert report["general"]["n"] == 6 and safety["n_redteam"] + safety["n_benign"] + safety["degenerate"] == 12
    assert report["held_out_loss"]["tuned"]["loss"] < report["held_out_loss"]["base"]["loss"]
    assert report["drift"]["kl_base_to_tuned_per_token"] > 0
    assert "Verdict" in (folder / "report.md").read_text() and (folder / "eval.png").is_file()
    for key in ("eval_base_field_accuracy", "eval_prompted_field_accuracy", "eval_tuned_field_accuracy"):
        assert key in record["metrics"]


def test_eval_command_adds_a_new_result(trained):
    run_dir, _ = trained
    before = sorted((run_dir / "eval").iterdir())
    result = run_cli("eval", str(run_dir), "eval.limit=2", "eval.general=false", "eval.safety=false",
                     "eval.drift=false", "eval.max_new_tokens=4")
    assert result.returncode == 0, result.stderr[-3000:]
    after = sorted((run_dir / "eval").iterdir())
    assert len(after) == len(before) + 1 and before[0] in after
    assert json.loads((after[-1] / "report.json").read_text())["n"] == 2
    bad = run_cli("eval", str(run_dir), "train.lr=1")
    assert bad.returncode == 2 and "only eval.* settings" in bad.stderr


def test_two_processes_through_torchrun(tmp_path):
    """train.num_gpus=2 runs DDP through torchrun (gloo on CPU); only rank 0 writes the run directory."""
    result = run_cli("train", f"paths.runs={tmp_path}", *TINY, "train.num_gpus=2", "provider.device=cpu",
                     "train.max_steps=4", "train.save_steps=2", "eval=none")
    run_dir, _ = assert_two_process_run(tmp_path, result)
    assert not (run_dir / "child_result.json").exists()


def test_the_console_shows_ftorch_s_lines_and_library_noise_goes_to_train_log(trained):
    """Into a pipe: no library warnings or loading bars on the console, a plain progress line per tenth of the
    run instead of a bar refresh per step; the warnings are kept in train.log."""
    run_dir, result = trained
    console = result.stdout + result.stderr
    for noise in ("FutureWarning", "UserWarning", "warnings.warn", "Loading weights", "Writing model shards",
                  "it/s]", "[transformers]"):
        assert noise not in console, noise
    lines = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("step ")]
    done, total = lines[-1].split("/")
    assert 1 <= len(lines) <= 11 and done == total
    assert "py.warnings" in (run_dir / "train.log").read_text()


@pytest.mark.parametrize("sweep", [False, True], ids=["one run", "two trials"])
def test_each_config_is_validated_and_its_data_checked_once(tmp_path, monkeypatch, sweep):
    """The checks before the launch are the checks of the run: Hydra's run of the task does not repeat them."""
    from ftorch.cli import main
    from ftorch.run import lifecycle

    calls = {"load": 0, "check_data": 0}

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(lifecycle, "load", counted("load", lifecycle.load))
    monkeypatch.setattr(lifecycle, "check_data", counted("check_data", lifecycle.check_data))
    lrs = ["train.lr=1e-3,2e-3"] if sweep else []
    code = main(["train", *(["-m"] if sweep else []), f"paths.runs={tmp_path}", *TINY, "train.max_steps=1", "eval=none",
                 *lrs])
    assert code == 0
    trials = 2 if sweep else 1
    assert len(run_dirs(tmp_path)) == trials
    assert calls == {"load": trials, "check_data": trials}
