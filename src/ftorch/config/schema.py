"""The one typed schema of a composed ftorch config, and the only home of defaults.

Config files in conf/ and recipes/ hold only what differs from here. Every model
forbids unknown keys, so a typo is an error rather than a silently ignored setting.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal, TypeGuard, get_args

from pydantic import BaseModel, Field, PositiveFloat, PositiveInt, model_validator
from pydantic.json_schema import JsonDict

from ..data.lines import DEFAULT_MAX_LINE_BYTES
from ..errors import ConfigError, Problem
from .providers import (
    PICKED_BY_PROVIDER,
    P,
    Provider,
)
from .strict import Strict


class TinyModel(Strict):
    """Shape of a small Llama built locally (no hub) and cached."""

    hidden_size: PositiveInt = 128
    num_layers: PositiveInt = 2
    num_heads: PositiveInt = 4
    intermediate_size: PositiveInt = 344
    vocab_size: Annotated[int, Field(ge=300)] = 1024
    max_position_embeddings: PositiveInt = 512
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> TinyModel:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})")
        return self


class ModelConfig(Strict):
    name: str = Field(..., description="a hub id, a local directory, or a label when `tiny` is set")
    tiny: TinyModel | None = Field(None, description="build this small Llama locally instead of loading `name`")
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False
    adapter: str | None = Field(None, description="start from the LoRA adapter of an earlier run: its run "
                                "directory (RUN_DIR/adapter is used) or an adapter folder; provider=peft")


class DataConfig(Strict):
    format: Literal["chat", "preference"] = Field("chat", description="preference = OpenAI's DPO pairs")
    train: str = Field(..., description="chat JSONL: one {\"messages\": [...]} object per line")
    validation: str | None = None
    test: str | None = None
    max_line_bytes: PositiveInt = Field(DEFAULT_MAX_LINE_BYTES, description="a data line longer than this many "
                                        "bytes is refused unread (naming file:line), before any parse or "
                                        "tokenisation: memory stays bounded whatever the file holds")
    train_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        1.0, description="train on this share of data.train, a seeded subset (data.fraction_seed) that is nested: "
        "the 0.25 subset lies inside the 0.5 one (`ftorch curve` sweeps it)")
    fraction_seed: int = Field(0, description="the order data.train_fraction takes examples in")


class LoraSettings(Strict):
    r: PositiveInt = 16
    alpha: PositiveInt = 32
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    modules_to_save: list[str] = Field(default_factory=list, description="modules trained in full beside the "
                                       "adapter (e.g. embed_tokens, lm_head) and saved with it")


PREFERENCE_METHODS = ("dpo", "orpo", "kto", "simpo")


class PreferenceSettings(Strict):
    """train.method=dpo|orpo|kto|simpo: the preference objective's own settings (TRL's trainers, with LoRA)."""

    beta: PositiveFloat = Field(0.1, description="strength of the pull towards the reference (dpo/kto); the "
                                "reward scale (simpo); the odds-ratio weight lambda (orpo)")
    loss_type: Literal["sigmoid", "hinge", "ipo", "robust", "sigmoid_norm"] = Field(
        "sigmoid", description="method=dpo only: sigmoid (DPO), hinge (SLiC), ipo, robust (label noise), "
        "sigmoid_norm (length-normalised)")
    label_smoothing: Annotated[float, Field(ge=0.0, lt=0.5)] = Field(0.0, description="loss_type=robust: the "
                                                                     "assumed share of flipped labels")
    reference: Literal["adapter_disabled", "precomputed"] = Field(
        "adapter_disabled", description="dpo/kto reference model: adapter_disabled = the same weights with the "
        "LoRA switched off (no second copy; from model.adapter, a frozen copy of that adapter); precomputed = "
        "reference log-probs computed once before training")
    simpo_gamma: Annotated[float, Field(ge=0.0)] = Field(0.5, description="method=simpo: target reward margin")
    sft_weight: Annotated[float, Field(ge=0.0)] = Field(0.0, description="method=dpo: add the supervised loss on "
                                                        "the preferred answers with this weight (RPO; TRL's "
                                                        "loss_type [.., sft]): keeps the answers' format while "
                                                        "the preference moves away from the rejected ones")
    max_completion_length: PositiveInt | None = Field(None, description="orpo/simpo: cut answers to this many "
                                                      "tokens (dpo/kto: train.max_length bounds prompt + answer)")


Auto = Literal["auto"]


class TrainConfig(Strict):
    method: Literal["lora", "sft", "dpo", "orpo", "kto", "simpo"] = Field(
        "lora", description="lora (= sft): supervised LoRA on chat data; dpo, orpo, kto, simpo: preference "
        "training with LoRA on preference data (data.format=preference). provider=openai: lora/sft = its "
        "supervised method, dpo = its DPO")
    quantization: Literal["none", "4bit"] = Field("none", description="4bit: a 4-bit (NF4) base model, QLoRA; "
                                                  "provider=unsloth defaults to 4bit")
    lr: PositiveFloat = 2.0e-4
    epochs: PositiveFloat | Auto = Field(3.0, description="auto: the provider picks (provider=openai only, its "
                                         "default there); a whole number with provider=openai")
    max_steps: PositiveInt | None = Field(None, description="stop after this many optimizer steps (overrides epochs)")
    batch_size: PositiveInt | Auto = Field(8, description="auto: the provider picks (provider=openai only, its "
                                           "default there)")
    grad_accum: PositiveInt = 1
    num_gpus: PositiveInt = Field(1, description="GPUs for one run (provider=axolotl launches through accelerate)")
    max_length: PositiveInt = 1024
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.03
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    optimizer: Literal["adamw_torch", "adamw_torch_fused", "sgd", "adafactor"] = "adamw_torch"
    max_grad_norm: PositiveFloat = 1.0
    seed: int | None = Field(42, description="null: the provider picks (provider=openai only, its default there)")
    packing: bool | Literal["auto"] = Field("auto", description="padding-free packing; auto: on for CUDA with a "
                                            "varlen attention kernel (flash-attn), off on CPU (provider=peft)")
    gradient_checkpointing: bool | Literal["auto"] = Field("auto", description="auto: on only when the memory "
                                                           "estimate does not fit the card without it")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    assistant_only_loss: bool = True
    allow_truncation: bool = Field(False, description="train even when max_length would cut assistant tokens off "
                                   "some examples (the cut part is not learned); without it such a run is refused")
    fused_loss: Literal["auto", "on", "off"] = Field(
        "auto", description="TRL's tiled LM-head loss that never materialises the logits; auto = on for CUDA "
        "(saves memory), off on CPU (there the model's own cross-entropy is faster)")
    logging_steps: PositiveInt = 1
    save_steps: PositiveInt = 100
    save_total_limit: PositiveInt = 2
    lora: LoraSettings = Field(default_factory=LoraSettings)
    preference: PreferenceSettings = Field(default_factory=PreferenceSettings)

    @property
    def is_preference(self) -> bool:
        return self.method in PREFERENCE_METHODS

    @property
    def picked_by_provider(self) -> bool:
        """epochs or batch_size left to the provider (auto: provider=openai only); local trainers never see it."""
        return self.epochs == "auto" or self.batch_size == "auto"

    @property
    def fixed_epochs(self) -> float:
        """train.epochs for a trainer that needs a number (RunConfig refuses auto for providers that do not pick)."""
        if self.epochs == "auto":
            raise ConfigError(Problem("train.epochs", "auto leaves it to the provider: this needs a number"))
        return self.epochs

    @property
    def fixed_batch_size(self) -> int:
        """train.batch_size for a trainer that needs a number (as fixed_epochs)."""
        if self.batch_size == "auto":
            raise ConfigError(Problem("train.batch_size", "auto leaves it to the provider: this needs a number"))
        return self.batch_size


Metric = Literal["exact_match", "normalized_match", "json_valid", "json_schema", "field_accuracy", "chrf", "rouge_l",
                 "judge"]
METRICS: tuple[str, ...] = get_args(Metric)


PromptArm = Literal["zero_shot", "k_shot", "retrieved", "constrained"]
PROMPT_ARMS: tuple[str, ...] = get_args(PromptArm)


RENAMED = {  # settings an older recipe may still carry -> where they live now
    "eval.judge_model": "eval.judge.model (and eval.judge.endpoint, eval.judge.base_url)",
    "eval.judge_rubric": "eval.judge.rubric: a shipped rubric name (conf/rubrics/) or the path of a YAML rubric",
    # one name per setting: the provider.* copies of train.* settings
    "provider.n_epochs": "train.epochs (auto, OpenAI's default, or a whole number)",
    "provider.batch_size": "train.batch_size (auto, OpenAI's default, or a number)",
    "provider.seed": "train.seed (null, OpenAI's default, lets OpenAI pick)",
    "provider.method": "train.method (supervised is train.method=lora, dpo is train.method=dpo)",
    "provider.load_in_4bit": "train.quantization (4bit, provider=unsloth's default, or none for 16-bit weights)",
}


class JudgeConfig(Strict):
    """An LLM judge for open-ended answers (eval/judges.py): a rubric grade for every answer (the 'judge'
    metric) and a pairwise comparison of tuned with the strongest prompt, both orders, calibrated by human
    grades from `ftorch review RUN` (prediction-powered intervals, eval/judge_stats.py)."""

    model: str | None = Field(None, description="the judge: with endpoint=openai a model id on any "
                              "OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, Ollama: set base_url); with "
                              "endpoint=local a model loaded like model.name (a folder, a hub id or a .gguf file), "
                              "or 'base': the run's own base model with the adapter off (no second copy loaded)")
    endpoint: Literal["openai", "local"] = "openai"
    base_url: str | None = Field(None, description="endpoint=openai: the server (default $OPENAI_BASE_URL, "
                                 "else OpenAI's)")
    api_key_env: str = Field("OPENAI_API_KEY", description="endpoint=openai: the variable holding the key")
    rubric: str = Field("correctness", description="a shipped rubric (conf/rubrics/NAME.yaml: style, "
                        "correctness, format) or the path of your own YAML rubric")
    scale: Literal["rubric", "pass_fail", "1-5"] = Field("rubric", description="how the rubric judge grades: "
                                                         "the rubric's own scale, or one of the two")
    pairwise: bool = Field(True, description="compare tuned with the strongest prompt on every test prompt, "
                           "twice with positions swapped (a win only when both orders agree)")
    headline: bool = Field(True, description="the pairwise comparison (calibrated by human grades) is the "
                           "verdict's headline, before the task metrics")
    min_kappa: Annotated[float, Field(ge=-1.0, le=1.0)] = Field(
        0.4, description="below this Cohen's kappa with human grades the judge is called unreliable and the "
        "verdict uses the human grades alone")
    grade_sample: PositiveInt = Field(40, description="test prompts in the grading view of `ftorch review RUN` "
                                      "(seeded; 80 or more for intervals at their nominal 95%)")
    target_width: Annotated[float, Field(gt=0.0, le=4.0)] = Field(
        0.2, description="the grading view says how many more grades would narrow the interval to this width")
    max_new_tokens: PositiveInt = Field(256, description="room for the judge's reasoning before its grade")
    max_cost_usd: PositiveFloat | None = Field(None, description="a hosted judge's spending limit, checked "
                                               "against an estimate before any call")
    input_usd_per_1m: Annotated[float, Field(ge=0.0)] | None = Field(None, description="a hosted judge's price")
    output_usd_per_1m: Annotated[float, Field(ge=0.0)] | None = None
    workers: PositiveInt = Field(8, description="parallel calls to a hosted judge")


# an eval.* setting that measures the model's weights (likelihoods, a harness that loads the model): a provider
# whose models stay hosted (Backend.weights="hosted") evaluates through an API and refuses it when it is on
NEEDS_WEIGHTS: JsonDict = {"needs_weights": True}


class EvalConfig(Strict):
    """Evaluation after every run: the task metrics on held-out data for base, prompted and tuned, plus
    general capability (instruction suite, drift) and safety, base against tuned."""

    enabled: bool = Field(True, description="eval=none turns evaluation off; run.json then says 'unevaluated'")
    split: Literal["test", "validation"] = "test"
    limit: PositiveInt | None = Field(None, description="score only the first N held-out examples")
    few_shot: Annotated[int, Field(ge=0)] = Field(5, description="examples from train in the prompted baseline")
    seed: int = 0
    system_prompt: str | None = Field(None, description="system prompt for all three systems; default: the one "
                                      "the training data uses most")
    metrics: list[Metric] = Field(default_factory=lambda: list[Metric](["exact_match", "normalized_match"]))
    headline: Metric = "normalized_match"
    json_schema: str | None = Field(None, description="JSON Schema file that outputs must conform to")
    max_new_tokens: PositiveInt = 128
    batch_size: PositiveInt = Field(16, description="examples per scoring pass (held-out loss, drift, log-probs) "
                                    "and requests in flight to a hosted model")
    decode_batch_size: PositiveInt = Field(128, description="prompts a local model decodes together (one KV cache "
                                           "row each, fewer rows where a batch's cache would pass 4 GiB; "
                                           "bench/decode_settings.py)")
    general: bool = Field(True, description="the shipped instruction-following suite, base vs tuned")
    general_limit: PositiveInt | None = None
    drift: bool = Field(True, description="KL and perplexity change on shipped general text (local models; "
                        "provider=openai: false, refused)", json_schema_extra=NEEDS_WEIGHTS)
    safety: bool = Field(True, description="harmful-compliance and over-refusal rates, base vs tuned")
    safety_limit: PositiveInt | None = Field(None, description="sample of red-team and benign prompts each")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="an LLM judge (eval.judge.model): "
                               "the 'judge' metric and the pairwise comparison with the strongest prompt")
    safety_grader: Literal["refusal", "openai_moderation"] = Field(
        "refusal", description="openai_moderation: OpenAI's moderation endpoint judges red-team answers (network); "
        "refusal: the shipped refusal detector only")
    lm_eval_tasks: list[str] = Field(default_factory=list, description="lm-evaluation-harness tasks, base vs tuned "
                                     "(local models; pip install 'ftorch[lm-eval]'; needs the benchmarks' data)",
                                     json_schema_extra=NEEDS_WEIGHTS)
    lm_eval_include_path: str | None = Field(None, description="a folder of your own lm-eval task YAMLs",
                                             json_schema_extra=NEEDS_WEIGHTS)
    lm_eval_limit: PositiveInt | None = Field(None, description="examples per lm-eval task",
                                              json_schema_extra=NEEDS_WEIGHTS)
    openai_api_key_env: str = Field("OPENAI_API_KEY", description="key variable for the judge and moderation")
    openai_base_url: str | None = Field(None, description="default: $OPENAI_BASE_URL, else the SDK's default")
    rejected_patterns: list[str] = Field(default_factory=list, description="preference runs: regular "
                                         "expressions that detect the rejected behaviour in a generated answer "
                                         "(the report gives the rate for base, prompted and tuned)")
    prompted_instructions: str | None = Field(None, description="appended to the prompted baseline's system "
                                              "prompt: the 'do not' instructions a prompt engineer would write")
    max_regression: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.05, description="a drop of more than this in the general suite's pass rate (or a rise in harmful "
        "compliance) marks the run 'regressed'")
    prompt_arms: list[PromptArm] = Field(
        default_factory=lambda: list(get_args(PromptArm)),
        description="prompting strategies swept on validation data; the "
        "best becomes the 'prompted' system the tuned model is compared with on the test split. [] = the fixed "
        "few_shot prompt, no sweep. On preference data the examples are train prompts with their preferred "
        "answers and every arm's system prompt carries eval.prompted_instructions")
    k_shots: list[PositiveInt] = Field(default_factory=lambda: [1, 3, 5, 10], description="k for the k_shot arm "
                                       "(each a separate arm; a k whose prompts exceed the context is skipped)")
    validation_limit: PositiveInt = Field(40, description="validation examples the arms are scored on: from "
                                          "data.validation, else a fixed slice of train kept out of the shots")
    early_stop: bool = Field(True, description="stop an arm after half the validation examples when it is "
                             "clearly worse than the best so far (its interval lies below the best's)")
    reference_model: str | None = Field(None, description="a bigger model as one more arm, prompted with the best "
                                        "strategy: a local model folder, or an OpenAI model id (network)")
    answer_cache: bool = Field(True, description="reuse answers already generated for the same model and adapter "
                               "content, prompt, decoding settings and library versions ($FTORCH_CACHE/answers; "
                               "local models only); false: generate every answer again")
    answer_cache_mb: PositiveInt = Field(1024, description="size cap of the answer cache in MB; above it the least "
                                         "recently used answers are evicted")

    def generation_batch(self, generator: object) -> int:
        """How many prompts `generator.generate` takes at a time: a local decoder's rows (decode_batch_size), a
        hosted model's requests in flight (batch_size)."""
        return self.decode_batch_size if getattr(generator, "decodes_locally", False) else self.batch_size

    @model_validator(mode="after")
    def _schema_metric_needs_a_schema(self) -> EvalConfig:
        if "judge" in self.metrics and not self.judge.model:
            raise ValueError("metric 'judge' needs eval.judge.model")
        if "json_schema" in self.metrics and not self.json_schema:
            raise ValueError("metric 'json_schema' needs eval.json_schema (a JSON Schema file)")
        if self.headline not in self.metrics:
            raise ValueError(f"eval.headline '{self.headline}' must be one of eval.metrics {self.metrics}")
        import re

        for pattern in self.rejected_patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"eval.rejected_patterns: {pattern!r} is not a regular expression ({exc})") from None
        return self


