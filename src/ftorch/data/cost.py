"""What an OpenAI fine-tuning job would bill, before it is created."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ConfigError, Problem
from .tokens import openai_base_model

MIN_EXAMPLES = 10
TARGET_EPOCHS, MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES, MAX_EPOCHS = 3, 100, 25_000, 25


def auto_epochs(n_examples: int) -> int:
    """n_epochs='auto' as OpenAI's cookbook computes it."""
    if n_examples <= 0:
        return TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(1, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    families: dict[str, dict]
    source: Path

    @classmethod
    def load(cls, path: Path) -> PriceTable:
        if not path.is_file():
            raise ConfigError(Problem(str(path), "price table not found"))
        data = yaml.safe_load(path.read_text()) or {}
        return cls(str(data.get("as_of", "unknown")), data.get("families", {}), path)

    def family(self, model: str) -> tuple[str, dict] | None:
        base = openai_base_model(model)
        matches = [name for name in self.families if base == name or base.startswith(name + "-")]
        if not matches:
            return None
        best = max(matches, key=len)
        return best, self.families[best]


def price_table_path(configured: str | None = None) -> Path:
    """The price table a run uses: provider.prices (a relative path is the project folder's), by default the
    schema's conf/prices/openai.yaml. `ftorch data check --prices` takes a path as given instead."""
    from ..config.providers import OpenAIProvider

    path = Path(configured or OpenAIProvider.model_fields["prices"].default)
    if path.is_absolute():
        return path
    from ..config.compose import find_project

    return find_project().root / path


@dataclass(frozen=True)
class CostEstimate:
    model: str
    family: str | None
    examples: int
    tokens_per_epoch: int
    epochs: int
    epochs_auto: bool
    usd_per_1m: float | None
    as_of: str

    @property
    def billed_tokens(self) -> int:
        return self.tokens_per_epoch * self.epochs

    @property
    def usd(self) -> float | None:
        return None if self.usd_per_1m is None else self.billed_tokens / 1e6 * self.usd_per_1m

    def to_dict(self) -> dict:
        return {"model": self.model, "family": self.family, "examples": self.examples,
                "tokens_per_epoch": self.tokens_per_epoch, "epochs": self.epochs, "epochs_auto": self.epochs_auto,
                "billed_tokens": self.billed_tokens, "usd_per_1m": self.usd_per_1m, "usd": self.usd,
                "prices_as_of": self.as_of}


def estimate(model: str, examples: int, tokens_per_epoch: int, epochs: int | str, prices: PriceTable) -> CostEstimate:
    found = prices.family(model)
    chosen = auto_epochs(examples) if epochs == "auto" else int(epochs)
    return CostEstimate(model, found[0] if found else None, examples, tokens_per_epoch, chosen, epochs == "auto",
                        found[1]["train_usd_per_1m"] if found else None, prices.as_of)


def check_budget(limit: float | None, usd: float | None, what: str, model: str) -> None:
    """provider.max_cost_usd against an estimate: a training job (plan) or an evaluation's calls (ftorch eval)."""
    if limit is None:
        return
    if usd is None:
        raise ConfigError(Problem("provider.max_cost_usd", f"cannot check the budget: no price known for {model}",
                                  "add the model to the price table (provider.prices) or unset max_cost_usd"))
    if usd > limit:
        raise ConfigError(Problem("provider.max_cost_usd", f"{what} is estimated at ${usd:.2f}, above the limit "
                                  f"of ${limit:.2f}", "raise provider.max_cost_usd, use fewer examples or epochs"))
