"""Each provider's own settings (`provider.*`), one model per provider, told apart by `provider.name`."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import Field, PositiveFloat, model_validator

from .strict import Strict

# the settings a provider may leave to itself, and the value that says so (train.epochs=auto: the provider picks);
# a provider whose model does not list one in `picks` refuses that value
PICKED_BY_PROVIDER: dict[str, Any] = {"train.epochs": "auto", "train.batch_size": "auto", "train.seed": None}


class ProviderSettings(Strict):
    """What every provider's model says besides its own keys: the defaults it changes outside `provider.*` (one
    name per setting: OpenAI's epoch count is train.epochs, with OpenAI's default), and the settings it may pick."""

    defaults: ClassVar[dict[str, Any]] = {}  # dotted key -> this provider's default, where it differs from the schema
    picks: ClassVar[frozenset[str]] = frozenset()  # keys of PICKED_BY_PROVIDER this provider accepts


class PeftProvider(ProviderSettings):
    """transformers + PEFT through TRL's SFTTrainer, on this machine."""

    name: Literal["peft"] = "peft"
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where to train; auto picks cuda when present")


Auto = Literal["auto"]


class OpenAIProvider(ProviderSettings):
    """OpenAI's fine-tuning API (or Azure OpenAI's) through the official openai SDK."""

    # the job's n_epochs, batch_size and seed are train.epochs, train.batch_size and train.seed, and its method is
    # train.method (lora/sft = supervised, dpo = dpo); left to OpenAI unless a recipe sets them. Evaluation
    # reaches the models by id: nothing that needs their weights (drift, lm-eval) runs.
    defaults: ClassVar[dict[str, Any]] = {"train.epochs": "auto", "train.batch_size": "auto", "train.seed": None,
                                          "eval.drift": False}
    picks: ClassVar[frozenset[str]] = frozenset({"train.epochs", "train.batch_size", "train.seed"})

    name: Literal["openai"] = "openai"
    api: Literal["openai", "azure"] = "openai"
    base_url: str | None = Field(None, description="default: $OPENAI_BASE_URL, else the SDK's default")
    api_key_env: str = Field("OPENAI_API_KEY", description="the NAME of the variable holding the key; the key "
                             "itself never goes into a config (azure: AZURE_OPENAI_API_KEY)")
    azure_endpoint: str | None = Field(None, description="api=azure: https://RESOURCE.openai.azure.com")
    api_version: str | None = Field(None, description="api=azure: e.g. 2025-04-01-preview")
    organization: str | None = None
    project: str | None = None
    learning_rate_multiplier: PositiveFloat | Auto = "auto"
    beta: PositiveFloat | Auto = Field("auto", description="train.method=dpo only")
    suffix: Annotated[str, Field(max_length=64)] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    max_cost_usd: PositiveFloat | None = Field(None, description="refuse to start a job (or an evaluation) "
                                               "whose estimated cost is above this")
    prices: str = Field("conf/prices/openai.yaml", description="price table (a relative path is the project 's)")
    poll_interval_s: PositiveFloat = 5.0
    max_poll_interval_s: PositiveFloat = 60.0
    max_retries: Annotated[int, Field(ge=0)] = 2
    timeout_s: PositiveFloat = 600.0
    cancel_on_interrupt: bool = Field(False, description="Ctrl-C cancels the job instead of leaving it running")

    @model_validator(mode="after")
    def _azure_needs_endpoint(self) -> OpenAIProvider:
        if self.api == "azure" and not (self.azure_endpoint and self.api_version):
            raise ValueError("api=azure needs provider.azure_endpoint and provider.api_version")
        return self


class AxolotlProvider(ProviderSettings):
    """Axolotl, run as a child process in an environment of its own (it cannot share one with Hydra)."""

    name: Literal["axolotl"] = "axolotl"
    python: str | None = Field(None, description="python of an Axolotl environment; default: the one "
                               "`ftorch setup axolotl` creates in .venv-axolotl/")
    distributed: Literal["none", "deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero3", "fsdp"] = Field(
        "none", description="multi-GPU preset, used when train.num_gpus > 1")
    liger: bool = Field(False, description="Axolotl's Liger plugin (fused kernels; GPU)")
    axolotl: dict[str, Any] = Field(default_factory=dict, description="passthrough: any Axolotl key ftorch does "
                                    "not model, written as is into axolotl.yaml (`python` here = provider.python)")

    @model_validator(mode="before")
    @classmethod
    def _python_inside_passthrough(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("axolotl"), dict) and "python" in data["axolotl"]:
            passthrough = dict(data["axolotl"])
            data = {**data, "python": passthrough.pop("python"), "axolotl": passthrough}
        return data


