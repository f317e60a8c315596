"""One step estimate for every local provider, DDP included (it used to ignore num_gpus on provider=peft)."""

import pytest

from ftorch.backends.steps import step_estimate
from ftorch.config.compose import find_project
from ftorch.config.schema import TrainConfig
from ftorch.run.lifecycle import prepare

PROJECT = find_project()


@pytest.mark.parametrize("recipe", ["quickstart-tiny", "axolotl-quickstart"])
def test_two_gpus_halve_the_steps(recipe):
    one = prepare(PROJECT, [f"recipe={recipe}", "train.epochs=2", "train.batch_size=8"]).plan.estimates
    two = prepare(PROJECT, [f"recipe={recipe}", "train.epochs=2", "train.batch_size=8",
                            "train.num_gpus=2"]).plan.estimates
    assert one["steps_per_epoch"] == 2 * two["steps_per_epoch"] and one["total_steps"] == 2 * two["total_steps"]


@pytest.mark.parametrize("examples, gpus, batch, accum, per_epoch", [
    (240, 1, 8, 1, 30), (240, 2, 8, 1, 15), (241, 2, 8, 1, 16),  # the sampler pads 241 to 121 per rank
    (240, 1, 8, 4, 8), (5, 4, 8, 1, 1), (1, 1, 8, 1, 1)])
def test_counts_as_the_trainer_does(examples, gpus, batch, accum, per_epoch):
    train = TrainConfig(num_gpus=gpus, batch_size=batch, grad_accum=accum, epochs=1.5)
    estimate = step_estimate(train, examples)
    assert estimate["steps_per_epoch"] == per_epoch and estimate["total_steps"] == -(-per_epoch * 3 // 2)
    assert step_estimate(train.model_copy(update={"max_steps": 7}), examples)["total_steps"] == 7
