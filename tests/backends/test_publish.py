"""Publishing the trained adapter under DDP: every rank reaches the save, rank 0 alone writes (the others must not
write into the folder rank 0 is about to rename: CI once failed on exactly that race)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftorch.backends.hf import publish
from ftorch.run.rundir import RunDir


class FakeTrainer:
    def __init__(self, rank: int):
        self.rank = rank
        self.model = object()

    def is_world_process_zero(self) -> bool:
        return self.rank == 0


class FakeTokenizer:
    def save_pretrained(self, folder: str) -> None:
        (Path(folder) / "tokenizer.json").write_text("{}")


@pytest.mark.parametrize("collective", [False, True])
def test_other_ranks_write_nothing(tmp_path, collective):
    run = RunDir(tmp_path / "run", writes=False)  # as the DDP worker gives ranks other than 0
    run.path.mkdir(parents=True)
    calls = []

    def save_model(folder: Path) -> None:
        calls.append(folder)

    checked = publish.publish_trained(FakeTrainer(rank=1), run, FakeTokenizer(), "base", save_model,
                                  collective=collective)
    assert checked is None
    assert len(calls) == (1 if collective else 0)  # a collective save must be reached by every rank
    assert not run.adapter.exists() and not (run.path / ".adapter.partial").exists()


def test_rank_zero_saves_publishes_and_checks(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run")
    run.path.mkdir(parents=True)
    monkeypatch.setattr(publish, "reload_check", lambda *args, **kwargs: {"matches_trained": True})

    def save_model(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "adapter_model.safetensors").write_bytes(b"weights")

    checked = publish.publish_trained(FakeTrainer(rank=0), run, FakeTokenizer(), "base", save_model)
    assert checked == {"matches_trained": True}
    assert sorted(p.name for p in run.adapter.iterdir()) == ["adapter_model.safetensors", "tokenizer.json"]
    assert not (run.path / ".adapter.partial").exists()
    assert "reload check" in run.log.read_text()