class UnslothProvider(ProviderSettings):
    """Unsloth's single-GPU fast path: FastLanguageModel, its LoRA wrapper, TRL's SFT trainer."""

    # Unsloth's usual loading: 4-bit base weights on a GPU (train.quantization=none for 16-bit)
    defaults: ClassVar[dict[str, Any]] = {"train.quantization": "4bit"}

    name: Literal["unsloth"] = "unsloth"
    allow_cpu: bool = Field(False, description="let Unsloth fall back to the CPU (slow; for tests) instead of "
                            "refusing on a machine without a supported GPU")
    export_merged_16bit: bool = Field(False, description="also save merged 16-bit weights in merged/")
    export_gguf: str | None = Field(None, description="also export GGUF with this quantization, e.g. q4_k_m")


class TogetherProvider(ProviderSettings):
    """Together AI's fine-tuning API through the official together SDK (SFT or DPO, LoRA or full)."""

    # the job's n_epochs, batch_size, learning_rate, warmup_ratio, lr_scheduler, weight_decay, max_grad_norm,
    # random_seed, max_seq_length, packing and LoRA shape are train.*; train_on_inputs is the opposite of
    # train.assistant_only_loss; dpo_beta and rpo_alpha are train.preference.beta and sft_weight.
    # Evaluation: through Together's chat completions, or locally once the adapter is downloaded.
    defaults: ClassVar[dict[str, Any]] = {"eval.drift": False}
    picks: ClassVar[frozenset[str]] = frozenset({"train.batch_size"})  # auto = Together's "max"

    name: Literal["together"] = "together"
    model: str | None = Field(None, description="Together's id of the base model to fine-tune (see "
                              "/fine-tunes/models/supported); default: model.name. model.* stays the local copy "
                              "of the same base, used when the adapter is downloaded and evaluated here")
    base_url: str | None = Field(None, description="the API root, as the spec's server URL "
                                 "(https://api.together.ai/v1); default: $TOGETHER_BASE_URL, else that")
    api_key_env: str = Field("TOGETHER_API_KEY", description="the NAME of the variable holding the key; the "
                             "key itself never goes into a config")
    training_type: Literal["lora", "full"] = Field("lora", description="lora: train.lora.* as Together's "
                                                   "LoRATrainingType; full: full fine-tuning")
    suffix: Annotated[str, Field(max_length=20, pattern=r"^[A-Za-z0-9-]*$")] | None = Field(
        None, description="start of the job's suffix (the rest identifies the run, so a job is never created twice)")
    n_checkpoints: Annotated[int, Field(ge=1)] = 1
    n_evals: Annotated[int, Field(ge=0)] = Field(0, description="evaluations on the validation split during "
                                                 "training (needs one)")
    download_adapter: bool = Field(False, description="download the LoRA adapter into the run folder after the "
                                   "job, verify it against the local base (model.*), and evaluate it here: "
                                   "chat and export then work as for a local run")
    max_cost_usd: PositiveFloat | None = Field(None, description="refuse to create a job (or run an evaluation) "
                                               "whose estimated cost is above this (Together's own estimate)")
    prices: str = Field("conf/prices/together.yaml", description="serverless inference prices, for the cost of "
                        "an evaluation through the API")
    poll_interval_s: PositiveFloat = 5.0
    max_poll_interval_s: PositiveFloat = 60.0
    max_retries: Annotated[int, Field(ge=0)] = 2
    timeout_s: PositiveFloat = 600.0
    cancel_on_interrupt: bool = Field(False, description="Ctrl-C cancels the job instead of leaving it running")


P = TypeVar("P", PeftProvider, OpenAIProvider, AxolotlProvider, UnslothProvider, TogetherProvider)
Provider = Annotated[PeftProvider | OpenAIProvider | AxolotlProvider | UnslothProvider | TogetherProvider,
                     Field(discriminator="name")]


PROVIDER_MODELS: dict[str, type[ProviderSettings]] = {"peft": PeftProvider, "openai": OpenAIProvider,
                                            "axolotl": AxolotlProvider, "unsloth": UnslothProvider,
                                            "together": TogetherProvider}
PROVIDER_NAMES = tuple(PROVIDER_MODELS)