Direction = Literal["auto", "minimize", "maximize"]


class SweepSettings(Strict):
    """What a sweep optimises. Trials report it to the sweeper and the leaderboard sorts by it."""

    objective: str | list[str] = Field("auto", description="auto = the evaluation's headline metric for the "
                                       "tuned model, else final_eval_loss, else final_loss; or any run.json metric; "
                                       "general_change = tuned minus base on the general suite; a list = "
                                       "multi-objective (Optuna)")
    direction: Direction | list[Direction] = Field("auto", description="auto: minimize losses, maximize the rest")
    fail_fast: bool = Field(False, description="stop the sweep at the first failed trial")

    @model_validator(mode="after")
    def _one_direction_per_objective(self) -> SweepSettings:
        if isinstance(self.direction, list):
            count = 1 if isinstance(self.objective, str) else len(self.objective)
            if len(self.direction) != count:
                raise ValueError(f"sweep.direction lists {len(self.direction)} directions for {count} "
                                 "objective(s): give one per objective, or a single direction for all")
        return self


class TrackingConfig(Strict):
    """Experiment tracking, written from the run directory when a run ends (any provider)."""

    backend: Literal["none", "tensorboard", "mlflow"] = "none"
    mlflow_uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI, else a local store in "
                                   "<project>/mlruns")
    experiment: str | None = Field(None, description="default: the recipe's name")


