"""LLM judges for open-ended answers, on a rubric (conf/rubrics/).

- The rubric judge grades one answer against the reference: pass/fail or 1-5, as a score in [0, 1] (the 'judge'
  metric). A reply without a readable grade scores nothing (None) and is counted, never guessed.
- The pairwise judge compares the tuned answer with the strongest prompt's answer for each test prompt, twice
  with the positions swapped. A win counts only when both orders agree; anything else is a tie. Its biases are
  measured, not assumed away: position consistency (decisions that survive the swap), the share of single-order
  decisions for the first position, and how often it prefers the longer answer.

Every prompt and raw reply is kept (`records`) for judge.jsonl beside the answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .judge_client import CachedJudge, Messages, as_text
from .rubrics import Rubric

_GRADE = re.compile(r"GRADE\s*[:=]\s*\**\s*(PASS|FAIL|[1-5])\b", re.IGNORECASE)
_VERDICT = re.compile(r"VERDICT\s*[:=]\s*\**\s*(A|B|TIE)\b", re.IGNORECASE)
TUNED, PROMPTED, TIE = 1, -1, 0  # a pairwise outcome: which system's answer is better


def _conversation_text(messages: Messages) -> str:
    return "\n".join(f"{m.get('role', '?')}: {as_text(m.get('content'))}" for m in messages)


def _criteria(rubric: Rubric) -> str:
    return "\n".join(f"- {c}" for c in rubric.criteria)


class RubricJudge:
    """Grades answers against the reference on the rubric's scale (or the one eval.judge.scale asks for)."""

    def __init__(self, judge: CachedJudge, rubric: Rubric, scale: str = "rubric"):
        self.judge, self.rubric = judge, rubric
        self.scale = rubric.scale if scale == "rubric" else scale
        self.unreadable = 0
        self.records: list[dict[str, Any]] = []

    def messages(self, prompt: Messages, reference: str, answer: str) -> Messages:
        if self.scale == "pass_fail":
            scale = (f"Grade PASS or FAIL. {self.rubric.pass_fail or 'PASS when every criterion is met.'}\n"
                     "End with one line: GRADE: PASS or GRADE: FAIL")
        else:
            levels = "\n".join(f"{k}: {v}" for k, v in sorted((self.rubric.levels or {}).items()))
            scale = (f"Grade from 1 (fails the rubric) to 5 (fully meets it).\n{levels}\n"
                     "End with one line: GRADE: N (a whole number from 1 to 5)")
        system = (f"{self.rubric.instructions}\n\nCriteria:\n{_criteria(self.rubric)}\n\n{scale}")
        user = (f"Request:\n{_conversation_text(prompt)}\n\nReference answer:\n{reference}\n\n"
                f"Answer to grade:\n{answer}")
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def parse(self, reply: str) -> float | None:
        """The grade as a score in [0, 1], or None when the reply holds no readable grade."""
        found = _GRADE.findall(reply)
        if not found:
            return None
        grade = found[-1].upper()
        if grade in ("PASS", "FAIL"):
            return 1.0 if grade == "PASS" else 0.0
        if self.scale == "pass_fail":
            return 1.0 if int(grade) >= self.rubric.threshold() else 0.0
        return (int(grade) - 1) / 4

    def score_all(self, items: list[tuple[Messages, str, str, dict]],
                  on_batch: Callable[[int], None] | None = None) -> list[float | None]:
        """items: (prompt, reference, answer, what to record with it: line, system)."""
        conversations = [self.messages(p, r, a) for p, r, a, _ in items]
        choices = ("GRADE: PASS", "GRADE: FAIL") if self.scale == "pass_fail" else \
            tuple(f"GRADE: {g}" for g in range(1, 6))
        replies = self.judge.complete_all(conversations, self.judge.cfg.max_new_tokens, on_batch, choices)
        scores = []
        for (_, _, _, tag), messages, reply in zip(items, conversations, replies):
            score = self.parse(reply)
            self.unreadable += score is None
            scores.append(score)
            self.records.append({"kind": "rubric", **tag, "messages": messages, "reply": reply, "score": score})
        return scores


@dataclass
class PairwiseOutcome:
    """One test prompt judged both ways: the decision in each order (the system it preferred, TIE, or None
    when unreadable) and the outcome that counts (a win only when both orders agree)."""

    first: int | None  # tuned shown as A
    second: int | None  # prompted shown as A
    tuned_longer: bool | None  # None when both answers are as long

    @property
    def outcome(self) -> int:
        return self.first if self.first is not None and self.first == self.second and self.first != TIE else TIE

    @property
    def consistent(self) -> bool | None:
        if self.first is None or self.second is None:
            return None
        return self.first == self.second


