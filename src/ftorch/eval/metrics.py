"""Target-task metrics, each a function (prediction, reference) -> score in [0, 1] (chrF and ROUGE-L are
on a 0-1 scale too). Which ones run is chosen per recipe in eval.metrics."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MissingExtra, Problem

_SPACE = re.compile(r"\s+")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_PUNCT = str.maketrans("", "", string.punctuation)
BINARY = {"exact_match", "normalized_match", "json_valid", "json_schema"}


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


SIMPLE: dict[str, Callable[[str, str], float]] = {
    "exact_match": exact_match, "normalized_match": normalized_match, "json_valid": json_valid,
    "field_accuracy": field_accuracy, "chrf": chrf, "rouge_l": rouge_l,
}


def build_scorers(metrics: list[str], json_schema: str | None) -> dict[str, Callable[[str, str], float]]:
    """The chosen metrics, checked up front (a missing library or schema fails before any generation)."""
    scorers = {}
    for name in metrics:
        # the schema refuses metric json_schema without eval.json_schema
        scorers[name] = schema_metric(json_schema or "") if name == "json_schema" else SIMPLE[name]
    if "chrf" in scorers:
        _sacrebleu()
    if "rouge_l" in scorers:
        _rouge()
    return scorers