def resolved(value: bool | str, auto: bool) -> bool:
    """A bool setting that may be 'auto': the user's value, or `auto` (the backend's choice)."""
    return auto if value == "auto" else bool(value)


class PathsConfig(Strict):
    runs: str = "runs"


class RunConfig(Strict):
    provider: Provider
    model: ModelConfig
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    sweep: SweepSettings = Field(default_factory=SweepSettings)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)

    @model_validator(mode="after")
    def _method_matches_data(self) -> RunConfig:
        if self.model.adapter is not None and self.provider.name != "peft":
            raise ValueError(f"model.adapter: starting from an earlier run's adapter is available on provider=peft, "
                             f"not provider={self.provider.name}")
        changed = [k for k, v in PreferenceSettings() if getattr(self.train.preference, k) != v]
        if not self.train.is_preference and changed:
            raise ValueError(f"train.preference.{changed[0]}: applies to preference methods only (train.method=dpo, "
                             "orpo, kto, simpo)")
        if self.data.format != "preference" and (self.eval.rejected_patterns or self.eval.prompted_instructions):
            raise ValueError("eval.rejected_patterns: it and eval.prompted_instructions apply to preference data "
                             "(data.format=preference) for now")
        for key, value in PICKED_BY_PROVIDER.items():
            leaf = key.partition(".")[2]
            if key not in type(self.provider).picks and getattr(self.train, leaf) == value:
                shown = "null" if value is None else value
                raise ValueError(f"{key}: {shown} leaves it to the provider, and provider={self.provider.name} "
                                 f"needs a value (default: {TrainConfig.model_fields[leaf].default})")
        if self.train.is_preference and self.data.format != "preference":
            raise ValueError(f"train.method: {self.train.method} trains on preference pairs: set "
                             "data.format=preference (`ftorch data convert --from prompt-chosen-rejected` makes them)")
        if self.data.format == "preference" and not self.train.is_preference:
            raise ValueError("data.format: preference data needs a preference method: train.method=dpo (or orpo, "
                             "kto, simpo)")
        return self


    def provider_as(self, kind: type[P]) -> P:
        """`provider` as the kind a caller needs (OpenAIProvider for a price table, say), for the type checker and
        at run time: a run on another provider is a ConfigError naming provider.name, never an AttributeError."""
        if not isinstance(self.provider, kind):
            wanted = kind.model_fields["name"].default
            raise ConfigError(Problem("provider.name", f"this needs provider={wanted}, and this run's provider is "
                                      f"{self.provider.name}"))
        return self.provider




