"""Every issue code, each from a minimal bad file; the preference format; fast path == detailed path."""

import json

import pytest

from ftorch.data.checks import CODES, check_chat_example, check_preference_example, scan
from ftorch.data.fastpath import accepts

from conftest import chat

GOOD = chat("q", "a")
U = {"role": "user", "content": "q"}
A = {"role": "assistant", "content": "a"}
PAIR = {"input": {"messages": [U]}, "preferred_output": [A],
        "non_preferred_output": [{"role": "assistant", "content": "worse"}]}

# code -> (format, raw bytes of a minimal file that must produce it)
MINIMAL = {
    "bom": ("chat", b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n"),
    "bad_utf8": ("chat", b'{"messages": "\xff"}\n'),
    "blank_line": ("chat", b"\n" + json.dumps(GOOD).encode() + b"\n"),
    "invalid_json": ("chat", b"{nope\n"),
    "too_deep": ("chat", b'{"messages": ' + b"[" * 65 + b"]" * 65 + b"}\n"),
    "not_object": ("chat", b"[1]\n"),
    "empty_file": ("chat", b"\n\n"),
    "unknown_key": ("chat", json.dumps({**GOOD, "metadata": {}}).encode()),
    "missing_messages": ("chat", b'{"messages": []}'),
    "message_not_object": ("chat", json.dumps({"messages": ["hi", A]}).encode()),
    "unknown_message_key": ("chat", json.dumps({"messages": [{**U, "mood": "x"}, A]}).encode()),
    "unknown_role": ("chat", json.dumps({"messages": [{"role": "bot", "content": "x"}, A]}).encode()),
    "missing_content": ("chat", json.dumps({"messages": [{"role": "user", "content": "  "}, A]}).encode()),
    "no_assistant": ("chat", json.dumps({"messages": [U]}).encode()),
    "bad_weight": ("chat", json.dumps({"messages": [U, {**A, "weight": True}]}).encode()),
    "bad_tool_calls": ("chat", json.dumps({"messages": [U, {"role": "assistant", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{no"}}]}]}).encode()),
    "bad_tool_message": ("chat", json.dumps({"messages": [U, {"role": "tool", "content": "1"}, A]}).encode()),
    "bad_tools": ("chat", json.dumps({**GOOD, "tools": {"f": 1}}).encode()),
    "missing_input": ("preference", json.dumps({**PAIR, "input": {}}).encode()),
    "input_not_ending_with_user": ("preference", json.dumps({**PAIR, "input": {"messages": [U, A]}}).encode()),
    "bad_output": ("preference", json.dumps({**PAIR, "preferred_output": A}).encode()),
    "identical_outputs": ("preference", json.dumps({**PAIR, "non_preferred_output": [A]}).encode()),
    "outputs_differ_in_whitespace": ("preference", json.dumps(
        {**PAIR, "preferred_output": [{**A, "content": "a b"}],
         "non_preferred_output": [{**A, "content": " a  b\n"}]}).encode()),
    "nothing_to_learn": ("chat", json.dumps({"messages": [U, {**A, "weight": 0}]}).encode()),
}
# raised with a tokenizer: too_long in tests/data/test_profile.py, truncated in tests/cli/test_user_mistakes.py
PROFILE_CODES = {"too_long", "truncated"}
# needs a line over the limit: line_too_long in tests/data/test_hostile_input.py
HOSTILE_CODES = {"line_too_long"}


def test_every_code_has_a_minimal_file():
    assert set(MINIMAL) | PROFILE_CODES | HOSTILE_CODES == set(CODES)


@pytest.mark.parametrize("code", sorted(MINIMAL))
def test_minimal_file_gives_its_code(code, tmp_path):
    fmt, raw = MINIMAL[code]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(raw)
    found = [i.code for line in scan(path, fmt) for i in line.issues]
    assert code in found
    assert path.read_bytes() == raw  # never modified


def test_good_preference_pair_passes(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(PAIR) + "\n")
    assert [i for line in scan(path, "preference") for i in line.issues] == []


SAMPLES = [GOOD, chat("q", "a", system="s"), {"messages": [U, {**A, "weight": 0}]},
           {"messages": [U, {**A, "weight": 1}]},
           {"messages": [{**U, "weight": 1}, A]}, {"messages": [{"role": "developer", "content": "d"}, U, A]},
           {"messages": [U, {"role": "assistant", "content": " \n"}]}, {"messages": [{**U, "name": "bob"}, A]},
           {"messages": [U]}, {"messages": [A, U]}, {"messages": [{"role": "user", "content": ""}, A]}]
PAIRS = [PAIR, {**PAIR, "input": {"messages": [U, A, U]}}, {**PAIR, "non_preferred_output": [A]},
         {**PAIR, "input": {"messages": [U, A]}}, {**PAIR, "preferred_output": [U]}]


@pytest.mark.parametrize("example", SAMPLES)
def test_fast_path_never_accepts_what_the_detailed_checker_rejects(example):
    clean = not check_chat_example(example, "f", 1)
    line = json.dumps(example).encode()
    for fast in (accepts("chat", [line])[0], accepts("chat", [line, b'{"content": " "}'])[0]):
        assert fast <= clean  # the fast path may defer, never wave through


@pytest.mark.parametrize("pair", PAIRS)
def test_preference_fast_path_agrees(pair):
    clean = not check_preference_example(pair, "f", 1)
    line = json.dumps(pair).encode()
    for fast in (accepts("preference", [line])[0], accepts("preference", [line, b'{"content": " "}'])[0]):
        assert fast <= clean


def test_fast_path_accepts_the_common_case():
    assert accepts("chat", [json.dumps(chat("q", "a", system="s")).encode()]) == [True]
    assert accepts("preference", [json.dumps(PAIR).encode()]) == [True]
