"""The shipped style task (datasets/style): regenerated exactly, split sizes, no leakage between splits, and the
house-style oracle (style_rules.py) passing every reference rewrite and failing every source answer."""

from __future__ import annotations

import importlib.util
import json
import re
from itertools import combinations
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STYLE = ROOT / "datasets" / "style"
SIZES = {"train": 240, "validation": 40, "test": 60}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_style_{name}", STYLE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rules = _load("style_rules")
GOOD = "Hello,\nYour refund of $12.50 for order #48213 was sent on March 4. It should arrive in 5 days.\n" \
       "Kind regards, the Support Team"


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict]]:
    return {name: [json.loads(line) for line in (STYLE / f"{name}.jsonl").read_text("utf-8").splitlines()]
            for name in SIZES}


def test_generator_regenerates_the_shipped_files_exactly(tmp_path):
    assert _load("make_style").main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.jsonl" for name in SIZES)
    for name in SIZES:
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (STYLE / f"{name}.jsonl").read_bytes(), name


def test_split_sizes_and_shape(splits):
    assert {name: len(rows) for name, rows in splits.items()} == SIZES
    systems = set()
    for rows in splits.values():
        for row in rows:
            assert list(row) == ["messages"]
            assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
            systems.add(row["messages"][0]["content"])
    assert len(systems) == 1 and systems.pop().startswith("Rewrite the support answer in the house style.")


def _masked_words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z']+|#", re.sub(r"[\d$.,]+", "#", text.lower())))


def test_no_prompt_is_shared_or_nearly_shared_between_splits(splits):
    prompts = {name: [row["messages"][1]["content"] for row in rows] for name, rows in splits.items()}
    squeezed = {name: {" ".join(p.lower().split()) for p in ps} for name, ps in prompts.items()}
    assert sum(map(len, squeezed.values())) == sum(SIZES.values())  # no exact duplicate anywhere
    for a, b in combinations(SIZES, 2):
        assert not squeezed[a] & squeezed[b], (a, b)
        # near duplicates: the same words once figures are masked, or 80%+ of the words shared
        for x in map(_masked_words, prompts[a]):
            for y in map(_masked_words, prompts[b]):
                assert len(x & y) / len(x | y) < 0.8, (a, b, sorted(x))


def test_oracle_passes_every_reference_and_fails_every_source(splits):
    for rows in splits.values():
        for row in rows:
            source, rewrite = row["messages"][1]["content"], row["messages"][2]["content"]
            assert all(rules.check(rewrite).values()) and rules.score(rewrite) == 1.0, rewrite
            assert rules.facts_kept(source, rewrite), (source, rewrite)
            assert rules.score(source) < 1.0
            content = {k: v for k, v in rules.check(source).items() if k not in ("greeting", "sign_off")}
            assert not all(content.values()), source  # a style rule beyond the greeting and sign-off is broken


def test_the_sources_break_each_rule_somewhere(splits):
    sources = [row["messages"][1]["content"] for rows in splits.values() for row in rows]
    broken = {rule: sum(not rules.check(s)[rule] for s in sources) for rule in rules.RULES}
    assert all(count >= len(sources) // 5 for count in broken.values()), broken
    assert any(len(rules.sentences(rules.body(s))) <= 3 for s in sources)  # short sources too, not only long ones


@pytest.mark.parametrize("text, broken", [
    (GOOD, set()),
    ("  \n" + GOOD + "\n\n", set()),  # surrounding blank lines and spaces are allowed
    (GOOD.replace("Hello,", "Hi,"), {"greeting"}),
    (GOOD.replace("Hello,\n", "Hello, "), {"greeting"}),
    (GOOD.replace("Kind regards, the Support Team", "Thanks, Support"), {"sign_off"}),
    (GOOD.replace("\nKind regards", " Kind regards"), {"sign_off"}),  # three sentences with it
    (GOOD.replace("sent", "canceled"), {"british"}),
    (GOOD.replace("refund", "favorite refund"), {"british"}),
    (GOOD.replace("5 days.", "5 days!"), {"no_exclaim"}),
    (GOOD.replace("5 days.", "5 days. Thanks. Bye."), {"sentences"}),
    ("Hello,\n\nKind regards, the Support Team", {"sentences"}),
    (GOOD.replace("It should", "Unfortunately it should"), {"words"}),
    (GOOD.replace("arrive", "arrive ASAP"), {"words"}),
    (GOOD.replace("arrive", "arrive, guys,"), {"words"}),
    ("", {"greeting", "sign_off", "sentences"}),
])
def test_each_rule_is_checked_on_its_own(text, broken):
    results = rules.check(text)
    assert list(results) == list(rules.RULES)
    assert {rule for rule, ok in results.items() if not ok} == broken
    assert rules.score(text) == pytest.approx(1 - len(broken) / len(rules.RULES))


def test_british_and_preferred_words_pass():
    text = GOOD.replace("refund", "cancelled licence refund").replace("arrive", "arrive as soon as possible")
    assert all(rules.check(text).values())
    assert all(rules.check(GOOD.replace("It should", "The licensed centre says it should")).values())


def test_facts_kept():
    source = "Unfortunately, order #48213 for $12.50 was delayed! It ships March 4 and takes 5 days. Thanks!"
    assert rules.facts(source) == {"#48213", "$12.50", "March 4", "4", "5"}
    assert rules.facts_kept(source, GOOD)
    assert not rules.facts_kept(source, GOOD.replace("#48213", "#48218"))
    assert not rules.facts_kept(source, GOOD.replace("$12.50", "$12"))
    assert not rules.facts_kept(source, GOOD.replace("March 4", "April 4"))
    assert rules.facts_kept("Thanks for waiting!", GOOD)  # nothing to keep


def test_data_option_points_at_the_three_splits():
    option = yaml.safe_load((ROOT / "conf" / "data" / "style.yaml").read_text(encoding="utf-8"))
    assert option == {name: f"${{ftorch_root:}}/datasets/style/{name}.jsonl" for name in SIZES}
