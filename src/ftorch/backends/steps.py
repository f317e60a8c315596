"""How many optimizer steps a run takes: one estimate for every local backend (shown by plan, used for
schedules and progress)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config.schema import TrainConfig


def step_estimate(train: TrainConfig, examples: int) -> dict[str, int]:
    """steps_per_epoch and total_steps as transformers' Trainer counts them: under DDP each of num_gpus ranks
    sees ceil(examples / num_gpus) examples (the distributed sampler pads), in batches of batch_size, and
    takes a step every grad_accum batches."""
    per_rank = math.ceil(examples / train.num_gpus)
    batches = math.ceil(per_rank / train.fixed_batch_size)
    steps_per_epoch = max(1, math.ceil(batches / train.grad_accum))
    total = train.max_steps or math.ceil(steps_per_epoch * train.fixed_epochs)
    return {"train_examples": examples, "steps_per_epoch": steps_per_epoch, "total_steps": total}
