"""The house style of the shipped `style` task, checked by code: python datasets/style/style_rules.py FILE.jsonl

The oracle the tests use to grade rewrites (it is not part of the ftorch package, and no judge sees it). A reply
in the house style:

- greeting:   its first line is exactly "Hello,";
- sign_off:   its last line is exactly "Kind regards, the Support Team";
- british:    no American spelling from AMERICAN (color, organize, center, canceled, license as a noun, ...);
- no_exclaim: no exclamation mark anywhere;
- sentences:  one to three sentences between the greeting and the sign-off;
- words:      no banned word from BANNED (unfortunately, ASAP, guys, problem, cheap, ...).

`check(text)` gives each rule's result, `score(text)` the share of rules met, and `facts_kept(source, rewrite)`
whether every amount, date, order or reference number and other figure of the source is in the rewrite.

Limits, by design of the data: sentences end at ".", "?" or "!" followed by a space or a line end (so "$4.99"
is one word, but an abbreviation such as "e.g. " would end a sentence); "license" and "licenses" are always
taken for the noun (the verb is spelt "license" in British English too, and the data never uses it).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

GREETING = "Hello,"
SIGN_OFF = "Kind regards, the Support Team"
RULES = ("greeting", "sign_off", "british", "no_exclaim", "sentences", "words")
MAX_SENTENCES = 3

# American spelling -> British spelling, every inflected form the data uses (whole words, any case).
AMERICAN = {
    "color": "colour", "colors": "colours", "colored": "coloured",
    "organize": "organise", "organized": "organised", "organizing": "organising",
    "center": "centre", "centers": "centres",
    "canceled": "cancelled", "canceling": "cancelling",
    "license": "licence", "licenses": "licences",
    "favorite": "favourite", "favorites": "favourites",
    "customize": "customise", "customized": "customised",
    "authorize": "authorise", "authorized": "authorised",
    "apologize": "apologise",
    "recognize": "recognise", "recognized": "recognised",
    "catalog": "catalogue",
    "behavior": "behaviour",
    "fulfillment": "fulfilment",
    "gray": "grey",
}
# Banned word or phrase -> what the house style says instead (whole words, any case). "unfortunately" opening a
# sentence becomes "I'm sorry that ..."; anywhere else it is dropped.
BANNED = {
    "unfortunately": "I'm sorry that",
    "asap": "as soon as possible",
    "guys": "everyone",
    "problem": "issue", "problems": "issues",
    "cheap": "affordable", "cheaper": "more affordable",
    "awesome": "great",
    "hassle": "inconvenience",
    "fyi": "for your information",
    "kindly": "please",
    "glitch": "fault",
    "super": "very",
}

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
_AMERICAN = re.compile(r"\b(" + "|".join(AMERICAN) + r")\b", re.IGNORECASE)
_BANNED = re.compile(r"\b(" + "|".join(BANNED) + r")\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.?!])[\"')\]]*\s+")
# a figure: an amount ($12.50), an order number (#48213), a reference (RF20931), a count (14), a version (4.2.1)
_FIGURE = re.compile(r"[$#]?[A-Z]*\d+(?:[.,:/]\d+)*%?")
_DATE = re.compile(r"\b(?:" + "|".join(MONTHS) + r") \d{1,2}\b")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines()]


def body(text: str) -> str:
    """The text between the greeting and the sign-off (each removed only where it is in its place)."""
    lines = _lines(text)
    if lines and lines[0] == GREETING:
        lines = lines[1:]
    if lines and lines[-1] == SIGN_OFF:
        lines = lines[:-1]
    return " ".join(line for line in lines if line)


def sentences(text: str) -> list[str]:
    return [part for part in _SENTENCE_END.split(text.strip()) if part.strip()]


def american_words(text: str) -> list[str]:
    return [m.group(0) for m in _AMERICAN.finditer(text)]


def banned_words(text: str) -> list[str]:
    return [m.group(0) for m in _BANNED.finditer(text)]


def check(text: str) -> dict[str, bool]:
    """Each house-style rule (RULES) and whether `text` meets it."""
    lines = _lines(text)
    return {
        "greeting": bool(lines) and lines[0] == GREETING,
        "sign_off": len(lines) > 1 and lines[-1] == SIGN_OFF,
        "british": not american_words(text),
        "no_exclaim": "!" not in text,
        "sentences": 1 <= len(sentences(body(text))) <= MAX_SENTENCES,
        "words": not banned_words(text),
    }


def score(text: str) -> float:
    """The share of the house-style rules that `text` meets, from 0.0 to 1.0."""
    results = check(text)
    return sum(results.values()) / len(results)


def facts(text: str) -> set[str]:
    """The figures (amounts, order and reference numbers, counts) and dates ("March 14") in `text`."""
    found = {m.group(0).rstrip(".,:/") for m in _FIGURE.finditer(text)}
    return found | {m.group(0) for m in _DATE.finditer(text)}


def facts_kept(source: str, rewrite: str) -> bool:
    """Whether every figure and date of the source answer is also in the rewrite."""
    return facts(source) <= facts(rewrite)


def main(argv: list[str]) -> int:
    """Score the assistant answers of a chat JSONL file: the mean score and each rule's pass rate."""
    rows = [json.loads(line) for line in Path(argv[0]).read_text(encoding="utf-8").splitlines() if line.strip()]
    answers = [row["messages"][-1]["content"] for row in rows]
    results = [check(answer) for answer in answers]
    print(f"{len(answers)} answers, mean score {sum(map(score, answers)) / max(len(answers), 1):.3f}")
    for rule in RULES:
        print(f"  {rule:<11} {sum(r[rule] for r in results)}/{len(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
