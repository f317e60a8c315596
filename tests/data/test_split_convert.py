"""Deterministic splits without leakage; conversions from Alpaca, ShareGPT and CSV with source lines."""

import json

import pytest

from ftorch.data.checks import read_chat_jsonl
from ftorch.data.convert import convert, write_chat
from ftorch.data.profile import normalized_key
from ftorch.data.split import assign, split_file
from ftorch.errors import DataError

from conftest import chat


@pytest.fixture
def many(chat_jsonl):
    rows = [chat(f"question {i}", f"answer {i}") for i in range(200)]
    rows += [chat("QUESTION 7", "answer 7"), chat("question   7", "answer 7")]  # near duplicates of row 7
    return chat_jsonl(rows, "all.jsonl")


def test_split_is_deterministic_and_keeps_duplicates_together(many, tmp_path):
    first = split_file(many, tmp_path / "a", (0.8, 0.1, 0.1), seed=3, fmt="chat")
    second = split_file(many, tmp_path / "b", (0.8, 0.1, 0.1), seed=3, fmt="chat")
    for name in ("train", "validation", "test"):
        assert first.outputs[name].read_bytes() == second.outputs[name].read_bytes()
    assert sum(first.counts.values()) == 202 and 130 < first.counts["train"] < 190
    homes = {}
    for name, path in first.outputs.items():
        for example in read_chat_jsonl(path).examples:
            homes.setdefault(normalized_key(example), set()).add(name)
    assert all(len(places) == 1 for places in homes.values())
    manifest = json.loads((tmp_path / "a" / "split_manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["files"]["test"]["examples"] == first.counts["test"]


def test_split_depends_on_seed_and_is_stable_across_runs():
    assert assign("abc", 0, (0.5, 0.25, 0.25)) == assign("abc", 0, (0.5, 0.25, 0.25))
    spread = {assign(f"k{i}", 1, (0.5, 0.25, 0.25)) for i in range(50)}
    assert spread == {"train", "validation", "test"}
    # pinned: sha256("0:k8") falls in the validation bucket on every machine and Python version
    assert [assign(f"k{i}", 0, (0.8, 0.1, 0.1)) for i in range(10)] == ["train"] * 8 + ["validation", "train"]


def test_split_refuses_to_overwrite(many, tmp_path):
    split_file(many, tmp_path / "a", (0.8, 0.1, 0.1), seed=0, fmt="chat")
    with pytest.raises(DataError, match="would overwrite"):
        split_file(many, tmp_path / "a", (0.8, 0.1, 0.1), seed=0, fmt="chat")


def test_alpaca_array_with_source_lines(tmp_path):
    source = tmp_path / "alpaca.json"
    source.write_text('[\n  {"instruction": "Add", "input": "1 and 2", "output": "3"},\n'
                      '  {"instruction": "Greet", "output": ""},\n  {"output": "x"}\n]\n')
    result = convert(source, "alpaca", system="Be exact.")
    assert [line for line, _ in result.examples] == [2]
    assert result.examples[0][1]["messages"] == [
        {"role": "system", "content": "Be exact."}, {"role": "user", "content": "Add\n\n1 and 2"},
        {"role": "assistant", "content": "3"}]
    where = sorted(p.where for p in result.problems)
    assert where == [f"{source}:3", f"{source}:4"]
    assert any("missing_content" in p.message for p in result.problems)


def test_sharegpt_jsonl_roles(tmp_path):
    source = tmp_path / "sg.jsonl"
    rows = [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
            {"conversations": [{"from": "alien", "value": "?"}]}]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = convert(source, "sharegpt")
    assert result.examples[0][1]["messages"][1] == {"role": "assistant", "content": "hello"}
    assert len(result.problems) == 1 and result.problems[0].where == f"{source}:2"
    assert "alien" in result.problems[0].message


def test_csv_with_multiline_cells_maps_rows_to_lines(tmp_path):
    source = tmp_path / "pc.csv"
    source.write_text('prompt,completion\n"two\nlines",ok\nempty,\n')
    result = convert(source, "csv")
    assert [line for line, _ in result.examples] == [2]
    assert [p.where for p in result.problems] == [f"{source}:4"]
    out = tmp_path / "out.jsonl"
    write_chat(result, out)
    assert read_chat_jsonl(out).examples[0]["messages"][0]["content"] == "two\nlines"
    with pytest.raises(DataError, match="never overwrites"):
        write_chat(result, out)


def test_csv_missing_column_is_named(tmp_path):
    source = tmp_path / "x.csv"
    source.write_text("question,answer\na,b\n")
    result = convert(source, "csv")
    assert "no column 'prompt'" in result.problems[0].message
