"""The grading view of `ftorch review RUN`: a person grades the tuned answer against the strongest prompt's on a
seeded sample of test prompts, blinded, and the grades calibrate the pairwise judge (eval/judged.py).

The sample is eval/grades.py's `sample` over the judge's outcomes of the run's latest evaluation that ran the
pairwise judge (eval.judge.grade_sample prompts, seeded by eval.seed, proportionally stratified). Each item shows
the prompt, the reference and the two answers as A and B, in the order `tuned_shown_first` gives: what this
module sends the page never says which answer is tuned, nor what the judge decided. A grade ("A", "B", "tie",
"both_bad"; "clear" withdraws it) is mapped back to tuned/prompted and appended, fsynced, to RUN/grades.jsonl
(review/store.append_record: a write the disk refuses is rolled back and reported, never acknowledged). Grades
are keyed by the exact prompt and answers, so they survive restarts and re-evaluations that give the same
answers, and every later `ftorch eval RUN` uses them.

The page's statistics line, from the judge's outcomes on every prompt and the grades so far (eval/judge_stats):
agreement between judge and person (raw, Cohen's kappa), the prediction-powered interval's width, and how many
more grades would narrow it to eval.judge.target_width."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.schema import EvalConfig
from ..eval.grades import grades_path, load_grades, sample, tuned_shown_first
from ..eval.judge_stats import agreement, grades_for_width, ppi_mean
from ..eval.judged import THREE_WAY, calibration_inputs
from . import store

CHOICES = ("A", "B", "tie", "both_bad", "clear")
AGREEMENT_RESAMPLES = 500  # the kappa interval on the page (the report's uses eval/judge_stats' default)


class NotGradable(LookupError):
    """This run has no evaluation the grading view can show (the reason is the page's message)."""


def _rows(folder: Path) -> list[dict]:
    """The evaluation's prediction rows, when every one carries the pairwise judge's outcome; else []."""
    report = folder / "report.json"
    try:
        files = json.loads(report.read_text()).get("files") or {}
        path = folder / str(files.get("predictions", "predictions.jsonl"))
        with path.open(encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
    except (OSError, ValueError, AttributeError):
        return []
    ok = rows and all(isinstance(r, dict) and isinstance(r.get("pairwise"), dict)
                      and isinstance(r["pairwise"].get("key"), str) and r["pairwise"].get("judge") in THREE_WAY
                      for r in rows)
    return rows if ok else []


def graded_evaluation(run_dir: Path, folder: Path | None = None) -> tuple[Path, list[dict]]:
    """The newest finished evaluation of `run_dir` that ran the pairwise judge (or only `folder`, when the
    review was opened on an evaluation folder), with its prediction rows."""
    if folder is not None:
        candidates = [folder]
    else:
        evals = run_dir / "eval"
        candidates = sorted((p for p in evals.glob("*") if (p / "report.json").is_file()), reverse=True) \
            if evals.is_dir() else []
    for candidate in candidates:
        rows = _rows(candidate)
        if rows:
            return candidate, rows
    raise NotGradable("no evaluation of this run ran the pairwise judge (set eval.judge.model and run "
                      f"ftorch eval {run_dir})")


def _eval_config(run_dir: Path, folder: Path) -> EvalConfig:
    """The eval settings that evaluation ran with (report.json keeps them, overrides included); for an
    evaluation that did not record them, the run's config.yaml."""
    from pydantic import ValidationError

    from ..errors import ConfigError
    from ..run.rundir import RunDir

    try:
        recorded = json.loads((folder / "report.json").read_text()).get("config")
        if isinstance(recorded, dict) and isinstance(recorded.get("judge"), dict):
            return EvalConfig.model_validate(recorded)
    except (OSError, ValueError, ValidationError, AttributeError):
        pass
    try:
        return RunDir(run_dir).config().eval
    except ConfigError as exc:
        raise NotGradable(f"cannot read this run's eval settings: {exc}") from None


@dataclass
class Grading:
    """The grading sample of one evaluation, and the grades of the run."""

    run_dir: Path
    folder: Path
    rows: list[dict]
    seed: int
    size: int
    target_width: float
    min_kappa: float
    chosen: list[int] = field(default_factory=list)  # indices into rows, in the order the page shows them
    repaired: str = ""  # a torn last line of grades.jsonl, cut off on opening (store.repair_tail)

    @classmethod
    def open(cls, run_dir: Path, folder: Path | None = None) -> Grading:
        folder, rows = graded_evaluation(run_dir, folder)
        ev = _eval_config(run_dir, folder)
        grading = cls(run_dir, folder, rows, ev.seed, ev.judge.grade_sample, ev.judge.target_width,
                      ev.judge.min_kappa)
        grading.chosen = sample([r["pairwise"]["judge"] for r in rows], ev.judge.grade_sample, ev.seed)
        grading.repaired = store.repair_tail(grades_path(run_dir))
        return grading

    @property
    def file(self) -> Path:
        return grades_path(self.run_dir)

    def _key(self, index: int) -> str:
        return self.rows[index]["pairwise"]["key"]

    def _answers(self, index: int) -> tuple[str, str, bool]:
        """(answer A, answer B, whether A is the tuned one)."""
        systems = self.rows[index].get("systems") or {}
        tuned = str((systems.get("tuned") or {}).get("output", ""))
        prompted = str((systems.get("prompted") or {}).get("output", ""))
        first = tuned_shown_first(self._key(index), self.seed)
        return (tuned, prompted, first) if first else (prompted, tuned, first)

    def _shown(self, index: int, grade: str | None) -> str | None:
        """A stored grade as the page sees it: tuned/prompted become A/B for this item's order."""
        if grade in (None, "tie", "both_bad"):
            return grade
        tuned_first = tuned_shown_first(self._key(index), self.seed)
        return "A" if (grade == "tuned") == tuned_first else "B"

    def item(self, position: int, grades: dict[str, str]) -> dict:
        """The blinded item at `position` (0-based) of the sample: nothing in it says which answer is tuned."""
        index = self.chosen[position]
        row = self.rows[index]
        a, b, _ = self._answers(index)
        return {"item": str(position + 1), "line": row.get("line"), "input": row.get("input"),
                "reference": str(row.get("reference", "")), "A": a, "B": b,
                "grade": self._shown(index, grades.get(self._key(index)))}

    def items(self) -> dict:
        grades = load_grades(self.run_dir)
        return {"items": [self.item(n, grades) for n in range(len(self.chosen))], "state": self.state(grades)}

    def _position(self, item: str) -> int:
        if not (item.isdigit() and 1 <= int(item) <= len(self.chosen)):
            raise LookupError(f"no item {item!r} in the grading sample (1 to {len(self.chosen)})")
        return int(item) - 1

    def grade(self, item: str, choice: str) -> dict:
        """Record a person's choice for one item, durably (NotSaved when the disk did not take it)."""
        if choice not in CHOICES:
            raise ValueError(f"unknown choice {choice!r} (one of {', '.join(CHOICES)})")
        position = self._position(item)
        index = self.chosen[position]
        key = self._key(index)
        tuned_first = tuned_shown_first(key, self.seed)
        grade = {"A": "tuned" if tuned_first else "prompted", "B": "prompted" if tuned_first else "tuned"}.get(
            choice, choice)
        if grade != "clear" or key in load_grades(self.run_dir):
            store.append_record(self.file, {"key": key, "grade": grade,
                                            "shown": "tuned_first" if tuned_first else "prompted_first",
                                            "line": self.rows[index].get("line")})
        grades = load_grades(self.run_dir)
        return {"ok": True, "item": self.item(position, grades), "state": self.state(grades)}

    # ---- the statistics line ----

    def state(self, grades: dict[str, str] | None = None) -> dict[str, Any]:
        """Progress on the sample and the calibration figures so far; nothing per item, nothing naming a system."""
        grades = load_grades(self.run_dir) if grades is None else grades
        judged = [r["pairwise"]["judge"] for r in self.rows]
        keys = [r["pairwise"]["key"] for r in self.rows]
        human, judge_on_graded, judge_on_rest = calibration_inputs(judged, keys, grades)
        graded = sum(self._key(i) in grades for i in self.chosen)
        found: dict[str, Any] = {"sample": len(self.chosen), "graded": graded, "grades": len(human),
                                 "prompts": len(self.rows), "target_width": self.target_width,
                                 "min_kappa": self.min_kappa, "file": str(self.file),
                                 "evaluation": str(self.folder), "repaired": self.repaired,
                                 "agreement": None, "width": None, "more": None}
        if len(human) >= 2:
            agree = agreement([THREE_WAY[j] for j in judge_on_graded], [THREE_WAY[h] for h in human],
                              resamples=AGREEMENT_RESAMPLES)
            found["agreement"] = {"n": agree.n, "raw": agree.raw, "raw_ci": agree.raw_ci, "kappa": agree.kappa,
                                  "kappa_ci": agree.kappa_ci}
            found["width"] = ppi_mean(human, judge_on_graded, judge_on_rest).width
            found["more"] = grades_for_width(human, judge_on_graded, judge_on_rest, self.target_width)
        found["line"] = self._line(found)
        return found

    def _line(self, s: dict[str, Any]) -> str:
        parts = [f"{s['graded']} of {s['sample']} graded"]
        if s["grades"] != s["graded"]:
            parts[0] += f" ({s['grades']} grades of this evaluation's answers in all)"
        agree = s["agreement"]
        if agree is None:
            parts.append("grade at least 2 to see the judge's agreement with you and the interval")
            return " · ".join(parts)
        kappa = "undefined" if agree["kappa"] is None else f"{agree['kappa']:.2f}"
        parts.append(f"judge agrees with you on {100 * agree['raw']:.0f}% (Cohen's kappa {kappa})")
        if agree["kappa"] is None or agree["kappa"] < self.min_kappa:
            parts.append(f"kappa below eval.judge.min_kappa {self.min_kappa:.2f}: the verdict will rest on your "
                         "grades alone")
        if s["width"] is not None:
            parts.append(f"PPI interval width {s['width']:.2f}")
        more, target = s["more"], self.target_width
        if more == 0:
            parts.append(f"already within eval.judge.target_width {target:.2f}")
        elif more is None:
            parts.append(f"more grades would not narrow it to eval.judge.target_width {target:.2f} at the current "
                         "variances")
        else:
            text = f"{more} more grades would narrow the interval to eval.judge.target_width {target:.2f}"
            left = s["sample"] - s["graded"]
            if more > s["prompts"] - s["grades"]:
                text += f", more than this test set's {s['prompts']} prompts hold"
            elif more > left:
                text += f" (the sample has {left} left: raise eval.judge.grade_sample)"
            parts.append(text)
        return " · ".join(parts)

