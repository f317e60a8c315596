"""Instruction following, verified by code: ordinary prompts carrying one to three instructions ("in at most 40
words", "all in lowercase") that checker functions verify. Scores come at two levels: strict prompt-level (every
check passes) and instruction-level (the fraction that pass). Stdlib only, deterministic.

How text is measured (shared by all checkers):

* Words are runs of letters and digits, joined by inner apostrophes or hyphens: "don't", "tic-tac-toe" and "42"
  are one word each; punctuation and markdown markers are not words; "3.5" counts as two words.
* Sentences end at one or more of ``. ! ? …`` (optionally followed by closing quotes or brackets) that are
  followed by whitespace or the end of the text, and at blank lines; a piece without a letter or digit is not a
  sentence. Single line breaks do not end a sentence, so a heading without a full stop merges with the sentence
  below it. Abbreviations such as "e.g. this" count as a sentence end.
* Paragraphs are the non-blank blocks left after splitting the stripped text at blank lines (lines holding only
  whitespace count as blank).
* Bullets are lines that start, after any indentation, with "- " or "* "; numbered items are lines that start
  with digits followed by "." or ")" and a space.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

SUITE_RESOURCE = "assets/eval/instructions.jsonl"

WORD_RE = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
SENTENCE_BREAK_RE = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)|\n[ \t]*\n")
PARAGRAPH_BREAK_RE = re.compile(r"\n[ \t]*\n")
BULLET_RE = re.compile(r"^[ \t]*[-*] +\S", re.MULTILINE)
NUMBERED_RE = re.compile(r"^[ \t]*\d+[.)] +\S", re.MULTILINE)
CODE_FENCE_RE = re.compile(r"\A```[A-Za-z]*[ \t]*\n(.*)\n```\Z", re.DOTALL)
# Words a Title Case line may leave in lowercase (never its first word).
MINOR_WORDS = frozenset(["a", "an", "and", "as", "at", "but", "by", "for", "from", "in", "into", "nor", "of", "on",
                         "or", "over", "the", "to", "vs", "with"])
OPENING_QUOTES = ('"', "“")
CLOSING_QUOTES = ('"', "”")


# ---- measuring ----

def split_words(text: str) -> list[str]:
    """The words of `text` (see the module docstring)."""
    return WORD_RE.findall(text)


def split_sentences(text: str) -> list[str]:
    """The sentences of `text` (end punctuation dropped): pieces between sentence ends with a letter or digit."""
    return [piece.strip() for piece in SENTENCE_BREAK_RE.split(text) if WORD_RE.search(piece)]


def split_paragraphs(text: str) -> list[str]:
    """The paragraphs of `text`: non-blank blocks separated by blank lines."""
    return [block.strip() for block in PARAGRAPH_BREAK_RE.split(text.strip()) if block.strip()]


def has_whole_word(text: str, word: str) -> bool:
    """Whether `word` (or phrase) occurs in `text`, case-insensitive, not as part of a longer word."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


def strip_code_fence(text: str) -> str:
    """`text` without one surrounding markdown code fence (```json ... ```), if it has one."""
    fenced = CODE_FENCE_RE.match(text.strip())
    return fenced.group(1) if fenced else text.strip()


# ---- checkers: each takes the response and the check's params, and returns pass/fail ----

def max_words(response: str, value: int) -> bool:
    return len(split_words(response)) <= value


def min_words(response: str, value: int) -> bool:
    return len(split_words(response)) >= value


def max_chars(response: str, value: int) -> bool:
    """Characters of the response with surrounding whitespace stripped."""
    return len(response.strip()) <= value


def include_words(response: str, words: Iterable[str]) -> bool:
    return all(has_whole_word(response, word) for word in words)


def exclude_words(response: str, words: Iterable[str]) -> bool:
    return not any(has_whole_word(response, word) for word in words)


def lowercase(response: str) -> bool:
    """Some letters, and none of them uppercase."""
    return any(char.isalpha() for char in response) and not any(char.isupper() for char in response)


def uppercase(response: str) -> bool:
    """Some letters, and none of them lowercase."""
    return any(char.isalpha() for char in response) and not any(char.islower() for char in response)


