"""Target-task metrics, each a function (prediction, reference) -> score in [0, 1] (chrF and ROUGE-L are
on a 0-1 scale too). Which ones run is chosen per recipe in eval.metrics.

`TASK_METRICS` is the one registry of them: each metric's scorer, whether it is pass/fail (which decides its
interval and its paired test) and which way is better. A new metric is one function and one registry line (and
its name in config/schema.py's `Metric`, which a test keeps in step with the registry)."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MissingExtra, Problem

_SPACE = re.compile(r"\s+")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Lowercase, drop punctuation, collapse whitespace."""
    return _SPACE.sub(" ", text.lower().translate(_PUNCT)).strip()


def parse_json(text: str) -> Any:
    """The JSON value in a reply (a ```json fence is tolerated); None when it does not parse."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        return json.loads(body)
    except (json.JSONDecodeError, ValueError):
        return None


def exact_match(prediction: str, reference: str) -> float:
    return float(prediction.strip() == reference.strip())


def normalized_match(prediction: str, reference: str) -> float:
    return float(normalize(prediction) == normalize(reference))


def json_valid(prediction: str, reference: str) -> float:
    return float(parse_json(prediction) is not None)


def field_accuracy(prediction: str, reference: str) -> float:
    """Share of the reference object's top-level fields that the prediction reproduces exactly
    (0 when the prediction is not a JSON object; exact JSON equality when the reference is not an object)."""
    expected, got = parse_json(reference), parse_json(prediction)
    if not isinstance(expected, dict):
        return float(got is not None and got == expected)
    if not isinstance(got, dict) or not expected:
        return float(got == expected)
    return sum(key in got and got[key] == value for key, value in expected.items()) / len(expected)


def schema_metric(schema_path: str) -> Callable[[str, str], float]:
    """1 when the prediction parses and conforms to the JSON Schema (checked with `jsonschema`)."""
    try:
        import jsonschema
    except ImportError:
        raise MissingExtra(Problem("eval.metrics", "json_schema needs the jsonschema package",
                                   "pip install jsonschema")) from None
    path = Path(schema_path).expanduser()
    if not path.is_file():
        raise ConfigError(Problem("eval.json_schema", f"file not found: {path}"))
    try:
        schema = json.loads(path.read_text())
        validator_cls = jsonschema.validators.validator_for(schema)
        validator_cls.check_schema(schema)
    except (json.JSONDecodeError, jsonschema.SchemaError) as exc:
        raise ConfigError(Problem(f"eval.json_schema: {path}", f"not a valid JSON Schema: {exc}")) from None
    validator = validator_cls(schema)

    def conforms(prediction: str, reference: str) -> float:
        value = parse_json(prediction)
        return float(value is not None and validator.is_valid(value))

    return conforms


def chrf(prediction: str, reference: str) -> float:
    """chrF (sacrebleu's implementation), scaled to 0-1."""
    return _sacrebleu().sentence_chrf(prediction, [reference]).score / 100.0


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (Google's rouge-score package)."""
    return _rouge().score(reference, prediction)["rougeL"].fmeasure


def _sacrebleu():
    try:
        import sacrebleu
    except ImportError:
        raise MissingExtra(Problem("eval.metrics", "chrf needs sacrebleu",
                                   "pip install 'ftorch[text-metrics]'")) from None
    return sacrebleu


_ROUGE: list = []


def _rouge():
    if not _ROUGE:
        try:
            from rouge_score import rouge_scorer
        except ImportError:
            raise MissingExtra(Problem("eval.metrics", "rouge_l needs rouge-score",
                                       "pip install 'ftorch[text-metrics]'")) from None
        _ROUGE.append(rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False))
    return _ROUGE[0]


@dataclass(frozen=True)
class TaskMetric:
    """One task metric: its scorer (None where it is computed elsewhere: the schema's validator is built from
    eval.json_schema, the judge asks a model), whether it is pass/fail, and which way is better."""

    name: str
    scorer: Callable[[str, str], float] | None
    binary: bool
    higher_is_better: bool = True
    needs: Callable[[], Any] | None = None  # checks its library up front (a MissingExtra before any generation)


TASK_METRICS: dict[str, TaskMetric] = {m.name: m for m in (
    TaskMetric("exact_match", exact_match, binary=True),
    TaskMetric("normalized_match", normalized_match, binary=True),
    TaskMetric("json_valid", json_valid, binary=True),
    TaskMetric("json_schema", None, binary=True),
    TaskMetric("field_accuracy", field_accuracy, binary=False),
    TaskMetric("chrf", chrf, binary=False, needs=_sacrebleu),
    TaskMetric("rouge_l", rouge_l, binary=False, needs=_rouge),
    TaskMetric("judge", None, binary=False),
)}


def is_binary(metric: str) -> bool:
    """Whether a task metric is pass/fail (Wilson intervals, McNemar) rather than graded (bootstrap)."""
    entry = TASK_METRICS.get(metric)
    return entry is not None and entry.binary


def build_scorers(metrics: list[str], json_schema: str | None) -> dict[str, Callable[[str, str], float]]:
    """The chosen metrics (the judge aside), checked up front (a missing library or schema fails before any
    generation)."""
    scorers: dict[str, Callable[[str, str], float]] = {}
    for name in metrics:
        entry = TASK_METRICS[name]
        if name == "json_schema":  # the schema refuses metric json_schema without eval.json_schema
            scorers[name] = schema_metric(json_schema or "")
        elif entry.scorer is not None:
            if entry.needs is not None:
                entry.needs()
            scorers[name] = entry.scorer
    return scorers
