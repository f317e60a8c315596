"""Every task metric against hand-computed values on fixed predictions."""

import json

import pytest

from ftorch.errors import ConfigError
from ftorch.eval.metrics import build_scorers, field_accuracy, normalize, parse_json, schema_metric

REF = '{"action": "move", "with": "Mia", "day": "Wednesday", "time": "09:30", "topic": null}'


@pytest.mark.parametrize("prediction,expected", [
    (REF, {"exact_match": 1, "normalized_match": 1, "json_valid": 1, "field_accuracy": 1}),
    ("  " + REF + "\n", {"exact_match": 1, "normalized_match": 1, "json_valid": 1, "field_accuracy": 1}),
    ('{"action":"move","with":"Mia","day":"Wednesday","time":"09:30","topic":null}',
     {"exact_match": 0, "normalized_match": 0, "json_valid": 1, "field_accuracy": 1}),
    ('{"action": "move", "with": "Mia", "day": "Friday", "time": "9:30", "topic": null}',
     {"exact_match": 0, "normalized_match": 0, "json_valid": 1, "field_accuracy": 3 / 5}),
    ('```json\n{"action": "cancel"}\n```', {"exact_match": 0, "json_valid": 1, "field_accuracy": 0}),
    ('{"action": "move", "with": "Mia"', {"exact_match": 0, "json_valid": 0, "field_accuracy": 0}),
    ("", {"exact_match": 0, "normalized_match": 0, "json_valid": 0, "field_accuracy": 0}),
])
def test_json_task_metrics(prediction, expected):
    scorers = build_scorers(["exact_match", "normalized_match", "json_valid", "field_accuracy"], None)
    for metric, value in expected.items():
        assert scorers[metric](prediction, REF) == pytest.approx(value), metric


def test_normalized_match_ignores_case_punctuation_and_space():
    assert normalize("  Hello,   World! ") == "hello world"
    scorers = build_scorers(["normalized_match", "exact_match"], None)
    assert scorers["normalized_match"]("Paris.", "paris") == 1.0
    assert scorers["exact_match"]("Paris.", "paris") == 0.0


def test_field_accuracy_for_non_object_references():
    assert field_accuracy("[1, 2]", "[1, 2]") == 1.0
    assert field_accuracy("[1]", "[1, 2]") == 0.0
    assert parse_json("not json") is None


def test_json_schema_conformance(tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}))
    conforms = schema_metric(str(schema))
    assert conforms('{"a": 1}', "") == 1.0
    assert conforms('{"a": "1"}', "") == 0.0
    assert conforms("{", "") == 0.0
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": 12}')
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        schema_metric(str(bad))
    with pytest.raises(ConfigError, match="file not found"):
        schema_metric(str(tmp_path / "missing.json"))


def test_text_metrics_from_maintained_libraries():
    scorers = build_scorers(["chrf", "rouge_l"], None)
    assert scorers["chrf"]("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert scorers["rouge_l"]("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    # ROUGE-L F1 by hand: LCS("the cat sat", "the cat was sat") = 3 -> P = 3/3, R = 3/4, F1 = 6/7
    assert scorers["rouge_l"]("the cat sat", "the cat was sat") == pytest.approx(6 / 7)
    assert 0.0 < scorers["chrf"]("the cat", "the cat sat on the mat") < 1.0