@dataclass
class PairwiseResult:
    outcomes: list[PairwiseOutcome] = field(default_factory=list)
    unreadable: int = 0

    def labels(self) -> list[int]:
        return [o.outcome for o in self.outcomes]

    def bias(self) -> dict[str, Any]:
        """Position consistency, the first position's share of decided single-order verdicts, and how often
        the longer answer was preferred among decided verdicts where lengths differ."""
        from .stats import wilson_interval

        consistent = [o.consistent for o in self.outcomes if o.consistent is not None]
        decided = [(o.first, True) for o in self.outcomes if o.first not in (None, TIE)] + \
                  [(o.second, False) for o in self.outcomes if o.second not in (None, TIE)]
        first_position = sum((choice == TUNED) == tuned_first for choice, tuned_first in decided)
        lengths = [(o.first, o.tuned_longer) for o in self.outcomes if o.first not in (None, TIE)
                   and o.tuned_longer is not None] + \
                  [(o.second, o.tuned_longer) for o in self.outcomes if o.second not in (None, TIE)
                   and o.tuned_longer is not None]
        longer = sum((choice == TUNED) == tuned_longer for choice, tuned_longer in lengths)
        return {
            "position_consistency": sum(consistent) / len(consistent) if consistent else None,
            "consistency_n": len(consistent),
            "first_position_share": first_position / len(decided) if decided else None,
            "decided": len(decided),
            "longer_preferred": longer / len(lengths) if lengths else None,
            "longer_preferred_ci": wilson_interval(longer, len(lengths)) if lengths else None,
            "length_decided": len(lengths),
        }


class PairwiseJudge:
    """Tuned against the strongest prompt, both orders, on the rubric's criteria."""

    def __init__(self, judge: CachedJudge, rubric: Rubric):
        self.judge, self.rubric = judge, rubric
        self.records: list[dict[str, Any]] = []

    def messages(self, prompt: Messages, reference: str, first: str, second: str) -> Messages:
        system = (f"{self.rubric.instructions}\n\nYou compare two answers, A and B, to the same request on these "
                  f"criteria:\n{_criteria(self.rubric)}\n\nJudge only by the criteria: not by which comes first, "
                  "nor by length. End with one line: VERDICT: A, VERDICT: B or VERDICT: TIE (equally good or "
                  "equally bad).")
        user = (f"Request:\n{_conversation_text(prompt)}\n\nReference answer:\n{reference}\n\n"
                f"Answer A:\n{first}\n\nAnswer B:\n{second}")
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    @staticmethod
    def parse(reply: str, tuned_is_a: bool) -> int | None:
        found = _VERDICT.findall(reply)
        if not found:
            return None
        choice = found[-1].upper()
        if choice == "TIE":
            return TIE
        return TUNED if (choice == "A") == tuned_is_a else PROMPTED

    def compare_all(self, items: list[tuple[Messages, str, str, str, int]],
                    on_batch: Callable[[int], None] | None = None) -> PairwiseResult:
        """items: (prompt, reference, tuned answer, prompted answer, line)."""
        conversations: list[Messages] = []
        for prompt, reference, tuned, prompted, _ in items:
            conversations.append(self.messages(prompt, reference, tuned, prompted))
            conversations.append(self.messages(prompt, reference, prompted, tuned))
        replies = self.judge.complete_all(conversations, self.judge.cfg.max_new_tokens, on_batch,
                                          ("VERDICT: A", "VERDICT: B", "VERDICT: TIE"))
        result = PairwiseResult()
        for index, (_, _, tuned, prompted, line) in enumerate(items):
            first = self.parse(replies[2 * index], tuned_is_a=True)
            second = self.parse(replies[2 * index + 1], tuned_is_a=False)
            result.unreadable += (first is None) + (second is None)
            longer = None if len(tuned) == len(prompted) else len(tuned) > len(prompted)
            outcome = PairwiseOutcome(first, second, longer)
            result.outcomes.append(outcome)
            for order, (shown, decision) in enumerate((("tuned first", first), ("prompted first", second))):
                self.records.append({"kind": "pairwise", "line": line, "order": shown,
                                     "messages": conversations[2 * index + order], "reply": replies[2 * index + order],
                                     "preferred": _name(decision)})
        return result


def _name(decision: int | None) -> str | None:
    return {TUNED: "tuned", PROMPTED: "prompted", TIE: "tie"}.get(decision) if decision is not None else None
