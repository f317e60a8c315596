"""The run's data.max_line_bytes reaches every reader after training (issue 25, item 3): the held-out task (chat and
preference), the prompting arms' data and the export's system prompt read the same lines the data check and
training read, whether the user lowered the limit or raised it above the default."""

import json
from types import SimpleNamespace

import pytest

from ftorch.config.schema import RunConfig
from ftorch.data.lines import DEFAULT_MAX_LINE_BYTES
from ftorch.eval.arms import split
from ftorch.eval.tasks import load_task
from ftorch.export.ollama import system_prompt

from conftest import chat

LONG = DEFAULT_MAX_LINE_BYTES + 1000  # the length of the long example's answer: over the default limit


def pair(prompt: str, chosen: str, system: str) -> dict:
    return {"input": {"messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}]},
            "preferred_output": [{"role": "assistant", "content": chosen}],
            "non_preferred_output": [{"role": "assistant", "content": "no"}]}


def config(tmp_path, fmt: str, limit: int | None) -> RunConfig:
    """Train and test files of three short examples and four long ones, the long ones with their own system prompt:
    the export's most common system prompt shows whether they were read."""
    make = chat if fmt == "chat" else (lambda q, a, system: pair(q, a, system))
    for name in ("train", "test"):
        rows = [make(f"{name} {i}?", "yes", system="Short.") for i in range(3)]
        rows += [make(f"{name} long?", "x" * LONG, system="Long.") for _ in range(4)]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = {"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl"), "format": fmt}
    if limit:
        data["max_line_bytes"] = limit
    train = {"method": "dpo"} if fmt == "preference" else {}
    return RunConfig.model_validate({"provider": {"name": "peft"}, "model": {"name": "scripted"}, "data": data,
                                     "train": train, "eval": {"few_shot": 0, "validation_limit": 40}})


@pytest.mark.parametrize("fmt", ["chat", "preference"])
@pytest.mark.parametrize("limit, read_long", [(None, False), (LONG + 10_000, True), (1000, False)])
def test_every_reader_after_training_uses_the_runs_line_limit(tmp_path, fmt, limit, read_long):
    cfg = config(tmp_path, fmt, limit)
    held = load_task(cfg).examples
    assert len(held) == (7 if read_long else 3)
    assert any(len(e.reference) == LONG for e in held) is read_long
    arms = split(cfg)  # no data.validation: a slice of train, the rest the shot pool
    assert len(arms.pool) + len(arms.validation) == (7 if read_long else 3)
    assert system_prompt(SimpleNamespace(cfg=cfg)) == ("Long." if read_long else "Short.")  # type: ignore[arg-type]
