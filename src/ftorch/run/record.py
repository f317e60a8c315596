"""run.json as a typed record: every key ftorch writes, declared once; read and validated in one place.

A run.json from an older ftorch (keys missing) reads; one hand-edited into nonsense (a status that does not
exist, a number where a list belongs) is a ConfigError naming the file and the key. Keys this version does not
know (written by a newer ftorch, or by a backend's extra fields) are kept, never dropped, and written back.
Only the keys a file holds are written back: reading and writing an old file does not fill it with nulls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ConfigError, Problem

# what run.json may say; 'died' is never written: it is what a reader reports for a 'running' run nobody owns
RunStatus = Literal["running", "succeeded", "failed", "interrupted", "died"]
WRITTEN_STATUSES: tuple[str, ...] = ("running", "succeeded", "failed", "interrupted")
EvaluationStatus = Literal["running", "succeeded", "failed", "interrupted", "skipped", "died"]


class _Open(BaseModel):
    """Unknown keys are kept (a newer ftorch's, a backend's extras); assignment is validated."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)


class Evaluation(_Open):
    """run.json's `evaluation`: the latest evaluation's outcome (eval/finished.py writes it)."""

    status: EvaluationStatus
    dir: str | None = None
    error: str | None = None
    reason: str | None = None  # why it was skipped
    verdict: Any = None
    headline: str | None = None
    regressions: list[Any] = []
    prompt_arm: str | None = None
    judged: str | None = None  # the judged comparison's state: calibrated, unreliable or uncalibrated
    # a re-evaluation that is running or did not finish: the earlier successful evaluation's record, kept
    last_succeeded: dict[str, Any] | None = None

    def latest_success(self) -> dict[str, Any] | None:
        """The newest successful evaluation's record: this one, or the one an unfinished re-evaluation kept."""
        if self.status == "succeeded":
            return self.model_dump(mode="json", exclude_unset=True, exclude={"last_succeeded"})
        return self.last_succeeded


class Objective(_Open):
    """One objective a sweep trial reports (sweep/objective.py)."""

    name: str
    value: float | None = None
    direction: str


class Tracking(_Open):
    backend: str | None = None
    error: str | None = None


class RunRecord(_Open):
    """Everything ftorch writes to RUN/run.json. Writers: run/rundir.py (start/finish), run/lifecycle.py,
    eval/finished.py, sweep/objective.py, export/run.py, the backends (job ids, checkpoints, Result.extra)."""

    status: RunStatus
    # the run's start (RunDir.start)
    recipe: str | None = None
    provider: str | None = None
    started: str | None = None
    ended: str | None = None
    overrides: list[str] = []
    git_commit: str | None = None
    host: str | None = None
    platform: str | None = None
    python: str | None = None
    packages: dict[str, str] = {}
    threads: dict[str, Any] | None = None  # the thread policy (threads.py): threads, source, what it set or kept
    pid: int | None = None
    error: str | None = None
    plan_estimates: dict[str, Any] = {}
    resumed: list[str] = []  # the status each `ftorch resume` found
    # the outcome (lifecycle.supervise: Result.metrics, .artifacts, .extra)
    metrics: dict[str, Any] = {}
    artifacts: dict[str, Any] = {}
    loss_plot: str | None = None
    last_checkpoint_step: int | None = None
    # local providers' Result.extra
    trainable_params: int | None = None
    total_params: int | None = None
    device: str | None = None
    precision: str | None = None
    processes: int | None = None
    method: str | None = None
    reload_check: dict[str, Any] | None = None
    peft_reload_check: dict[str, Any] | None = None
    preprocessing: dict[str, Any] | None = None
    resume_from: str | None = None
    child_pid: int | None = None
    # provider=openai
    job_id: str | None = None
    job_status: str | None = None
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    openai_files: dict[str, Any] = {}
    # evaluation (eval/finished.py)
    evaluated: bool | None = None
    evaluation: Evaluation | None = None
    evaluations: list[str] = []
    regressed: bool | None = None
    # sweeps, exports, tracking
    objective: list[Objective] = []
    exports: list[dict[str, Any]] = []  # `ftorch export` appends one entry per export
    unsloth_exports: dict[str, dict[str, Any]] = {}  # provider=unsloth's training-time exports: {name: outcome}
    export: dict[str, Any] | None = None
    tracking: Tracking | None = None

    @classmethod
    def from_dict(cls, data: Any, source: Path | str) -> RunRecord:
        """Validate a parsed run.json; a bad one is a ConfigError naming `source` and each bad key."""
        if not isinstance(data, dict) or "status" not in data:
            raise ConfigError(Problem(str(source), "run.json is not a run record (no status)"))
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError([_problem(source, error) for error in exc.errors()]) from None

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        """Read RUN/run.json; a torn, foreign or hand-broken file is a ConfigError naming it (never a traceback)."""
        try:
            data = json.loads(path.read_text())
        except (IsADirectoryError, PermissionError) as exc:  # FileNotFoundError is the caller's to handle
            raise ConfigError(Problem(str(path), f"cannot read run.json ({exc.strerror})",
                                      "it must be the file ftorch wrote; restore it, or start a new run")) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(Problem(str(path), f"run.json is corrupt ({type(exc).__name__}: {exc})",
                                      "this run's record cannot be trusted; start a new run")) from None
        return cls.from_dict(data, path)

    def merged(self, **fields: Any) -> RunRecord:
        """A new record with `fields` set (validated); the keys this record holds are kept."""
        return RunRecord.from_dict({**self.to_json(), **fields}, "run.json")

    def to_json(self) -> dict[str, Any]:
        """The keys this record holds (those read or set, unknown ones included), as JSON values."""
        return self.model_dump(mode="json", exclude_unset=True)

    def judged_summary(self) -> str:
        """The judged comparison with its calibration state, for `runs ls` and the sweep leaderboard: "judged
        +12.5 pts (calibrated)", "judged: uncalibrated" (a judge's own figure is never shown as a number), or ""
        without one."""
        from .metric_keys import JUDGED_PREFERENCE

        latest = self.evaluation.latest_success() if self.evaluation is not None else None
        state = (latest or {}).get("judged")
        if not state:
            return ""
        value = self.metrics.get(JUDGED_PREFERENCE)
        if state == "uncalibrated" or value is None:
            return f"judged: {state}"
        return f"judged {value * 100:+.1f} pts ({state})"

    @property
    def headline_metric(self) -> float | None:
        """The tuned model's score on the evaluation's headline metric, if evaluated (by the latest evaluation
        that succeeded: a re-evaluation that did not finish changed nothing in `metrics`)."""
        latest = self.evaluation.latest_success() if self.evaluation else None
        headline = (latest or {}).get("headline")
        value = self.metrics.get(f"eval_tuned_{headline}") if headline else None
        return value if isinstance(value, (int, float)) else None

    @property
    def cost_usd(self) -> float | None:
        """The plan's estimated cost in USD (paid providers)."""
        cost = self.plan_estimates.get("cost") or {}
        usd = cost.get("usd") if isinstance(cost, dict) else None
        return usd if isinstance(usd, (int, float)) else None


def _problem(source: Path | str, error: Any) -> Problem:
    key = ".".join(str(part) for part in error["loc"])
    value = error.get("input")
    if error["type"] == "literal_error" and key == "status":
        allowed = ", ".join(get_args(RunStatus))
        return Problem(f"{source}: status", f"unknown run status {value!r}", f"one of: {allowed}")
    return Problem(f"{source}: {key}", f"{error['msg']} (found {value!r})",
                   "this run.json was edited by hand or is damaged; restore the value ftorch wrote")
