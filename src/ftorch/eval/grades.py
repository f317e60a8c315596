"""Human grades of tuned against the strongest prompt: the ground truth that calibrates the judge.

A person grades in `ftorch review RUN` (the grading view): for a seeded sample of test prompts it shows the two
answers blinded, as A and B in a seeded random order, and records which is better, a tie, or both bad. Grades
live in RUN/grades.jsonl (beside the run, so every later evaluation uses them), appended and fsynced one
decision a line. A grade belongs to the exact pair of answers it judged: its key is a hash of the prompt, the
tuned answer and the prompted answer, so when a re-evaluation produces other answers the old grades no longer
apply (they are not silently reused for answers nobody saw)."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GRADES_FILE = "grades.jsonl"
GRADES = {"tuned": 1, "prompted": -1, "tie": 0, "both_bad": 0}  # the human label as a pairwise outcome


def grade_key(prompt: Any, tuned: str, prompted: str) -> str:
    payload = json.dumps([prompt, tuned, prompted], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def grades_path(run_dir: Path) -> Path:
    return run_dir / GRADES_FILE


def load_grades(run_dir: Path) -> dict[str, str]:
    """key -> the newest grade ("tuned", "prompted", "tie" or "both_bad"); a "clear" record withdraws one."""
    from ..review.store import read_records

    records, _ = read_records(grades_path(run_dir))
    current: dict[str, str] = {}
    for record in records:
        key, grade = record.get("key"), record.get("grade")
        if not isinstance(key, str):
            continue
        if grade == "clear":
            current.pop(key, None)
        elif grade in GRADES:
            current[key] = grade
    return current


def sample(outcomes: Sequence[int], size: int, seed: int) -> list[int]:
    """A seeded sample of test example indices, stratified by the judge's outcome with proportional
    allocation (so the sample stays self-weighting and the PPI estimate unbiased), in a seeded random order."""
    rng = random.Random(seed)
    size = min(size, len(outcomes))
    strata: dict[int, list[int]] = {}
    for index, outcome in enumerate(outcomes):
        strata.setdefault(outcome, []).append(index)
    chosen: list[int] = []
    shares = {k: len(v) * size / len(outcomes) for k, v in strata.items()} if outcomes else {}
    for label, members in sorted(strata.items()):
        rng.shuffle(members)
        chosen += members[:int(shares[label])]
    leftovers = [i for label, members in sorted(strata.items(), key=lambda kv: -(shares[kv[0]] % 1))
                 for i in members[int(shares[label]):int(shares[label]) + 1]]
    chosen += leftovers[:size - len(chosen)]
    rng.shuffle(chosen)
    return chosen


def tuned_shown_first(key: str, seed: int) -> bool:
    """The blinding: whether the tuned answer is shown as A for this pair (seeded, stable across reloads)."""
    return random.Random(f"{seed}:{key}").random() < 0.5
