"""tracking=tensorboard and tracking=mlflow, written from the run directory; a sweep is an MLflow parent run."""

import pytest

from conftest import TINY, read_run, run_cli, run_dirs

pytestmark = pytest.mark.slow
QUICK = [*TINY, "train.max_steps=3", "train.save_steps=100", "eval=none"]


def test_tensorboard_event_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run_cli("train", f"paths.runs={tmp_path}", "tracking=tensorboard", *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
    assert read_run(run_dir)["tracking"]["backend"] == "tensorboard"


def test_mlflow_runs_under_one_sweep_parent(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli("train", "-m", f"paths.runs={tmp_path / 'runs'}", "tracking=mlflow",
                     f"tracking.mlflow_uri={uri}", *QUICK, "train.lr=1e-3,2e-3")
    assert result.returncode == 0, result.stderr[-3000:]
    records = [read_run(d) for d in run_dirs(tmp_path / "runs")]
    parents = {r["tracking"]["parent_run_id"] for r in records}
    assert len(parents) == 1 and None not in parents
    client = mlflow.MlflowClient(tracking_uri=uri)
    for record in records:
        run = client.get_run(record["tracking"]["run_id"])
        assert run.data.params["train.lr"] in ("0.001", "0.002")
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2, 3]
        assert run.data.tags["mlflow.parentRunId"] in parents
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "run.json", "loss.png"} <= artifacts
