"""The instruction-following suite: every checker on hand-written responses, the packaged suite, scoring, and
validation of malformed records."""

from __future__ import annotations

from collections import Counter

import pytest

from ftorch.eval.instructions import (
    CHECK_TYPES,
    Instruction,
    check,
    load_suite,
    parse_instruction,
    parse_suite,
    score,
    split_paragraphs,
    split_sentences,
    split_words,
)

from support.fakes import LowercaseBase


def one_check(check_type: str, **params) -> Instruction:
    return parse_instruction({"id": "t-1", "prompt": "p", "checks": [{"type": check_type, **params}]})


# (check type, params, a response that passes, a response that fails)
CASES = [
    ("max_words", {"value": 5}, "One two three four five.", "One two three four five six."),
    ("max_words", {"value": 3}, "Don't stop tic-tac-toe!", "Do not stop playing."),
    ("min_words", {"value": 4}, "The cat sat down.", "The cat sat."),
    ("max_chars", {"value": 10}, "  short text  ", "eleven chars"),
    ("include_words", {"words": ["Garlic", "basil"]}, "Add garlic, then BASIL.", "Add garlic and basilisk."),
    ("exclude_words", {"words": ["rain"]}, "Rainbows and drains are fine.", "The Rain fell."),
    ("exclude_words", {"words": ["ice cream"]}, "Ice and cream apart.", "I like ice cream."),
    ("lowercase", {}, "all quiet at 6 am.", "all quiet at 6 AM."),
    ("lowercase", {}, "quiet", "12345"),
    ("uppercase", {}, "GO TEAM GO! 3 CHEERS", "GO TEAM go"),
    ("bullet_count", {"value": 3}, "Intro:\n- one\n* two\n  - three", "- one\n- two\n-three\n**bold**"),
    ("numbered_count", {"value": 2}, "1. Boil water.\n2) Add tea.", "1. Boil water.\n2. Add tea.\n3. Wait."),
    ("paragraph_count", {"value": 2}, "First one.\nStill first.\n\n  \nSecond one.\n", "Only.\nOne paragraph."),
    ("json_object", {}, '{"a": 1}', '[1, 2]'),
    ("json_object", {"keys": ["city", "country"]}, '```json\n{"city": "Oslo", "country": "Norway"}\n```',
     'Here it is: {"city": "Oslo", "country": "Norway"}'),
    ("json_object", {"keys": ["city", "country"]}, '{"city": "Oslo", "country": "Norway", "x": 1}',
     '{"city": "Oslo"}'),
    ("starts_with", {"value": "Dear gardeners,"}, "\n Dear gardeners, welcome.", "dear gardeners, welcome."),
    ("ends_with", {"value": "Stay cool!"}, "Drink water. Stay cool!\n", "Stay cool! Drink water."),
    ("no_commas", {}, "No commas here.", "Well, here is one."),
    ("sentence_count_max", {"value": 2}, "It rains. Is it cold?\n", "It rains. Is it cold? Yes!"),
    ("sentence_count_max", {"value": 1}, '"Patience grows quietly, like a tree."', "First part\n\nsecond part"),
    ("title_case_first_line", {}, "\n# A Guide to Growing 10 Tomatoes\nbody text here", "A guide to Growing Tomatoes"),
    ("title_case_first_line", {}, "**Weekend Trails for Everyone**", "the Weekend Trails"),
    ("quoted", {}, '  "Patience is a quiet strength."  ', 'Patience is "quiet" strength.'),
    ("quoted", {}, "“Curly quotes count too.”", '""'),
    ("contains_number", {}, "Meet at 3 pm.", "Meet at three."),
]


def test_cases_cover_every_check_type():
    assert {case[0] for case in CASES} == set(CHECK_TYPES)


@pytest.mark.parametrize(("check_type", "params", "passing", "failing"), CASES,
                         ids=[f"{case[0]}-{index}" for index, case in enumerate(CASES)])
def test_check_type(check_type, params, passing, failing):
    instruction = one_check(check_type, **params)
    assert check(instruction, passing) == {f"{check_type}#0": True}
    assert check(instruction, failing) == {f"{check_type}#0": False}


def test_counting_rules():
    assert split_words("Don't stop: tic-tac-toe, 42 times — **now**!") == ["Don't", "stop", "tic-tac-toe", "42",
                                                                            "times", "now"]
    assert split_sentences("One. Two?! Three\nstill three... Four") == ["One", "Two", "Three\nstill three", "Four"]
    assert split_sentences("Pi is 3.14 exactly.") == ["Pi is 3.14 exactly"]
    assert split_paragraphs("\n\nA\nB\n\n\n \nC\n") == ["A\nB", "C"]
    assert split_paragraphs("   ") == []


def test_suite_loads_with_a_spread_of_checks():
    suite = load_suite()
    assert 90 <= len(suite) <= 110
    assert len({item.id for item in suite}) == len(suite)
    assert all(item.prompt.strip() and 1 <= len(item.checks) <= 3 for item in suite)
    usage = Counter(item_check.type for item in suite for item_check in item.checks)
    assert set(usage) == set(CHECK_TYPES)
    assert min(usage.values()) >= 3


def test_load_suite_limit():
    assert [item.id for item in load_suite(limit=3)] == ["if-001", "if-002", "if-003"]
    assert load_suite(limit=0) == []
    with pytest.raises(ValueError):
        load_suite(limit=-1)


def test_instructions_are_hashable_and_immutable():
    suite = load_suite(limit=5)
    assert len(set(suite)) == 5
    with pytest.raises(AttributeError):
        suite[0].prompt = "changed"  # type: ignore[misc]


