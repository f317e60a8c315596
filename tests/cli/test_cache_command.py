"""`ftorch cache ls` lists each of ftorch's caches with its entry count and size; `ftorch cache clear NAME`
empties that one only, `ftorch cache clear` all of them; an unknown name is exit 2 with the names there are."""

from __future__ import annotations

import json

from ftorch.eval.answer_cache import open_store

from conftest import run_cli


def _populate(root):
    store = open_store(root / "answers", 1 << 20)
    for i in range(3):
        store.set(f"key{i}", json.dumps({"reply": f"answer {i}", "seconds": 0.5}))
    store.close()
    for i in range(2):
        (root / "judge" / "ab").mkdir(parents=True, exist_ok=True)
        (root / "judge" / "ab" / f"ab{i}.json").write_text('{"reply": "4"}')
    (root / "models" / "tiny-llama-0123").mkdir(parents=True)
    (root / "models" / "tiny-llama-0123" / "model.safetensors").write_bytes(b"w" * 4096)
    (root / "openai_files.json").write_text("{}")  # the upload record: not a cache, never cleared


def _rows(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 4 and cells[0]:
            rows[cells[0]] = cells
    return rows


def test_cache_ls_and_clear(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("FTORCH_CACHE", str(root))
    _populate(root)
    listed = run_cli("cache", "ls")
    assert listed.returncode == 0, listed.stderr
    rows = _rows(listed.stdout)
    assert rows["answers"][2] == "3" and rows["judge"][2] == "2" and rows["tiny"][2] == "1"
    assert rows["tiny"][3] == "4.0 KB" and rows["gguf"][2] == "0"
    cleared = run_cli("cache", "clear", "answers")
    assert cleared.returncode == 0 and "cleared answers: 3 entries" in cleared.stdout
    rows = _rows(run_cli("cache", "ls").stdout)
    assert rows["answers"][2] == "0" and rows["judge"][2] == "2"
    assert run_cli("cache", "clear").returncode == 0
    rows = _rows(run_cli("cache", "ls").stdout)
    assert all(row[2] == "0" for row in rows.values() if row[0] != "name")
    assert (root / "openai_files.json").is_file()
    unknown = run_cli("cache", "clear", "answer")
    assert unknown.returncode == 2 and "no cache named 'answer'" in unknown.stderr
    assert "did you mean 'answers'?" in unknown.stderr and "Traceback" not in unknown.stderr
