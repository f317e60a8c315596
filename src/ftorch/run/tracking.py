"""Experiment tracking, written from the run directory when a run ends, so it works the same for every
provider: TensorBoard event files, or an MLflow run (params, per-step metrics, evaluation results, and the
config, report and plots as artifacts; the trials of a sweep under one parent run)."""

from __future__ import annotations

import json
import os
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ..config.schema import RunConfig
from ..errors import MissingExtra, Problem
from ..secrets import scrub, scrub_tree
from .plots import read_metrics
from .rundir import RunDir

PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow-skinny")}


def check_installed(cfg: RunConfig) -> None:
    """Before a run starts: the chosen tracker's package is there."""
    if cfg.tracking.backend == "none":
        return
    module, package = PACKAGES[cfg.tracking.backend]
    if find_spec(module) is None:
        raise MissingExtra(Problem(f"tracking={cfg.tracking.backend}", f"{package} is not installed",
                                   f"pip install {package}, or tracking=none"))


def record(run: RunDir, cfg: RunConfig, project_root: Path) -> dict[str, Any] | None:
    """Write the finished run to the tracker; returns what to note in run.json."""
    if cfg.tracking.backend == "tensorboard":
        return _tensorboard(run)
    if cfg.tracking.backend == "mlflow":
        return _mlflow(run, cfg, project_root)
    return None


def _scalars(run: RunDir) -> list[tuple[int, str, float]]:
    rows = []
    for row in read_metrics(run.metrics):
        for key in ("loss", "lr", "grad_norm", "tokens_per_s", "token_accuracy", "eval_loss"):
            if isinstance(row.get(key), (int, float)):
                rows.append((int(row["step"]), f"{row.get('kind', 'train')}/{key}", float(row[key])))
    return rows


def _final_numbers(run: RunDir) -> dict[str, float]:
    metrics = run.record().metrics
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _tensorboard(run: RunDir) -> dict[str, Any]:
    from torch.utils.tensorboard import SummaryWriter

    folder = run.path / "tensorboard"
    with SummaryWriter(log_dir=str(folder)) as writer:
        for step, name, value in _scalars(run):
            writer.add_scalar(name, value, step)
        for name, value in _final_numbers(run).items():
            writer.add_scalar(f"final/{name}", value, 0)
    return {"backend": "tensorboard", "logdir": str(folder)}


def _mlflow(run: RunDir, cfg: RunConfig, project_root: Path) -> dict[str, Any]:
    import mlflow

    uri = (cfg.tracking.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
           or f"sqlite:///{project_root / 'mlruns' / 'mlflow.db'}")
    store = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else project_root / "mlruns"
    store.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    record = run.record()
    name = scrub(cfg.tracking.experiment or record.recipe or "ftorch")
    if mlflow.get_experiment_by_name(name) is None:  # artifacts beside the store, not in the working directory
        mlflow.create_experiment(name, artifact_location=(store / "artifacts").as_uri())
    mlflow.set_experiment(name)
    tags = {k: scrub(v) for k, v in {"ftorch.run_dir": str(run.path), "ftorch.status": record.status,
                                      "ftorch.provider": record.provider or ""}.items()}
    parent = _sweep_parent(run)
    if parent:
        tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(run_name=run.path.name, tags=tags) as active:
        mlflow.log_params(_flat(scrub_tree(cfg.model_dump(mode="json"))))
        for step, name, value in _scalars(run):
            mlflow.log_metric(name.replace("/", "_"), value, step=step)
        mlflow.log_metrics({f"final_{k}": v for k, v in _final_numbers(run).items()})
        for name in ("config.yaml", "run.json", "plan.json", "loss.png", "metrics.jsonl"):
            if (run.path / name).is_file():
                mlflow.log_artifact(str(run.path / name))
        evaluation = record.evaluation.dir if record.evaluation else None
        if evaluation and Path(evaluation).is_dir():
            mlflow.log_artifacts(evaluation, artifact_path="eval")
        return {"backend": "mlflow", "uri": uri, "run_id": active.info.run_id, "parent_run_id": parent}


def _sweep_parent(run: RunDir) -> str | None:
    """The trials of a sweep share one parent run, made by the first trial that finishes."""
    if run.path.parent.parent.name != "sweeps":
        return None
    import mlflow

    sweep = str(run.path.parent)
    found = mlflow.search_runs(filter_string=f"tags.`ftorch.sweep_dir` = '{sweep}'", output_format="list")
    if found:
        return found[0].info.run_id
    with mlflow.start_run(run_name=f"sweep {run.path.parent.name}", tags={"ftorch.sweep_dir": sweep}) as parent:
        return parent.info.run_id


def _flat(tree: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(tree, dict):
        out: dict[str, str] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): json.dumps(tree) if isinstance(tree, (list, dict)) else str(tree)}
