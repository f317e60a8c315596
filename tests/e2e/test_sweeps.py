"""Sweeps on the tiny model: a grid from a sweep config, Optuna with an interrupted-then-resumed study,
a failing trial that does not stop the sweep, the leaderboard, and best.yaml run again."""

import json
import signal
import subprocess
import sys
import time
from importlib.util import find_spec

import pytest
import yaml

from conftest import ROOT, TINY, read_run, run_cli, run_dirs

pytestmark = pytest.mark.slow
QUICK = [*TINY, "train.max_steps=2", "train.save_steps=100", "eval=none"]


def sweep_dir_of(runs):
    (folder,) = list((runs / "quickstart-tiny" / "sweeps").iterdir())
    return folder


def test_grid_sweep_config_leaderboard_and_best_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "220")  # rich tables unfolded
    runs = tmp_path / "runs"
    result = run_cli("train", "-m", f"paths.runs={runs}", "sweep=lr_rank", *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sweep: 4 trials checked" in result.stdout and "leaderboard:" in result.stdout
    folder = sweep_dir_of(runs)
    trials = run_dirs(folder)
    assert len(trials) == 4 and all(read_run(t)["objective"][0]["name"] == "final_loss" for t in trials)
    report = run_cli("sweep", "report", str(folder))
    assert report.returncode == 0, report.stderr[-3000:]
    for name in ("leaderboard.csv", "leaderboard.md", "sweep.png", "best.yaml"):
        assert (folder / name).is_file()
    lines = (folder / "leaderboard.csv").read_text().splitlines()
    assert lines[0].startswith("rank,trial,train.lora.r,train.lr,final_loss") and len(lines) == 5
    losses = [float(line.split(",")[4]) for line in lines[1:]]
    assert losses == sorted(losses)  # a loss is minimised: best first
    best = yaml.safe_load((folder / "best.yaml").read_text())
    winner = folder / lines[1].split(",")[1]
    assert best["train"] == yaml.safe_load((winner / "config.yaml").read_text())["train"]
    again = run_cli("train", f"recipe={folder / 'best.yaml'}", f"paths.runs={tmp_path / 'again'}")
    assert again.returncode == 0, again.stderr[-3000:]
    (rerun,) = run_dirs(tmp_path / "again")
    assert yaml.safe_load((rerun / "config.yaml").read_text())["train"] == best["train"]
    listing = run_cli("runs", "ls", str(runs))
    assert listing.returncode == 0 and "sweep: 4/4 succeeded" in listing.stdout


def test_a_failing_trial_does_not_stop_the_sweep(tmp_path):
    result = run_cli("train", "-m", f"paths.runs={tmp_path}", *QUICK,
                     "train.lora.target_modules=[q_proj],[no_such_module]")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "train.lora.target_modules: no module of this model matches ['no_such_module']" in result.stderr
    records = [read_run(d) for d in run_dirs(tmp_path)]
    assert sorted(r["status"] for r in records) == ["failed", "succeeded"]
    assert any("q_proj" in (r["error"] or "") for r in records)  # the hint lists the real layers


def test_optuna_sweep_resumes_where_it_stopped(tmp_path):
    args = [sys.executable, "-m", "ftorch", "train", f"paths.runs={tmp_path}", "sweep=optuna",
            "hydra.sweeper.n_trials=3", *QUICK]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        done = [d for d in run_dirs(tmp_path) if read_run(d)["status"] == "succeeded"]
        if done:
            break
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    folder = sweep_dir_of(tmp_path)
    first = {d.name: read_run(d)["started"] for d in run_dirs(folder) if read_run(d)["status"] == "succeeded"}
    assert first and (folder / "optuna.db").is_file()
    result = run_cli("sweep", "resume", str(folder))
    assert result.returncode == 0, result.stderr[-3000:]
    import optuna

    study = optuna.load_study(study_name="ftorch", storage=f"sqlite:///{folder / 'optuna.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    for name, started in first.items():  # finished trials were not run again
        assert read_run(folder / name)["started"] == started
    results = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    assert results["objectives"][0]["name"] == "final_loss" and results["objectives"][0]["direction"] == "minimize"
    assert json.loads((folder / "trial_0" / "run.json").read_text())["objective"][0]["value"] is not None


RAY = pytest.mark.skipif(find_spec("ray") is None or find_spec("hydra_plugins.hydra_ray_launcher") is None,
                         reason="hydra-ray-launcher is not installed (not in the dev extras: it pins cloudpickle<3)")


@pytest.mark.parametrize("launcher,extra,processes", [
    ("submitit_local", [], 2), ("joblib", [], 2),
    pytest.param("ray", ["+hydra.launcher.ray.init.num_cpus=2"], 1, marks=RAY)])  # a Ray worker runs both in turn
def test_the_same_sweep_through_another_launcher(tmp_path, launcher, extra, processes):
    """One config key moves the trials into separate processes; the report still sees every trial."""
    result = run_cli("train", "-m", f"paths.runs={tmp_path}", f"launcher={launcher}", *extra, *QUICK,
                     "train.lr=1e-3,2e-3")
    assert result.returncode == 0, result.stderr[-3000:]
    records = [read_run(d) for d in run_dirs(tmp_path)]
    assert [r["status"] for r in records] == ["succeeded", "succeeded"]
    assert len({r["pid"] for r in records}) == processes
    assert result.stdout.count("succeeded") == 2


def _slurm_up() -> bool:
    import shutil
    import subprocess

    if not shutil.which("sinfo"):
        return False
    states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.split()
    return any(state in ("idle", "mixed") for state in states)


@pytest.mark.skipif(not _slurm_up(), reason="no Slurm here (scripts/start_single_node_slurm.sh starts a one-node one)")
def test_sweep_as_slurm_jobs(tmp_path):
    result = run_cli("train", "-m", f"paths.runs={tmp_path}", "launcher=slurm", "hydra.launcher.partition=debug",
                     "hydra.launcher.gpus_per_node=0", "hydra.launcher.mem_gb=2", "hydra.launcher.cpus_per_task=1",
                     "hydra.launcher.timeout_min=10", *QUICK, "train.lr=1e-3,2e-3")
    assert result.returncode == 0, result.stderr[-3000:]
    folder = sweep_dir_of(tmp_path)
    assert [read_run(d)["status"] for d in run_dirs(folder)] == ["succeeded", "succeeded"]
    jobs = [p.name for p in (folder / ".submitit").iterdir()]
    assert any(name.isdigit() for name in jobs)  # submitted through sbatch: Slurm job ids
