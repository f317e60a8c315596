"""Evaluation of a provider=openai run: chat completions with the base and the fine-tuned model ids, and the
cost guard (provider.max_cost_usd) over training plus the evaluation's calls. OpenAIBackend's eval_models and
check_eval_budget."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import ConfigError, Problem
from ..base import EvalCalls, EvalModels

if TYPE_CHECKING:
    from ...config.providers import OpenAIProvider
    from ...config.schema import RunConfig
    from ...run.rundir import RunDir


def _provider(cfg: RunConfig) -> OpenAIProvider:
    from ...config.providers import OpenAIProvider

    if not isinstance(cfg.provider, OpenAIProvider):
        raise TypeError(f"provider={cfg.provider.name} is not evaluated through OpenAI")
    return cfg.provider


def _pricing(cfg: RunConfig) -> tuple[dict[str, Any] | None, Any]:
    """The model's price-table row (None when it is not in the table) and its token counter."""
    from ...data.cost import PriceTable, price_table_path
    from ...data.tokens import counter_for

    family = PriceTable.load(price_table_path(_provider(cfg).prices)).family(cfg.model.name)
    price = family[1] if family else None
    return price, counter_for(cfg.model.name, price)


def eval_models(run: RunDir, cfg: RunConfig) -> EvalModels:
    """Chat completions for the base model id (base, prompted) and the run's fine-tuned one (tuned)."""
    from ...eval.openai_chat import OpenAIChat
    from ...openai_sdk import make_client

    tuned = run.read().get("fine_tuned_model")
    if not tuned:
        raise ConfigError(Problem(str(run.path), "no fine-tuned model id in run.json to evaluate",
                                  "evaluate a run whose job succeeded"))
    price, counter = _pricing(cfg)
    return EvalModels(OpenAIChat(make_client(_provider(cfg)), cfg.model.name, tuned, counter, cfg.eval.seed), None,
                      price)


def check_eval_budget(run: RunDir, cfg: RunConfig, calls: EvalCalls) -> None:
    """Estimate what the evaluation's calls cost (prompt tokens by the tokenizer, every reply at its maximum
    length) and refuse above provider.max_cost_usd, counting what training already cost."""
    from ...data.cost import check_budget

    limit = _provider(cfg).max_cost_usd
    if limit is None:
        return
    price, counter = _pricing(cfg)
    if price is None:
        check_budget(limit, None, "the evaluation", cfg.model.name)  # no price known: refused
        return
    usd = 0.0
    for name, conversations in calls().items():
        prefix = "tuned_" if name == "tuned" else ""
        prompt = sum(counter.count_messages(c) for c in conversations)
        usd += (prompt * price[f"{prefix}input_usd_per_1m"]
                + len(conversations) * cfg.eval.max_new_tokens * price[f"{prefix}output_usd_per_1m"]) / 1e6
    spent = ((run.read().get("metrics") or {}).get("trained_tokens") or 0) / 1e6 * price["train_usd_per_1m"]
    check_budget(limit, spent + usd, f"training (${spent:.2f}) plus this evaluation",
                  cfg.model.name)
