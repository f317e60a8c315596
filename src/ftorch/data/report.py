"""Checking whole files: `inspect_file` streams one file for `ftorch data check`; `check_data` checks
every file a run names (and leakage between them) before anything is spent."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config.schema import DataConfig
from ..errors import DataError, Problem
from .checks import ChatFile, Issue, read_jsonl, scan
from .lines import DEFAULT_MAX_LINE_BYTES, file_problem
from .manifest import file_entry
from .profile import Profile, exact_key, normalized_key
from .tokens import TokenCounter


@dataclass
class FileReport:
    path: Path
    fmt: str
    issues: list[Issue]
    profile: Profile
    counter: TokenCounter | None = None
    max_length: int | None = None
    truncated: int = 0  # examples longer than max_length
    losing: int = 0  # of them, those that lose trained tokens

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]


def inspect_file(path: Path, fmt: str, counter: TokenCounter | None = None,
                 max_length: int | None = None, visit=None, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> FileReport:
    """Check and profile one file in a single streaming pass (memory grows only with per-example numbers). With a
    max_length, every example longer than it is reported (`truncated`) with what the cut loses. `visit(line,
    tokens)`, when given, sees every line with its token count (None when not counted): `ftorch review` indexes
    the file through it. A line over `max_line_bytes` is reported (`line_too_long`) before any parse or count."""
    from .tokens import truncation_issue

    profile = Profile(str(path), fmt)
    issues: list[Issue] = []
    truncated = losing = 0
    limit = counter.max_tokens if counter else None
    for line in scan(path, fmt, max_line_bytes=max_line_bytes):
        issues += line.issues
        tokens = None
        if line.ok and line.raw:
            example = line.example()
            tokens = counter.count(example, fmt) if counter else None
            profile.add(example, line.number, tokens, limit)
            if counter is not None and max_length is not None and tokens is not None and tokens > max_length \
                    and fmt == "chat":
                kept, cut = counter.truncation(example["messages"], max_length)
                issues.append(truncation_issue(str(path), line.number, tokens, max_length, kept, cut))
                truncated += 1
                losing += cut > 0
        if visit is not None:
            visit(line, tokens)
    issues += profile.too_long + profile.warnings()
    issues.sort(key=lambda i: (i.line, i.severity != "error"))
    return FileReport(path, fmt, issues, profile, counter, max_length, truncated, losing)


@dataclass
class DataReport:
    """The checked files of a run, in memory (training needs the examples)."""

    splits: dict[str, ChatFile]
    profiles: dict[str, Profile] = field(default_factory=dict)

    @property
    def warnings(self) -> list[Issue]:
        found = [i for f in self.splits.values() for i in f.issues if i.severity == "warning"]
        return found + [i for p in self.profiles.values() for i in p.warnings()]

    def count(self, split: str) -> int:
        return len(self.splits[split].examples) if split in self.splits else 0

    def manifest(self) -> dict:
        return {
            "format": "chat",
            "files": [file_entry(split, f.path, len(f.examples), sum(i.severity == "warning" for i in f.issues))
                      for split, f in self.splits.items()],
            "profiles": {split: p.to_dict() for split, p in self.profiles.items()},
            "warnings": [i.to_dict() for i in self.warnings],
        }


def check_data(cfg: DataConfig) -> DataReport:
    """Read and check train/validation/test; raise one DataError listing every problem."""
    problems: list[Problem] = []
    splits: dict[str, ChatFile] = {}
    profiles: dict[str, Profile] = {}
    for split in ("train", "validation", "test"):
        value = getattr(cfg, split)
        if value is None:
            continue
        path = Path(value).expanduser()
        problem = file_problem(path, f"data.{split}")  # missing, a folder, a FIFO, a device
        if problem is not None:
            problems.append(problem)
            continue
        chat = read_jsonl(path, cfg.format, cfg.max_line_bytes)
        if split == "train" and cfg.train_fraction < 1.0:  # a learning curve's trial: a nested, seeded subset
            from .fraction import subset

            chat = subset(chat, cfg.train_fraction, cfg.fraction_seed)
        splits[split] = chat
        profile = Profile(str(path), cfg.format)
        for example, line in zip(chat.examples, chat.lines):
            profile.add(example, line)
        profiles[split] = profile
        problems += [Problem(f"{i.file}:{i.line}", f"[{i.code}] {i.message}") for i in chat.errors]
    problems += leakage(splits)
    if problems:
        raise DataError(problems, hint="fix the data, then run again (`ftorch data check FILE` lists every problem)")
    return DataReport(splits, profiles)


def leakage(splits: dict[str, ChatFile]) -> list[Problem]:
    """A held-out example whose text (up to case and whitespace) is also in train is an error."""
    if "train" not in splits:
        return []
    seen: dict[str, int] = {}
    for example, line in zip(splits["train"].examples, splits["train"].lines):
        seen.setdefault(exact_key(example), line)
        seen.setdefault(normalized_key(example), line)
    problems = []
    for split in ("validation", "test"):
        if split not in splits:
            continue
        held_out = splits[split]
        for example, line in zip(held_out.examples, held_out.lines):
            train_line = seen.get(exact_key(example), seen.get(normalized_key(example)))
            if train_line is not None:
                problems.append(Problem(f"{held_out.path}:{line}", f"[leakage] the same example is in train "
                                        f"({splits['train'].path}:{train_line}); held-out data must be unseen"))
    from .preference import prompt_leakage

    reported = {p.where for p in problems}
    return problems + [p for p in prompt_leakage(splits) if p.where not in reported]