def bullet_count(response: str, value: int) -> bool:
    return len(BULLET_RE.findall(response)) == value


def numbered_count(response: str, value: int) -> bool:
    return len(NUMBERED_RE.findall(response)) == value


def paragraph_count(response: str, value: int) -> bool:
    return len(split_paragraphs(response)) == value


def json_object(response: str, keys: Iterable[str] = ()) -> bool:
    """The whole response (one surrounding code fence allowed) parses as a JSON object holding every key."""
    try:
        parsed = json.loads(strip_code_fence(response))
    except json.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and all(key in parsed for key in keys)


def starts_with(response: str, value: str) -> bool:
    """Case-sensitive, after leading whitespace."""
    return response.lstrip().startswith(value)


def ends_with(response: str, value: str) -> bool:
    """Case-sensitive, before trailing whitespace."""
    return response.rstrip().endswith(value)


def no_commas(response: str) -> bool:
    return "," not in response and "，" not in response


def sentence_count_max(response: str, value: int) -> bool:
    return len(split_sentences(response)) <= value


def title_case_first_line(response: str) -> bool:
    """The first non-blank line has words, each starting with a capital or a digit; minor words such as "of" or
    "the" may stay lowercase except as the first word. Markdown marks (#, **) and quotes are ignored."""
    first_line = next((line for line in response.splitlines() if line.strip()), "")
    line_words = split_words(first_line)
    return bool(line_words) and all(
        word[0].isupper() or word[0].isdigit() or (index > 0 and word.lower() in MINOR_WORDS)
        for index, word in enumerate(line_words))


def quoted(response: str) -> bool:
    """The stripped response starts and ends with a double quote (straight or curly) and has text inside."""
    text = response.strip()
    return len(text) > 2 and text.startswith(OPENING_QUOTES) and text.endswith(CLOSING_QUOTES)


def contains_number(response: str) -> bool:
    """At least one digit (numbers spelled out in words do not count)."""
    return any(char.isdigit() for char in response)


# ---- registry and validation ----

def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def is_word_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(is_text(word) for word in value)


def is_key_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(is_text(key) for key in value)


PARAM_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "count": (is_count, "a positive integer"),
    "text": (is_text, "a non-empty string"),
    "words": (is_word_list, "a non-empty list of non-empty strings"),
    "keys": (is_key_list, "a list of non-empty strings"),
}


@dataclass(frozen=True)
class CheckType:
    """A checker and the params it takes: name -> kind (a key of PARAM_KINDS)."""

    verify: Callable[..., bool]
    required: Mapping[str, str] = field(default_factory=dict)
    optional: Mapping[str, str] = field(default_factory=dict)


CHECK_TYPES: dict[str, CheckType] = {
    "max_words": CheckType(max_words, {"value": "count"}),
    "min_words": CheckType(min_words, {"value": "count"}),
    "max_chars": CheckType(max_chars, {"value": "count"}),
    "include_words": CheckType(include_words, {"words": "words"}),
    "exclude_words": CheckType(exclude_words, {"words": "words"}),
    "lowercase": CheckType(lowercase),
    "uppercase": CheckType(uppercase),
    "bullet_count": CheckType(bullet_count, {"value": "count"}),
    "numbered_count": CheckType(numbered_count, {"value": "count"}),
    "paragraph_count": CheckType(paragraph_count, {"value": "count"}),
    "json_object": CheckType(json_object, optional={"keys": "keys"}),
    "starts_with": CheckType(starts_with, {"value": "text"}),
    "ends_with": CheckType(ends_with, {"value": "text"}),
    "no_commas": CheckType(no_commas),
    "sentence_count_max": CheckType(sentence_count_max, {"value": "count"}),
    "title_case_first_line": CheckType(title_case_first_line),
    "quoted": CheckType(quoted),
    "contains_number": CheckType(contains_number),
}


@dataclass(frozen=True)
class Check:
    """One instruction of a prompt. Params are kept as sorted (name, value) pairs, lists as tuples, so the
    whole Instruction stays immutable and hashable."""

    type: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class Instruction:
    id: str
    prompt: str
    checks: tuple[Check, ...]


