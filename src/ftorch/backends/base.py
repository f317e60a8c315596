"""The one interface every provider implements. No base class: shared code lives in plain functions."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from ..config.schema import RunConfig
    from ..data.report import DataReport
    from ..run.rundir import RunDir


# True while `ftorch resume` plans a run again (backends/__init__.make_plan): a refusal that is about starting new
# work (a provider that takes no new jobs) does not apply to a job that already exists.
RESUMING: ContextVar[bool] = ContextVar("ftorch_resuming", default=False)


@dataclass(frozen=True)
class Plan:
    """What a backend would do, decided before anything is spent; saved as plan.json."""

    provider: str
    config: RunConfig
    inputs: dict[str, Any]  # the exact backend input (trainer kwargs, job body, generated config)
    estimates: dict[str, Any] = field(default_factory=dict)  # steps, tokens, cost, memory
    notes: list[str] = field(default_factory=list)  # choices made and why
    ignored: list[str] = field(default_factory=list)  # settings this provider does not use (all at their defaults)
    data: DataReport | None = field(default=None, compare=False, repr=False)  # the checked examples, not saved

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "inputs": self.inputs, "estimates": self.estimates, "notes": self.notes,
                "ignored": self.ignored}


@dataclass
class Result:
    status: str  # succeeded | failed | interrupted
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # more fields for run.json


class EvalModels(NamedTuple):
    """What an evaluation of a run talks to (Backend.eval_models)."""

    generator: Any  # answers as base, prompted and tuned (eval/local.py's LocalModel, eval/openai_chat.py's OpenAIChat)
    local: Any  # the local model, for what needs weights (likelihoods), or None
    price: dict[str, Any] | None  # the price-table row its calls are billed at, or None when they are free


# the conversations an evaluation would send, per system ("base", "prompted", "tuned"): built only when asked
EvalCalls = Callable[[], dict[str, list[list[dict[str, Any]]]]]


class Backend(Protocol):
    name: str
    # where a run's weights end up: "adapter" = a LoRA adapter in RUN/adapter (export and serve take it);
    # "hosted" = they stay with the provider, reached by the model id run.json records (fine_tuned_model)
    weights: Literal["adapter", "hosted"]
    # settings this provider has no use for -> why (and what to set instead); `section.*` = every key in it.
    # Setting one away from its default is a config error (backends/settings.py): mapped or refused.
    unused_settings: dict[str, str]

    def plan(self, cfg: RunConfig, data: DataReport) -> Plan:
        """Pure and fast: no GPU, no network, no heavy imports. Raises ConfigError for impossible settings."""

    def preflight(self, cfg: RunConfig) -> None:
        """Cheap local checks before a run directory is made (credentials present, extras installed)."""

    def run(self, plan: Plan, run: RunDir) -> Result:
        """Do the work, recording checkpoints and remote ids in the run dir as soon as they exist."""

    def resume(self, plan: Plan, run: RunDir) -> Result:
        """Continue the run recorded in `run` (latest checkpoint, or the remote job); never start a second paid job."""

    def cancel(self, run: RunDir, cfg: RunConfig) -> str:
        """`ftorch cancel RUN_DIR`: stop the run's remote job and return its new status; a provider that trains
        here has none (its runs stop with Ctrl-C) and says so with a ConfigError."""

    def eval_models(self, run: RunDir, cfg: RunConfig) -> EvalModels:
        """What `ftorch eval` (and the evaluation after training) scores for this run: the trained model and
        its base, loaded here or reached through the provider's API. ConfigError when the run has none."""

    def check_eval_budget(self, run: RunDir, cfg: RunConfig, calls: EvalCalls) -> None:
        """Refuse, with a ConfigError, an evaluation that would cost more than the run's budget (what training
        spent counts); nothing to check where the evaluation runs on this machine."""


def no_remote_job(provider: str, run: RunDir) -> str:
    """cancel() of a provider that trains on this machine."""
    from ..errors import ConfigError, Problem

    raise ConfigError(Problem(str(run.path), f"provider={provider} trains on this machine: there is no remote job "
                              "to cancel", "stop a local run with Ctrl-C (it can be resumed with ftorch resume)"))
