"""The rubrics shipped in conf/rubrics/ load with yaml.safe_load and follow the schema of conf/rubrics/README.md;
the style rubric names every rule the style task's oracle (datasets/style/style_rules.py) checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RUBRICS = ROOT / "conf" / "rubrics"
REQUIRED = {"name": str, "description": str, "criteria": list, "scale": str, "instructions": str}
OPTIONAL = {"pass_fail": str, "levels": dict}


def _rubric(name: str) -> dict:
    return yaml.safe_load((RUBRICS / f"{name}.yaml").read_text(encoding="utf-8"))


def test_the_three_rubrics_ship():
    assert sorted(p.stem for p in RUBRICS.glob("*.yaml")) == ["correctness", "format", "style"]


@pytest.mark.parametrize("name", ["correctness", "format", "style"])
def test_rubric_follows_the_schema(name):
    rubric = _rubric(name)
    assert set(rubric) <= {*REQUIRED, "pass_threshold", *OPTIONAL}
    for key, kind in REQUIRED.items():
        assert isinstance(rubric[key], kind) and rubric[key], key
    assert rubric["name"] == name
    assert all(isinstance(c, str) and c.strip() for c in rubric["criteria"])
    assert rubric["scale"] in ("pass_fail", "1-5")
    assert "pass_threshold" in rubric
    if rubric["scale"] == "1-5":
        assert type(rubric["pass_threshold"]) is int and 1 <= rubric["pass_threshold"] <= 5
    else:
        assert rubric["pass_threshold"] is None
    for key, kind in OPTIONAL.items():
        assert isinstance(rubric.get(key, kind()), kind), key
    if "levels" in rubric:
        assert sorted(rubric["levels"]) == [1, 2, 3, 4, 5] and all(map(str.strip, rubric["levels"].values()))
    # the shipped rubrics describe both scales, so either can be asked for
    assert rubric.get("pass_fail") and rubric.get("levels")


def test_style_rubric_names_every_rule_the_oracle_checks():
    spec = importlib.util.spec_from_file_location("_style_rules", ROOT / "datasets" / "style" / "style_rules.py")
    rules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rules)
    rubric = _rubric("style")
    text = " ".join(rubric["criteria"]).lower()
    assert f'"{rules.GREETING.lower()}"' in text and f'"{rules.SIGN_OFF.lower()}"' in text
    assert "exclamation" in text and "three sentences" in text
    stems = {word for word in rules.AMERICAN if not word.endswith(("s", "ed", "ing")) or word == "canceled"}
    for american in stems:
        assert american in text and rules.AMERICAN[american] in text, american
    for banned, preferred in rules.BANNED.items():
        if not banned.endswith(("s", "er")):  # plurals and comparatives follow their word
            assert f'"{banned}"' in text, banned
            assert preferred.lower() in text, preferred
