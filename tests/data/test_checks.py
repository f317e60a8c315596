"""Chat JSONL checks: every problem, with its line and a stable code; the input is never modified."""

import json

import pytest

from ftorch.config.schema import DataConfig
from ftorch.data.checks import read_chat_jsonl
from ftorch.data.report import check_data
from ftorch.errors import DataError

from conftest import chat


def codes(path):
    return [(i.line, i.code) for i in read_chat_jsonl(path).issues]


def test_clean_file_has_no_issues(chat_jsonl):
    path = chat_jsonl([chat("hi", "hello", system="be brief"), chat("a", "b")])
    result = read_chat_jsonl(path)
    assert result.issues == [] and len(result.examples) == 2


def test_every_problem_is_reported_with_its_line(chat_jsonl):
    rows = [
        chat("ok", "fine"),
        "{not json",
        "[1, 2]",
        {"messages": []},
        {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]},
        {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "y"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 2}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [{"id": "1"}]}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "extra": 1},
        "",
        chat("still", "counted"),
    ]
    path = chat_jsonl(rows)
    before = path.read_bytes()
    found = codes(path)
    assert found == [(2, "invalid_json"), (3, "not_object"), (4, "missing_messages"), (5, "unknown_role"),
                     (6, "missing_content"), (7, "no_assistant"), (8, "bad_weight"), (9, "bad_tool_calls"),
                     (10, "unknown_key"), (11, "blank_line")]
    assert path.read_bytes() == before
    assert len(read_chat_jsonl(path).examples) == 2  # lines 1 and 12; a line with an error is left out


def test_bom_and_bad_utf8(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(chat("a", "b")).encode() + b"\n\xff\xfe\n")
    assert codes(path) == [(1, "bom"), (2, "bad_utf8")]


def test_content_parts_and_tool_calls_are_accepted(chat_jsonl):
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}
    example = {"messages": [
        {"role": "developer", "content": [{"type": "text", "text": "rules"}]},
        {"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "assistant", "content": "it is 42", "weight": 1}],
        "tools": [{"type": "function", "function": {"name": "f"}}]}
    assert codes(chat_jsonl([example])) == []


def test_leakage_between_train_and_test_is_an_error(chat_jsonl):
    train = chat_jsonl([chat("a", "b"), chat("c", "d")], "train.jsonl")
    test = chat_jsonl([chat("c", "d")], "test.jsonl")
    with pytest.raises(DataError) as info:
        check_data(DataConfig(train=str(train), test=str(test)))
    assert "leakage" in info.value.render() and "test.jsonl:1" in info.value.render()