def defaults_tree(model: type[BaseModel]) -> dict:
    """The schema's defaults as a plain tree ('???' where a value is required), so that Hydra
    knows every key: `train.scheduler=linear` works without a '+', and plan shows every value."""
    from pydantic_core import PydanticUndefined

    tree: dict = {}
    for name, info in model.model_fields.items():
        if info.default_factory is not None:
            value = info.default_factory()  # type: ignore[call-arg]  # ours take no arguments (no validated data)
            tree[name] = value.model_dump() if isinstance(value, BaseModel) else value
        elif info.default is PydanticUndefined:
            annotation = info.annotation
            tree[name] = defaults_tree(annotation) if _is_model(annotation) and name != "provider" else "???"
        else:
            tree[name] = info.default
    return tree


def _is_model(annotation: object) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


# provider.* copies of train.* settings, as a run recorded before they were folded into train.* holds them:
# old key -> (train.* key, old value -> new value)
_FOLDED: dict[str, tuple[str, dict[Any, Any]]] = {
    "n_epochs": ("epochs", {}), "batch_size": ("batch_size", {}), "seed": ("seed", {}),
    "method": ("method", {"supervised": "lora"}), "load_in_4bit": ("quantization", {True: "4bit", False: "none"}),
}


def _older_judge(data: dict[str, Any]) -> dict[str, Any]:
    """eval.judge_model / eval.judge_rubric, which every run recorded before eval.judge holds (as defaults at
    least): the model moves to eval.judge.model; the old free-text rubric has no file, so the judge of such a run
    grades on the shipped 'correctness' rubric."""
    evaluation = data.get("eval")
    if not isinstance(evaluation, dict) or not {"judge_model", "judge_rubric"} & set(evaluation):
        return data
    evaluation = dict(evaluation)
    model = evaluation.pop("judge_model", None)
    evaluation.pop("judge_rubric", None)
    if model:
        judge = dict(evaluation.get("judge") or {})
        judge.setdefault("model", model)
        evaluation["judge"] = judge
    return {**data, "eval": evaluation}


