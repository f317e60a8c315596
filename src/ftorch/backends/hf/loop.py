"""The one local training loop, shared by provider=peft (SFT and the preference methods) and the Unsloth child:
check the LoRA targets while the trainer is built, train (or, after a kill while the adapter was being saved,
restore the finished state without training further), publish the adapter, collect the final metrics. Crash
consistency depends on this sequence, so it is written once; what a method builds, and how it saves and checks its
adapter, stays with the method (the `build` and `publish` it passes). Heavy imports stay in the callers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ... import threads
from ...run.metrics_log import final_metrics
from . import callbacks, checkpoints, loading

if TYPE_CHECKING:
    from ...run.rundir import RunDir


@dataclass
class Trained:
    """What the loop leaves for the method to report: the trainer's numeric figures and metrics.jsonl's final
    ones, the parameter counts, and the publication's reload check (None on ranks other than 0)."""

    trainer: Any
    metrics: dict[str, Any]
    trainable: int
    total: int
    reload_check: dict[str, Any] | None


def train_and_publish(run: RunDir, resume_from: str | None, build: Callable[[], Any],
                      publish: Callable[[Any], dict[str, Any] | None], *, model: Any = None,
                      targets: list[str] | None = None, prepare: Callable[[Any], None] | None = None,
                      progress: bool = True) -> Trained:
    """Build the trainer with `build()` (PEFT's target-module error rewritten when `model` and `targets` are
    given), `prepare(trainer)` it, train or restore, `publish(trainer)` the adapter (returning its reload check),
    then add the final metrics. `progress=False` leaves the trainer's own progress display alone."""
    if targets is not None:
        with loading.lora_targets_checked(model, targets):
            trainer = build()
    else:
        trainer = build()
    if progress:
        callbacks.quiet_progress(trainer)
    if prepare is not None:
        prepare(trainer)
    trainable, total = trainer.model.get_nb_trainable_parameters()
    share = f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%)"
    run.append_log(share)
    run.append_log(threads.describe_torch())
    if trainer.is_world_process_zero():
        print(share, flush=True)
    if checkpoints.training_finished(resume_from):  # killed while the adapter was saved: save it, train no further
        checkpoints.restore_finished(trainer, resume_from, run)
        metrics: dict[str, Any] = {}
    else:
        output = trainer.train(resume_from_checkpoint=resume_from)
        metrics = {k: v for k, v in output.metrics.items() if isinstance(v, (int, float))}
    check = publish(trainer)
    metrics.update(final_metrics(trainer.state.log_history, trainer.state.global_step))
    return Trained(trainer, metrics, trainable, total, check)
