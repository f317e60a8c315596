"""The transformers Trainer callbacks every local backend adds: one metrics.jsonl row per log event (with tokens/s),
checkpoint steps in run.json, and a progress display that suits a terminal or a log file."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...run.rundir import RunDir


def metrics_callback(run: RunDir):
    """A TrainerCallback writing one metrics.jsonl row per log event, with tokens/s between logs."""
    from transformers import TrainerCallback

    from ...run import metrics_log

    class MetricsRecorder(TrainerCallback):
        def __init__(self) -> None:
            self.last = (time.perf_counter(), None)

        def on_log(self, args, state, control, logs=None, **kwargs) -> None:
            if not state.is_world_process_zero:
                return
            logs = {**(logs or {}), "epoch": round(state.epoch or 0.0, 4)}
            extra: dict[str, Any] = {"time": time.time()}
            tokens = state.num_input_tokens_seen or None
            if "loss" in logs and tokens is not None:
                then, then_tokens = self.last
                moment = time.perf_counter()
                extra["tokens"] = tokens
                if then_tokens is not None and moment > then:
                    extra["tokens_per_s"] = round((tokens - then_tokens) / (moment - then), 1)
                self.last = (moment, tokens)
            row = metrics_log.from_trainer_logs(state.global_step, logs, **extra)
            if row is not None:
                metrics_log.append(run.metrics, row)

        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            run.append_log(f"checkpoint saved at step {state.global_step}")
            run.update(last_checkpoint_step=state.global_step)

    return MetricsRecorder()


def quiet_progress(trainer, stream=None) -> None:
    """On a terminal, the trainer's progress bar with loss and lr on it instead of a dict printed every step (the
    numbers are in metrics.jsonl). Into a file or a pipe (CI, nohup, a launcher's log), where every bar refresh
    would be a line: one plain line every tenth of the run instead."""
    from transformers.trainer_callback import ProgressCallback, TrainerCallback

    stream = stream or sys.stderr

    class BarWithLoss(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{logs['loss']:.4g}", lr=f"{logs.get('learning_rate', 0):.3g}")

    class LinePerTenth(TrainerCallback):
        def __init__(self) -> None:
            self.started, self.loss = time.monotonic(), None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = logs["loss"]

        def on_step_end(self, args, state, control, **kwargs):
            every = max(1, state.max_steps // 10)
            if state.is_world_process_zero and (state.global_step % every == 0 or state.global_step == state.max_steps):
                loss = f"  loss {self.loss:.4g}" if self.loss is not None else ""
                elapsed = time.monotonic() - self.started
                print(f"step {state.global_step}/{state.max_steps}{loss}  {elapsed:.0f}s", file=stream, flush=True)

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(BarWithLoss() if stream.isatty() else LinePerTenth())