# Hand-written responses that follow every instruction of the prompt with that id.
GOOD_RESPONSES = {
    "if-001": "the sky turns from grey to gold as the sun lifts over the quiet sea. gulls call and the waves "
              "shine like scattered coins.",
    "if-003": "- Water only when the top of the soil is dry\n- Give them bright indirect light\n"
              "- Wipe dust from the leaves\n- Use a pot with drainage holes\n- Feed them lightly in spring",
    "if-006": '{"brand": "Swift", "color": "green", "gears": 21}',
    "if-007": "Dear gardeners, welcome to our club! We meet every Saturday morning by the greenhouse. "
              "Bring gloves and curiosity. Happy planting!",
    "if-010": "Weekend Trails for Everyone\nA short hike can refresh both body and mind. "
              "Here are a few easy routes to try this weekend.",
    "if-056": '"An octopus has 3 hearts and blue blood."',
    "if-097": '```json\n{"species": "cat", "name": "Miso", "age": 4}\n```',
}


@pytest.mark.parametrize("item_id", sorted(GOOD_RESPONSES))
def test_good_responses_score_full_marks(item_id):
    instruction = next(item for item in load_suite() if item.id == item_id)
    assert score(instruction, GOOD_RESPONSES[item_id]) == (True, 1.0)


def test_partial_response_scores_per_instruction():
    instruction = next(item for item in load_suite() if item.id == "if-001")  # max_words 40, lowercase
    results = check(instruction, "The sun rises.")
    assert results == {"max_words#0": True, "lowercase#1": False}
    assert score(instruction, "The sun rises.") == (False, 0.5)


@pytest.mark.parametrize(("record", "message"), [
    ({"id": "bad-1", "prompt": "p", "checks": [{"type": "max_words", "value": "ten"}]}, "positive integer"),
    ({"id": "bad-2", "prompt": "p", "checks": [{"type": "max_words", "value": 0}]}, "positive integer"),
    ({"id": "bad-3", "prompt": "p", "checks": [{"type": "max_words", "value": True}]}, "positive integer"),
    ({"id": "bad-4", "prompt": "p", "checks": [{"type": "max_words"}]}, "missing params"),
    ({"id": "bad-5", "prompt": "p", "checks": [{"type": "lowercase", "value": 3}]}, "unknown params"),
    ({"id": "bad-6", "prompt": "p", "checks": [{"type": "shout"}]}, "unknown check type"),
    ({"id": "bad-7", "prompt": "p", "checks": [{"type": "include_words", "words": []}]}, "non-empty list"),
    ({"id": "bad-8", "prompt": "p", "checks": [{"type": "starts_with", "value": ""}]}, "non-empty string"),
    ({"id": "bad-9", "prompt": "p", "checks": []}, "non-empty list"),
    ({"id": "bad-10", "prompt": "", "checks": [{"type": "quoted"}]}, "non-empty strings"),
    ({"id": "bad-11", "prompt": "p", "checks": ["quoted"]}, "string 'type'"),
])
def test_bad_records_raise_naming_the_id(record, message):
    with pytest.raises(ValueError, match=rf"instruction {record['id']}: .*{message}"):
        parse_instruction(record)


def test_parse_suite_rejects_duplicates_and_bad_json():
    line = '{"id": "x-1", "prompt": "p", "checks": [{"type": "quoted"}]}'
    assert [item.id for item in parse_suite(f"{line}\n\n")] == ["x-1"]
    with pytest.raises(ValueError, match="x-1: duplicate id"):
        parse_suite(f"{line}\n{line}\n")
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        parse_suite(f"{line}\n{{not json\n")


def test_score_detail_keeps_the_aggregates():
    instruction = next(item for item in load_suite() if item.id == "if-001")  # max_words 40, lowercase
    assert score(instruction, "The sun rises.", detail=True) == (False, 0.5, {"max_words#0": True,
                                                                              "lowercase#1": False})
    from ftorch.eval.instructions import score_row

    row = score_row(instruction, "The sun rises.")
    assert row["passed"] == ["max_words#0"] and row["failed"] == ["lowercase#1"]
    assert (row["prompt_level"], row["instruction_level"]) == score(instruction, "The sun rises.")
    assert row["checks"] == {"max_words#0": {"value": 40}, "lowercase#1": {}}
    assert row["id"] == "if-001" and row["prompt"] == instruction.prompt and row["answer"] == "The sun rises."


def test_general_answers_are_saved_beside_the_report(tmp_path):
    import json
    from types import SimpleNamespace

    from ftorch.eval import suite as runner
    from ftorch.eval.report_model import EvalReport

    ev = SimpleNamespace(general=True, safety=False, general_limit=5, max_new_tokens=8,
                         generation_batch=lambda generator: 4)
    section = runner._suites(LowercaseBase(), ev, None)["general"]
    report = EvalReport.model_validate({"n": 0, "task": {"headline": "exact_match", "systems": {}}, "general": section})
    runner.save(tmp_path, runner.Evaluation(report, []))
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["general"]["answers"] == "general.jsonl" and report["files"]["general"] == "general.jsonl"
    rows = [json.loads(line) for line in (tmp_path / "general.jsonl").read_text().splitlines()]
    assert [r["system"] for r in rows] == ["base"] * 5 + ["tuned"] * 5
    assert [r["id"] for r in rows[:5]] == [item.id for item in load_suite(5)]
    for system in ("base", "tuned"):  # the saved rows give back the reported numbers
        mine = [r for r in rows if r["system"] == system]
        assert report["general"][system]["prompt_level"] == pytest.approx(
            sum(r["prompt_level"] for r in mine) / len(mine))
        assert report["general"][system]["instruction_level"] == pytest.approx(
            sum(len(r["passed"]) / (len(r["passed"]) + len(r["failed"])) for r in mine) / len(mine))
    assert all(set(r["passed"]) | set(r["failed"]) == set(r["checks"]) for r in rows)
