"""Plots a person would rather see than read."""

from __future__ import annotations

from pathlib import Path

from ..safe_io import save_figure


def read_metrics(path: Path) -> list[dict]:
    from .metrics_log import read

    return read(path)


def loss_plot(metrics: Path, out: Path, title: str) -> Path | None:
    rows = read_metrics(metrics)
    train = [(r["step"], r["loss"]) for r in rows if r.get("kind", "train") == "train" and "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(*zip(*train), label="train loss", linewidth=1.4)
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out)  # atomically, never through a symlink planted at `out`
    plt.close(fig)
    return out
