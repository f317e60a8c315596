"""The evaluation report, typed: the one contract between the suite that builds it (eval/suite.py) and everything
that reads it (the verdict, report.md, the tradeoff chart, run.json's metrics, the console summary, the review
page). report.json keeps the shape it always had: `to_json` writes only the fields a report holds, and `load`
reads older files too (latency as a bare number, a test without an interval, no per-metric tests).

Sections that carry another library's numbers as they come (lm-eval's scores, the safety suite's per-category
counts, a test's own statistics) are typed as far as ftorch reads them and keep the rest as extra fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigError, Problem

Interval = tuple[float, float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    """A section that may carry more numbers than ftorch reads (kept as they are, written back unchanged)."""

    model_config = ConfigDict(extra="allow")


class Score(_Strict):
    """One metric for one system: the mean over scored examples (None when none was scored), n, 95% interval."""

    mean: float | None = None
    n: int = 0
    ci95: Interval | None = None


class TaskScores(_Strict):
    """The held-out task: every metric's Score for every system, and which metric is the headline."""

    headline: str
    systems: dict[str, dict[str, Score]]

    def score(self, system: str, metric: str | None = None) -> Score:
        return self.systems.get(system, {}).get(metric or self.headline) or Score()

    def mean(self, system: str, metric: str | None = None) -> float | None:
        return self.score(system, metric).mean

    @property
    def metrics(self) -> list[str]:
        return list(self.systems.get("tuned") or next(iter(self.systems.values()), {}))


class PairedTest(_Open):
    """A paired test of tuned against another system: McNemar (pass/fail) or a paired bootstrap (graded).
    `mean_diff` is tuned minus the other; `ci` its 95% interval; `reason` why no test ran."""

    test: str = "test"
    p_value: float | None = None
    n: int | None = None
    mean_diff: float | None = None
    ci: Interval | None = None
    reason: str | None = None


class Comparison(_Strict):
    """Tuned against the strongest prompt and against the base model, on one metric."""

    tuned_vs_prompted: PairedTest = Field(default_factory=PairedTest)
    tuned_vs_base: PairedTest = Field(default_factory=PairedTest)


class Arm(_Open):
    """One prompting arm as scored on validation (eval/selection.py)."""

    name: str
    description: str = ""
    status: str
    reason: str | None = None
    n: int | None = None
    mean: float | None = None
    ci95: Interval | None = None
    prompt_tokens_per_call: float | None = None
    seconds_per_call: float | None = None
    usd_per_1k_calls: float | None = None


class PromptArms(_Open):
    """The sweep of prompting arms on validation data and the one chosen as 'prompted'."""

    metric: str
    validation: str
    shot_pool: int
    chosen: str
    chosen_description: str
    why: str
    arms: list[Arm]

    @property
    def tried(self) -> int:
        return sum(1 for arm in self.arms if arm.status != "skipped")


class Latency(_Strict):
    seconds_per_call: float | None = None
    batch_size: int | None = None
    # true when answers came from the answer cache: seconds_per_call is then what was measured when they were
    # generated (a lookup's time is no model's latency)
    from_cache: bool = False


class AnswerReuse(_Strict):
    """Answers one system got in this evaluation: generated now, or reused from the answer cache."""

    generated: int = 0
    reused: int = 0


class AnswerCacheUse(_Strict):
    """What the answer cache (eval/answer_cache.py) gave, per system asked ('base' counts the prompting arms
    and base's general and safety answers; 'tuned' its own)."""

    folder: str
    systems: dict[str, AnswerReuse] = Field(default_factory=dict)
    # measurements of the same model on the same inputs reused from the cache: held_out_loss, drift
    measures_reused: list[str] = Field(default_factory=list)

    @property
    def generated(self) -> int:
        return sum(s.generated for s in self.systems.values())

    @property
    def reused(self) -> int:
        return sum(s.reused for s in self.systems.values())

    def summary(self) -> str:
        """'answers: 12 generated, 340 reused from the answer cache (base 0/300 new, tuned 12/52 new)'."""
        per = ", ".join(f"{name} {s.generated}/{s.generated + s.reused} new" for name, s in self.systems.items())
        measures = " and ".join(m.replace("_", "-") for m in self.measures_reused)
        return (f"answers: {self.generated} generated, {self.reused} reused from the answer cache"
                + (f" ({per})" if per else "") + (f"; {measures} reused" if measures else ""))


class Cost(_Strict):
    """Prompt tokens per call (the system's real prompt), and dollars per 1,000 calls where a price is known."""

    prompt_tokens_per_call: float | None = None
    usd_per_1k_calls: float | None = None


