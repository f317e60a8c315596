"""Helpers shared by the judging and grading tests: scripted answers and a scripted pairwise judge, a finished
run with an evaluation that ran the pairwise judge (as `ftorch eval` writes it), and the person who grades by
the house style."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from ftorch.eval.grades import grade_key

from support.fakes import ScriptedGenerator

GOOD = "Hello,\nYour refund is on its way.\nKind regards, the Support Team"


def quality(index: int, system: str) -> bool:
    """Which answers are good: tuned on 30 of 40 prompts, prompted on 12 of 40 (base never)."""
    if system == "tuned":
        return index % 4 != 0
    return system == "prompted" and index % 10 < 3


def answer(index: int, system: str) -> str:
    return GOOD.replace("refund", f"refund #{index}") if quality(index, system) else f"refund #{index} is coming!!"


class Answers(ScriptedGenerator):
    """A generator whose answers are good or bad by (prompt number, system)."""

    def reply(self, conversation):
        index = int(re.search(r"#(\d+)", conversation[-1]["content"]).group(1))
        system = "prompted" if self.current == "base" and len(conversation) > 2 else self.current
        return answer(index, system)

    def prompt_tokens(self, messages):
        return sum(len(str(m["content"]).split()) for m in messages)


class ScriptedJudge:
    """Prefers the answer in the house style; `wrong_every` makes it err on every n-th comparison, `first` makes
    it always pick answer A (a position-biased judge)."""

    hosted = False
    identity = "scripted"

    def __init__(self, wrong_every: int = 0, first: bool = False):
        self.wrong_every, self.first, self.seen = wrong_every, first, 0

    def complete_all(self, conversations, max_tokens, choices=()):
        return [(self._reply(m[-1]["content"]), 10, 3) for m in conversations]

    def _reply(self, text: str) -> str:
        self.seen += 1
        if "Answer A:" in text:
            if self.first:
                return "VERDICT: A"
            a, b = (text.split("Answer A:\n")[1].split("\n\nAnswer B:\n"))
            good_a, good_b = "Kind regards" in a, "Kind regards" in b
            if self.wrong_every and self.seen % self.wrong_every == 0:
                good_a, good_b = good_b, good_a
            return "reasoning...\nVERDICT: " + ("TIE" if good_a == good_b else "A" if good_a else "B")
        answer = text.split("Answer to grade:\n")[1]
        return "GRADE: 5" if "Kind regards" in answer else "GRADE: 1"

    def count_tokens(self, messages):
        return 10


def run_config(train: Path, test: Path, grade_sample: int = 30, target_width: float = 0.2) -> dict:
    """A run's config (as config.yaml holds it) with the scripted pairwise judge."""
    return {"provider": {"name": "peft"}, "model": {"name": "scripted"},
            "data": {"train": str(train), "test": str(test)},
            "eval": {"metrics": ["exact_match"], "headline": "exact_match", "few_shot": 1, "prompt_arms": [],
                     "general": False, "safety": False, "drift": False,
                     "judge": {"model": "scripted-judge", "endpoint": "local", "rubric": "style",
                               "grade_sample": grade_sample, "target_width": target_width}}}


def person(item: dict) -> str:
    """A person grading a blinded item by the house style: "A", "B" or "tie"."""
    good_a, good_b = "Kind regards" in item["A"], "Kind regards" in item["B"]
    return "tie" if good_a == good_b else "A" if good_a else "B"


def make_judged_run(tmp_path: Path, n: int = 40, grade_sample: int = 20, judge_wrong_every: int = 0) -> Path:
    """A finished run whose latest evaluation ran the pairwise judge (judge outcome = the house style's truth,
    flipped on every n-th prompt), with an older evaluation that did not."""
    run = tmp_path / "run"
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    for path in (train, test):
        path.write_text(json.dumps({"messages": [{"role": "user", "content": "Rewrite refund #1"},
                                                 {"role": "assistant", "content": GOOD}]}) + "\n")
    (run / "eval" / "2026-01-01_00-00-00_000000").mkdir(parents=True)
    old = run / "eval" / "2026-01-01_00-00-00_000000"
    (old / "predictions.jsonl").write_text(json.dumps({"line": 1, "input": [], "reference": "", "systems": {}}) + "\n")
    (old / "report.json").write_text(json.dumps({"n": 1, "task": {"headline": "exact_match", "systems": {}}}))
    folder = run / "eval" / "2026-01-02_00-00-00_000000"
    folder.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(run_config(train, test, grade_sample)))
    rows = []
    for i in range(n):
        prompt = [{"role": "user", "content": f"Rewrite refund #{i}"}]
        tuned, prompted = answer(i, "tuned"), answer(i, "prompted")
        truth = 0 if quality(i, "tuned") == quality(i, "prompted") else 1 if quality(i, "tuned") else -1
        judge = -truth if judge_wrong_every and i % judge_wrong_every == 0 and truth else truth
        rows.append({"line": i + 1, "input": prompt, "reference": GOOD,
                     "systems": {s: {"output": answer(i, s), "scores": {"exact_match": 0.0}}
                                 for s in ("base", "prompted", "tuned")},
                     "pairwise": {"key": grade_key(prompt, tuned, prompted), "judge": judge,
                                  "first": judge, "second": judge}})
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = {"n": n, "few_shot": 0, "task": {"headline": "exact_match", "systems": {}}, "verdict": "a verdict",
              "files": {"predictions": "predictions.jsonl"}}
    (folder / "report.json").write_text(json.dumps(report))
    return run
