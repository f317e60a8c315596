"""Profile, token counts (offline), cost estimate."""

import json

import pytest

from ftorch.data.cost import PriceTable, auto_epochs, estimate
from ftorch.data.report import inspect_file
from ftorch.data.tokens import counter_for, encoding_name

from conftest import ROOT, chat


def test_duplicates_and_system_share(chat_jsonl):
    path = chat_jsonl([chat("Hello  there", "hi", system="s"), chat("hello there", "hi", system="s"),
                       chat("Hello  there", "hi", system="s"), chat("other", "x")])
    report = inspect_file(path, "chat", counter_for(None))
    profile = report.profile.to_dict()
    assert profile["examples"] == 4 and profile["exact_duplicates"] == 1 and profile["near_duplicates"] == 1
    assert profile["system_prompt_share"] == 0.75
    codes = {(i.line, i.code) for i in report.warnings}
    assert (3, "duplicate") in codes and (2, "near_duplicate") in codes and (0, "few_examples") in codes


def test_openai_counts_are_offline_and_labelled_estimates():
    counter = counter_for("gpt-4o-mini-2024-07-18", {"max_example_tokens": 65536})
    assert counter.tokenizer.startswith("o200k_base") and not counter.exact and "estimated" in counter.note
    # cookbook: 3 + per message (3 + role + content) ; "hello world" is 2 tokens in o200k_base
    assert counter.count({"messages": [{"role": "user", "content": "hello world"}]}, "chat") == 3 + 3 + 1 + 2
    assert encoding_name("ft:gpt-3.5-turbo-0125:org::abc") == "cl100k_base"
    assert encoding_name("ft:gpt-4.1-mini-2025-04-14:org::abc") == "o200k_base"


def test_too_long_examples_are_errors(chat_jsonl):
    path = chat_jsonl([chat("word " * 50, "ok"), chat("short", "ok")])
    counter = counter_for("gpt-4.1-nano-2025-04-14", {"max_example_tokens": 40})
    report = inspect_file(path, "chat", counter)
    assert [(i.line, i.code) for i in report.errors] == [(1, "too_long")]


def test_preference_tokens_take_the_longer_sequence():
    counter = counter_for(None)
    pair = {"input": {"messages": [{"role": "user", "content": "q"}]},
            "preferred_output": [{"role": "assistant", "content": "short"}],
            "non_preferred_output": [{"role": "assistant", "content": "a much longer rejected answer"}]}
    longer = counter.count({"messages": pair["input"]["messages"] + pair["non_preferred_output"]}, "chat")
    assert counter.count(pair, "preference") == longer


@pytest.mark.slow
def test_local_tokenizer_count_matches_transformers_chat_template():
    from transformers import AutoTokenizer

    from ftorch.config.schema import TinyModel
    from ftorch.tiny import ensure_tiny_model

    folder = ensure_tiny_model(TinyModel(hidden_size=64, intermediate_size=128, num_heads=2))
    counter = counter_for(str(folder))
    assert counter.exact and counter.max_tokens == 512
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for line in (ROOT / "datasets" / "quickstart" / "test.jsonl").read_text().splitlines()[:10]:
        messages = json.loads(line)["messages"]
        expected = len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))
        assert counter.count({"messages": messages}, "chat") == expected


@pytest.mark.parametrize("n,epochs", [(5, 20), (10, 10), (2, 25), (40, 3), (100, 3), (8400, 2), (30000, 1)])
def test_auto_epochs_follow_openai(n, epochs):
    assert auto_epochs(n) == epochs


def test_cost_uses_the_longest_matching_family():
    prices = PriceTable.load(ROOT / "conf" / "prices" / "openai.yaml")
    cost = estimate("gpt-4.1-mini-2025-04-14", 50, 10_000, "auto", prices)
    assert cost.family == "gpt-4.1-mini" and cost.epochs == 3 and cost.billed_tokens == 30_000
    assert cost.usd == pytest.approx(30_000 / 1e6 * 5.0)
    assert estimate("ft:gpt-4o-mini-2024-07-18:org::x", 50, 1000, 2, prices).family == "gpt-4o-mini"
    assert estimate("unknown-model", 50, 1000, 2, prices).usd is None


def test_the_price_table_is_found_from_any_folder(tmp_path, monkeypatch):
    """One home for its location: the schema's default, relative to the project folder, not to the working one."""
    from ftorch.data.cost import price_table_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FTORCH_ROOT", str(ROOT))
    assert price_table_path() == ROOT / "conf" / "prices" / "openai.yaml"
    assert price_table_path("conf/prices/openai.yaml").is_file()
    assert price_table_path(str(tmp_path / "mine.yaml")) == tmp_path / "mine.yaml"