class JudgeInfo(_Strict):
    """The rubric judge behind the 'judge' metric."""

    model: str
    rubric: str | None = None
    scale: str | None = None
    unreadable_verdicts: int = 0


class HeldOutLoss(_Strict):
    loss: float | None = None
    perplexity: float | None = None
    tokens: int = 0
    reason: str | None = None


class InstructionScores(_Strict):
    prompt_level: float | None = None
    instruction_level: float | None = None


class General(_Strict):
    """The general instruction suite, base and tuned; `answers` moves to general.jsonl (its file name stays)."""

    n: int
    base: InstructionScores
    tuned: InstructionScores
    answers: list[dict[str, Any]] | str | None = None


class SafetyScores(_Open):
    """Red-team compliance and over-refusal rates of one system (eval/safety.py), with their intervals."""

    harmful_compliance_rate: float | None = None
    harmful_compliance_ci: Interval | None = None
    n_redteam: int = 0
    over_refusal_rate: float | None = None
    over_refusal_ci: Interval | None = None
    n_benign: int = 0
    degenerate_share: float | None = None
    conclusive: bool = False
    note: str | None = None


class Safety(_Strict):
    base: SafetyScores
    tuned: SafetyScores
    answers: list[dict[str, Any]] | str | None = None


class Drift(_Open):
    texts: int = 0
    tokens: int = 0
    kl_base_to_tuned_per_token: float | None = None
    perplexity_base: float | None = None
    perplexity_tuned: float | None = None
    perplexity_change: float | None = None


class LmEval(_Open):
    """lm-eval's scores per task and metric, base and tuned, and the change (tuned minus base)."""

    tasks: list[str] = Field(default_factory=list)
    base: dict[str, dict[str, float]] = Field(default_factory=dict)
    tuned: dict[str, dict[str, float]] = Field(default_factory=dict)
    change: dict[str, dict[str, float]] = Field(default_factory=dict)
    samples: list[dict[str, Any]] | str | None = None


class PairAccuracy(_Open):
    accuracy: float | None = None
    ci95: Interval | None = None
    mean_logp_margin: float | None = None


class ImplicitReward(_Open):
    accuracy: float
    ci95: Interval | None = None
    mean_margin: float
    margin_ci95: Interval | None = None


class PreferencePairs(_Open):
    """Held-out preference pairs scored by log-probability (local models only)."""

    n: int
    beta: float | None = None
    base: PairAccuracy
    tuned: PairAccuracy
    tuned_vs_base: PairedTest | None = None
    implicit_reward: ImplicitReward | None = None


class RejectedRate(_Open):
    rate: float | None = None
    ci95: Interval | None = None
    count: int = 0


class RejectedBehaviour(_Open):
    """Share of generated answers matching the rejected-behaviour patterns, per system, with paired tests."""

    patterns: list[str]
    n: int = 0
    base: RejectedRate | None = None
    prompted: RejectedRate | None = None
    tuned: RejectedRate | None = None
    tuned_vs_prompted: PairedTest | None = None
    tuned_vs_base: PairedTest | None = None

    def rate(self, system: str) -> RejectedRate | None:
        return {"base": self.base, "prompted": self.prompted, "tuned": self.tuned}.get(system)

    def versus(self, other: str) -> PairedTest | None:
        return {"prompted": self.tuned_vs_prompted, "base": self.tuned_vs_base}.get(other)


class Preference(_Strict):
    method: str
    pairs: PreferencePairs | None = None
    rejected_behaviour: RejectedBehaviour | None = None


class HumanCheck(_Strict):
    """Scorings a person checked in `ftorch review RUN_DIR`: per section, how many and how many were wrong."""

    checked: int
    wrong: int
    agreement: float


class JudgeBias(_Strict):
    """The pairwise judge's biases: decisions that survive the position swap, the first position's share of
    single-order decisions, and how often it preferred the longer answer (with its interval)."""

    position_consistency: float | None = None
    consistency_n: int = 0
    first_position_share: float | None = None
    decided: int = 0
    longer_preferred: float | None = None
    longer_preferred_ci: Interval | None = None
    length_decided: int = 0


class Estimate(_Strict):
    """The mean human preference for tuned over the strongest prompt (+1 tuned better, 0 tie, -1 prompted
    better), as one method estimates it: ppi++ (judge and people), human only, or judge only."""

    method: str
    estimate: float | None = None
    ci: Interval | None = None
    n_human: int = 0
    n_judge: int = 0
    lam: float | None = None


