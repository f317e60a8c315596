"""The error tree. A FtorchError is a user-facing problem: printed as a short block, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

EXIT_BACKEND = 1
EXIT_USER = 2
EXIT_INTERRUPTED = 130


@dataclass
class Problem:
    """One thing wrong: where (a key path or file:line), what, and what to do."""

    where: str
    message: str
    hint: str | None = None

    def render(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text}\n    {self.hint}" if self.hint else text


class FtorchError(Exception):
    exit_code = EXIT_BACKEND
    title = "error"

    def __init__(self, problems: Problem | list[Problem] | str, *, hint: str | None = None):
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = problems
        self.hint = hint
        super().__init__(self.render())

    def render(self, limit: int = 20) -> str:
        lines = [p.render() for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more")
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


class ConfigError(FtorchError):
    exit_code = EXIT_USER
    title = "config error"


class DataError(FtorchError):
    exit_code = EXIT_USER
    title = "data error"


class BackendError(FtorchError):
    exit_code = EXIT_BACKEND
    title = "backend error"


class ModelError(FtorchError):
    """A base model, tokenizer or chat template that cannot be found or loaded: the user's input, exit 2."""

    exit_code = EXIT_USER
    title = "model error"


class MissingExtra(FtorchError):
    exit_code = EXIT_USER
    title = "missing dependency"


class RunInterrupted(BaseException):
    """Raised on SIGTERM so a run unwinds like on Ctrl-C (status 'interrupted')."""


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean X?' hint, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