def recorded_by_older_version(data: dict[str, Any]) -> dict[str, Any]:
    """A finished run's saved config with the provider.* copies it may hold moved to their train.* names (what that
    run trained with), so that eval, export and cancel still read runs recorded before; a recipe with them is
    refused instead (RENAMED)."""
    data = _older_judge(data)
    provider, train = data.get("provider"), data.get("train")
    if not isinstance(provider, dict) or not isinstance(train, dict) or not set(provider) & set(_FOLDED):
        return data
    provider, train = dict(provider), dict(train)
    for old, (new, values) in _FOLDED.items():
        if old in provider:
            value = provider.pop(old)
            train[new] = values.get(value, value)
    return {**data, "provider": provider, "train": train}


def weights_only_settings() -> tuple[str, ...]:
    """The eval.* keys that need the model's weights (NEEDS_WEIGHTS)."""
    return tuple(f"eval.{name}" for name, info in EvalConfig.model_fields.items()
                 if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("needs_weights"))


@cache
def known_keys() -> tuple[str, ...]:
    """Every dotted key the schema accepts, for did-you-mean hints."""
    def walk(model: type[BaseModel], prefix: str):
        for name, info in model.model_fields.items():
            yield prefix + name
            for arg in (info.annotation, *get_args(info.annotation)):
                for sub in (arg, *get_args(arg)):
                    if isinstance(sub, type) and issubclass(sub, BaseModel):
                        yield from walk(sub, f"{prefix}{name}.")

    return tuple(dict.fromkeys(walk(RunConfig, "")))