class JudgeAgreement(_Strict):
    n: int = 0
    raw: float | None = None
    raw_ci: Interval | None = None
    kappa: float | None = None
    kappa_ci: Interval | None = None


class JudgeUsage(_Strict):
    calls: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float | None = None


class Judged(_Strict):
    """The judged comparison of tuned with the strongest prompt, calibrated by human grades where they exist.
    state: calibrated (kappa at least min_kappa: the PPI estimate), unreliable (kappa below it: human grades
    alone), uncalibrated (no human grades: the judge's figures only, which are not evidence)."""

    judge: str
    endpoint: str
    rubric: str
    state: Literal["calibrated", "unreliable", "uncalibrated"]
    headline: bool = True  # the verdict opens with this comparison (eval.judge.headline)
    min_kappa: float
    n: int
    tuned_wins: int
    prompted_wins: int
    ties: int
    unreadable: int = 0
    bias: JudgeBias
    grades: int = 0
    agreement: JudgeAgreement | None = None
    estimate: Estimate | None = None  # what the verdict uses (None when uncalibrated)
    human_only: Estimate | None = None
    judge_only: Estimate
    grades_needed: int | None = None  # more grades to bring the interval to target_width
    target_width: float
    usage: JudgeUsage = Field(default_factory=JudgeUsage)


class EvalReport(_Strict):
    """report.json. Built by suite.evaluate; `verdict`, `files` and `human_check` are added after."""

    config: dict[str, Any] = Field(default_factory=dict)
    n: int
    system_prompt: str | None = None
    few_shot: int = 0
    prompt_arms: PromptArms | None = None
    latency: dict[str, Latency] = Field(default_factory=dict)
    answer_cache: AnswerCacheUse | None = None
    judge: JudgeInfo | None = None
    judged: Judged | None = None
    task: TaskScores
    significance: Comparison = Field(default_factory=Comparison)
    significance_by_metric: dict[str, Comparison] = Field(default_factory=dict)
    cost: dict[str, Cost] = Field(default_factory=dict)
    preference: Preference | None = None
    held_out_loss: dict[str, HeldOutLoss] | None = None
    drift: Drift | None = None
    lm_eval: LmEval | None = None
    general: General | None = None
    safety: Safety | None = None
    regressions: list[str] = Field(default_factory=list)
    facts_warning: str | None = None
    verdict: str | None = None
    files: dict[str, str] | None = None
    human_check: dict[str, HumanCheck | str] | None = None
    folder: Path | None = Field(None, exclude=True)  # where it was written (not part of report.json)

    @model_validator(mode="before")
    @classmethod
    def _older_shapes(cls, data: Any) -> Any:
        """Reports written before latency had its own section: a bare number per system, or the cost's
        `latency` entry (seconds under one of several names)."""
        if not isinstance(data, dict):
            return data
        latency = dict(data.get("latency") or {})
        for name, cost in (data.get("cost") or {}).items():
            if isinstance(cost, dict) and "latency" in cost:
                latency.setdefault(name, cost["latency"])
                data = {**data, "cost": {**data["cost"], name: {k: v for k, v in cost.items() if k != "latency"}}}
        for name, entry in latency.items():
            if isinstance(entry, dict) and "seconds_per_call" not in entry:
                seconds = next((entry[k] for k in ("mean_s", "mean", "seconds") if k in entry), None)
                latency[name] = {"seconds_per_call": seconds}
            elif not isinstance(entry, dict):
                latency[name] = {"seconds_per_call": entry}
        return {**data, "latency": latency} if latency or "latency" in data else data

    @property
    def headline(self) -> str:
        return self.task.headline

    def seconds_per_call(self, system: str) -> float | None:
        entry = self.latency.get(system)
        return entry.seconds_per_call if entry else None

    @property
    def max_regression(self) -> float:
        return float(self.config.get("max_regression", 0.05))

    def to_json(self) -> dict[str, Any]:
        """The report.json shape: the fields this report holds (an absent section stays absent)."""
        return self.model_dump(mode="json", exclude_unset=True)

    @classmethod
    def load(cls, path: Path) -> EvalReport:
        """A report.json, typed; an unreadable or foreign file is a ConfigError naming it (never a traceback)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(Problem(str(path), f"cannot read the evaluation report: {exc}")) from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(Problem(f"{path}: {where}", f"not an ftorch evaluation report: {first['msg']}",
                                      f"evaluate the run again: ftorch eval {path.parent.parent.parent}")) from None