def _param_error(check_type: str, params: Mapping[str, Any]) -> str | None:
    spec = CHECK_TYPES.get(check_type)
    if spec is None:
        return f"unknown check type {check_type!r}"
    missing = sorted(set(spec.required) - set(params))
    unknown = sorted(set(params) - set(spec.required) - set(spec.optional))
    if missing or unknown:
        return f"check {check_type!r}: missing params {missing}, unknown params {unknown}"
    for name, value in params.items():
        accepts, description = PARAM_KINDS[{**spec.required, **spec.optional}[name]]
        if not accepts(value):
            return f"check {check_type!r}: param {name!r} must be {description}, got {value!r}"
    return None


def _parse_check(record: Any) -> Check:
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        raise ValueError(f"a check must be an object with a string 'type', got {record!r}")
    params = {name: value for name, value in record.items() if name != "type"}
    error = _param_error(record["type"], params)
    if error:
        raise ValueError(error)
    frozen = {name: tuple(value) if isinstance(value, list) else value for name, value in params.items()}
    return Check(record["type"], tuple(sorted(frozen.items())))


def parse_instruction(record: Mapping[str, Any]) -> Instruction:
    """An Instruction from one suite record; ValueError (naming the id) when the record is malformed."""
    item_id = record.get("id", "<no id>")
    try:
        if not is_text(record.get("id")) or not is_text(record.get("prompt")):
            raise ValueError("'id' and 'prompt' must be non-empty strings")
        raw_checks = record.get("checks")
        if not isinstance(raw_checks, list) or not raw_checks:
            raise ValueError("'checks' must be a non-empty list")
        return Instruction(record["id"], record["prompt"], tuple(_parse_check(raw) for raw in raw_checks))
    except ValueError as error:
        raise ValueError(f"instruction {item_id}: {error}") from None


def parse_suite(text: str) -> list[Instruction]:
    """Instructions from JSONL text (blank lines skipped); ValueError on bad JSON, bad records or duplicate ids."""
    suite: list[Instruction] = []
    seen: set[str] = set()
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"line {line_number}: invalid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"line {line_number}: expected a JSON object")
        instruction = parse_instruction(record)
        if instruction.id in seen:
            raise ValueError(f"instruction {instruction.id}: duplicate id")
        seen.add(instruction.id)
        suite.append(instruction)
    return suite


def load_suite(limit: int | None = None) -> list[Instruction]:
    """The packaged suite, validated, in file order; only the first `limit` prompts when a limit is given."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    suite = parse_suite(resources.files("ftorch").joinpath(SUITE_RESOURCE).read_text(encoding="utf-8"))
    return suite if limit is None else suite[:limit]


# ---- scoring ----

def check(instruction: Instruction, response: str) -> dict[str, bool]:
    """Pass/fail of each check, keyed "type#index" (index = position in the prompt's checks)."""
    return {f"{item.type}#{index}": CHECK_TYPES[item.type].verify(response, **item.kwargs)
            for index, item in enumerate(instruction.checks)}


def score(instruction: Instruction, response: str, *, detail: bool = False):
    """(strict prompt-level: every check passed, instruction-level: fraction of checks passed).

    With ``detail=True``, a third item says what each instruction check said: ``{"type#index": passed}``, in the
    prompt's order (the same results :func:`check` gives; the two aggregates are computed from them)."""
    results = check(instruction, response)
    passed = sum(results.values())
    strict, fraction = passed == len(results), passed / len(results)
    return (strict, fraction, results) if detail else (strict, fraction)


def score_row(instruction: Instruction, response: str) -> dict[str, Any]:
    """One auditable row: the prompt, the answer, both aggregates, the ids of the checks that passed and
    failed, and each check's params (as saved in the evaluation folder's ``general.jsonl``)."""
    strict, fraction, results = score(instruction, response, detail=True)
    return {"id": instruction.id, "prompt": instruction.prompt, "answer": response, "prompt_level": strict,
            "instruction_level": fraction,
            "passed": [name for name, ok in results.items() if ok],
            "failed": [name for name, ok in results.items() if not ok],
            "checks": {f"{item.type}#{index}": item.kwargs for index, item in enumerate(instruction.checks)}}
