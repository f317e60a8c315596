"""Check every data file a run names, before anything is spent; the result feeds plan and manifest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, Problem
from ..schema import DataConfig
from .checks import ChatFile, Issue, read_chat_jsonl
from .manifest import file_entry


def example_hash(example: dict) -> str:
    return hashlib.sha256(json.dumps(example, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass
class DataReport:
    splits: dict[str, ChatFile]

    @property
    def warnings(self) -> list[Issue]:
        return [i for f in self.splits.values() for i in f.issues if i.severity == "warning"]

    def count(self, split: str) -> int:
        return len(self.splits[split].examples) if split in self.splits else 0

    def manifest(self) -> dict:
        return {
            "format": "chat",
            "files": [file_entry(split, f.path, len(f.examples), sum(i.severity == "warning" for i in f.issues))
                      for split, f in self.splits.items()],
            "warnings": [i.to_dict() for i in self.warnings],
        }


def check_data(cfg: DataConfig) -> DataReport:
    """Read and check train/validation/test; raise one DataError listing every problem."""
    problems: list[Problem] = []
    splits: dict[str, ChatFile] = {}
    for split in ("train", "validation", "test"):
        value = getattr(cfg, split)
        if value is None:
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            problems.append(Problem(f"data.{split}", f"file not found: {path}"))
            continue
        chat = read_chat_jsonl(path)
        splits[split] = chat
        problems += [Problem(f"{i.file}:{i.line}", f"[{i.code}] {i.message}") for i in chat.errors]
    problems += _leakage(splits)
    if problems:
        raise DataError(problems, hint="fix the data, then run again (`ftorch data check FILE` lists every problem)")
    return DataReport(splits)


def _leakage(splits: dict[str, ChatFile]) -> list[Problem]:
    if "train" not in splits:
        return []
    seen = {example_hash(e): line for e, line in zip(splits["train"].examples, splits["train"].lines)}
    problems = []
    for split in ("validation", "test"):
        if split not in splits:
            continue
        held_out = splits[split]
        for example, line in zip(held_out.examples, held_out.lines):
            if (train_line := seen.get(example_hash(example))) is not None:
                problems.append(Problem(f"{held_out.path}:{line}", f"[leakage] the same example is in train "
                                        f"({splits['train'].path}:{train_line}); held-out data must be unseen"))
    return problems
