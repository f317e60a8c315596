"""`ftorch data ...` as a user runs it; and `ftorch train` refusing bad data."""

import json

from conftest import ROOT, chat, run_cli


def test_check_good_file_json_output():
    result = run_cli("data", "check", "datasets/quickstart/train.jsonl", "--model", "gpt-4o-mini-2024-07-18", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["format"] == "chat" and report["profile"]["examples"] == 240
    assert report["cost"]["epochs"] == 3 and report["cost"]["usd"] > 0
    assert report["tokenizer"]["exact"] is False


def test_check_bad_file_lists_every_problem_and_exits_1(chat_jsonl):
    path = chat_jsonl([chat("a", "b"), "{oops", {"messages": [{"role": "user", "content": "x"}]}])
    result = run_cli("data", "check", str(path))
    assert result.returncode == 1
    assert "invalid_json" in result.stdout and "no_assistant" in result.stdout
    assert "Traceback" not in result.stderr


def test_check_missing_file_is_a_user_error(tmp_path):
    result = run_cli("data", "check", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2 and "file not found" in result.stderr


def test_split_then_convert_round_trip(tmp_path, chat_jsonl):
    path = chat_jsonl([chat(f"q{i}", f"a{i}") for i in range(40)], "all.jsonl")
    result = run_cli("data", "split", str(path), "--out", str(tmp_path / "parts"), "--json")
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert sum(f["examples"] for f in manifest["files"].values()) == 40
    alpaca = tmp_path / "a.jsonl"
    alpaca.write_text(json.dumps({"instruction": "hi", "output": "hello"}) + "\n")
    result = run_cli("data", "convert", str(alpaca), "--from", "alpaca", "--out", str(tmp_path / "c.jsonl"))
    assert result.returncode == 0 and "wrote 1 chat examples" in result.stdout


def test_train_refuses_bad_data_and_leaves_no_run(tmp_path, chat_jsonl):
    bad = chat_jsonl([chat("a", "b"), {"messages": [{"role": "user", "content": "no answer"}]}])
    runs = tmp_path / "runs"
    result = run_cli("train", f"paths.runs={runs}", f"data.train={bad}")
    assert result.returncode == 2
    assert f"{bad}:2: [no_assistant]" in result.stderr
    assert not runs.exists()


def test_help_lists_data_commands():
    result = run_cli("data", "--help")
    assert result.returncode == 0 and "check" in result.stdout and "convert" in result.stdout
    assert (ROOT / "conf" / "prices" / "openai.yaml").is_file()
