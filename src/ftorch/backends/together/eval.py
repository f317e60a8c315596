"""Evaluation of a provider=together run: with its adapter downloaded, here like a local run (backends/
local_eval.py); otherwise through Together's chat completions, the base model id for base and prompted and the
tuned model's id for tuned, with the cost guard (provider.max_cost_usd) over the calls at the price table's rates.
TogetherBackend's eval_models and check_eval_budget."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError, Problem
from .. import local_eval
from ..base import EvalCalls, EvalModels

if TYPE_CHECKING:
    from ...config.providers import TogetherProvider
    from ...config.schema import RunConfig
    from ...run.rundir import RunDir


def _provider(cfg: RunConfig) -> TogetherProvider:
    from ...config.providers import TogetherProvider

    return cfg.provider_as(TogetherProvider)


def prices_path(cfg: RunConfig) -> Path:
    from ...data.cost import price_table_path

    return price_table_path(_provider(cfg).prices)


def price(cfg: RunConfig) -> dict[str, Any] | None:
    """The base model's serverless price row (a LoRA model is billed at its base's rate), or None."""
    import yaml

    families = (yaml.safe_load(prices_path(cfg).read_text()) or {}).get("families", {})
    return families.get(_provider(cfg).model or cfg.model.name)


def has_adapter(run: RunDir) -> bool:
    return (run.adapter / "adapter_config.json").is_file()


def eval_models(run: RunDir, cfg: RunConfig) -> EvalModels:
    if has_adapter(run):
        return local_eval.eval_models(run, cfg)
    from ...data.tokens import counter_for
    from ...eval.openai_chat import OpenAIChat
    from ...together_sdk import api_errors, make_client

    refuse_hosted_weights(cfg)  # drift, lm-eval: only with the adapter here
    tuned = run.read().get("fine_tuned_model")
    if not tuned:
        raise ConfigError(Problem(str(run.path), "no fine-tuned model in run.json and no adapter to evaluate",
                                  "evaluate a run whose job completed, or `ftorch pull RUN` its adapter"))
    base = _provider(cfg).model or cfg.model.name
    chat = OpenAIChat(ChatClient(make_client(_provider(cfg))), base, tuned, counter_for(None), cfg.eval.seed,
                      errors=api_errors)
    return EvalModels(chat, None, price(cfg))


def refuse_hosted_weights(cfg: RunConfig) -> None:
    """Without the adapter here the evaluation goes through the API: what needs the weights (drift, lm-eval) is
    refused, with provider.download_adapter=true named as the way to keep it."""
    from ..settings import refuse_without_weights

    try:
        refuse_without_weights(cfg, "together")
    except ConfigError as exc:
        raise ConfigError([*exc.problems, Problem(
            "provider.download_adapter", "false: the tuned model stays with Together and is evaluated through "
            "its chat completions", "set provider.download_adapter=true to evaluate the adapter here, with drift "
            "and lm-eval")]) from None


class ChatClient:
    """Together's client behind the chat-completions call OpenAIChat makes (max_completion_tokens is max_tokens)."""

    def __init__(self, client):
        self.client = client
        self.chat = self
        self.completions = self

    def create(self, *, max_completion_tokens: int, **kwargs: Any):
        return self.client.chat.completions.create(max_tokens=max_completion_tokens, **kwargs)


def check_eval_budget(run: RunDir, cfg: RunConfig, calls: EvalCalls) -> None:
    """Free here with the adapter; through the API, prompt tokens plus every reply at its maximum length at the
    price table's rate, refused above provider.max_cost_usd counting Together's estimate for the training."""
    from ...data.cost import check_budget
    from ...data.tokens import counter_for

    limit = _provider(cfg).max_cost_usd
    if limit is None or has_adapter(run):
        return
    row = price(cfg)
    if row is None:
        check_budget(limit, None, "the evaluation", _provider(cfg).model or cfg.model.name)
        return
    counter = counter_for(None)
    usd = 0.0
    for conversations in calls().values():
        prompt = sum(counter.count_messages(c) for c in conversations)
        usd += (prompt * row["input_usd_per_1m"] + len(conversations) * cfg.eval.max_new_tokens
                * row["output_usd_per_1m"]) / 1e6
    spent = float((run.read().get("price_estimate") or {}).get("estimated_total_price") or 0.0)
    check_budget(limit, spent + usd, f"training (${spent:.2f}) plus this evaluation", cfg.model.name)
