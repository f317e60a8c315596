"""Evaluation of a run trained on this machine (provider=peft, unsloth, axolotl: each leaves a PEFT adapter in
RUN/adapter): the one implementation of Backend.eval_models and check_eval_budget those backends share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError, Problem
from .base import EvalCalls, EvalModels

if TYPE_CHECKING:
    from ..config.schema import RunConfig
    from ..run.rundir import RunDir


def eval_models(run: RunDir, cfg: RunConfig) -> EvalModels:
    """The base model with the run's adapter, loaded here (transformers + PEFT, as a user would load it) when first
    needed: an evaluation whose answers all come from the answer cache never loads it (eval/lazy_local.py); on a
    CUDA GPU with vLLM installed, generation goes through vLLM's engine (eval/vllm_generator.py)."""
    from ..eval.lazy_local import LazyLocalModel
    from ..eval.vllm_generator import choose_generator
    from ..models import model_path

    if not (run.adapter / "adapter_config.json").is_file():
        raise ConfigError(Problem(str(run.adapter), "no adapter in this run to evaluate",
                                  "evaluate a run whose training succeeded"))
    local = LazyLocalModel(model_path(cfg.model), run.adapter)
    return EvalModels(choose_generator(local, model_path(cfg.model), run.adapter), local, None)


def check_eval_budget(run: RunDir, cfg: RunConfig, calls: EvalCalls) -> None:
    """Nothing to refuse: an evaluation on this machine is not billed (and `calls` is never built)."""
