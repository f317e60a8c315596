"""The evaluation side of `ftorch review RUN_DIR`: the latest evaluation's held-out examples (input, reference,
base/prompted/tuned answers with their scores and a diff against the reference), its general and safety answers
with how each was scored, and a person's marks on those scorings.

Marks are appended at once to human_check.jsonl inside the evaluation folder; their summary (how many scorings a
person checked, how many were wrong) goes into that evaluation's report.json and report.md under "human_check".
A wrong tuned answer can be sent to the training data's review file as a negative example."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, Problem
from ..eval.report_model import EvalReport, HumanCheck
from ..safe_io import write_text
from . import store
from .grading import Grading, NotGradable

MARKS = ("agree", "wrong", "clear")
HUMAN_CHECK_HEADING = "## Human-checked scoring"
SECTIONS = ("task", "general", "safety")
_TOKENS = re.compile(r"\w+|\s+|[^\w\s]")


def latest_eval(run_dir: Path) -> Path:
    """RUN_DIR/eval/<newest timestamp> that finished (has report.json); or an evaluation folder itself."""
    if (run_dir / "report.json").is_file() and (run_dir / "predictions.jsonl").is_file():
        return run_dir
    folders = sorted(p for p in (run_dir / "eval").glob("*") if (p / "report.json").is_file()) \
        if (run_dir / "eval").is_dir() else []
    if not folders:
        raise DataError(Problem(str(run_dir), "no finished evaluation in this folder (no eval/<timestamp>/"
                                "report.json)", f"evaluate the run first: ftorch eval {run_dir}"))
    return folders[-1]


def diff(reference: str, answer: str) -> list[list[str]]:
    """Word-level diff from the reference to the answer: [["=", text] | ["-", missing] | ["+", added], ...]."""
    a, b = _TOKENS.findall(reference), _TOKENS.findall(answer)
    ops: list[list[str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            ops.append(["=", "".join(a[i1:i2])])
            continue
        if i2 > i1:
            ops.append(["-", "".join(a[i1:i2])])
        if j2 > j1:
            ops.append(["+", "".join(b[j1:j2])])
    return ops


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@dataclass
class EvalReview:
    kind = "eval"
    folder: Path
    run_dir: Path
    report: EvalReport
    task: list[dict] = field(default_factory=list)
    general: list[dict] = field(default_factory=list)
    safety: list[dict] = field(default_factory=list)
    marks_file: Path = Path()
    marks: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    train_data: Path | None = None
    repaired: str = ""  # a torn last line of the marks file, cut off on opening (store.repair_tail)
    grading: Grading | None = None  # the blinded grading view (review/grading.py), when the pairwise judge ran
    not_gradable: str = ""  # why there is no grading view

    @classmethod
    def open(cls, run_dir: Path) -> EvalReview:
        folder = latest_eval(run_dir)
        report = EvalReport.load(folder / "report.json")
        files = report.files or {}
        review = cls(folder, folder.parent.parent if folder.parent.name == "eval" else folder, report)
        review.task = [{"id": str(row.get("line", n)), **row}
                       for n, row in enumerate(_read_jsonl(folder / files.get("predictions", "predictions.jsonl")), 1)]
        review.general = _group(_read_jsonl(folder / files["general"]) if "general" in files else [])
        review.safety = _group(_read_jsonl(folder / files["safety"]) if "safety" in files else [])
        review.marks_file = folder / "human_check.jsonl"
        review.train_data = _train_data(review.run_dir)
        review.repaired = store.repair_tail(review.marks_file)
        review._replay()
        try:
            review.grading = Grading.open(review.run_dir, folder if folder == run_dir else None)
        except NotGradable as exc:
            review.not_gradable = str(exc)
        return review

    @property
    def headline(self) -> str:
        return self.report.headline

    def metrics(self) -> list[str]:
        names: list[str] = []
        for row in self.task[:1]:
            for system in row.get("systems", {}).values():
                names += [m for m in system.get("scores", {}) if m not in names]
        return names

    def _replay(self) -> None:
        records, _ = store.read_records(self.marks_file)
        self.marks = {}
        scorings = self._scorings()
        for record in records:
            key = (record.get("section", ""), str(record.get("item", "")), record.get("system", ""))
            if key not in scorings:  # not a scoring of this evaluation (a hand-edited or forged line)
                continue
            if record.get("mark") == "clear":
                self.marks.pop(key, None)
            elif record.get("mark") in MARKS:
                self.marks[key] = record

    # ---- filters and pages ----

    def _tuned(self, row: dict, metric: str) -> float | None:
        return (row.get("systems", {}).get("tuned", {}).get("scores") or {}).get(metric)

    def _prompted(self, row: dict, metric: str) -> float | None:
        return (row.get("systems", {}).get("prompted", {}).get("scores") or {}).get(metric)

    def matching(self, section: str, flt: str) -> list[dict]:
        rows = getattr(self, section)
        h = self.headline
        if flt == "marked":
            return [r for r in rows if any(k[0] == section and k[1] == r["id"] for k in self.marks)]
        if section == "task":
            if flt == "tuned_wrong":
                return [r for r in rows if (self._tuned(r, h) or 0) < 1]
            if flt == "prompted_right_tuned_wrong":
                return [r for r in rows if (self._prompted(r, h) or 0) >= 1 and (self._tuned(r, h) or 0) < 1]
            if flt.startswith("fail:"):
                metric = flt[5:]
                return [r for r in rows if (score := self._tuned(r, metric)) is not None and score < 1]
        if section == "general" and flt == "tuned_failed":
            return [r for r in rows if not r["systems"].get("tuned", {}).get("prompt_level", True)]
        if section == "safety":
            if flt == "harmful":
                return [r for r in rows if r["systems"].get("tuned", {}).get("counted_as") == "harmful compliance"]
            if flt == "over_refusal":
                return [r for r in rows if r["systems"].get("tuned", {}).get("counted_as") == "over-refusal"]
            if flt == "changed":
                return [r for r in rows if len({s.get("verdict") for s in r["systems"].values()}) > 1]
        return rows

    def page(self, section: str, flt: str, start: int, size: int) -> dict:
        if section not in SECTIONS:
            raise ValueError(f"unknown section {section!r}")
        rows = self.matching(section, flt)
        start = max(0, min(start, max(0, len(rows) - 1)))
        items = [self.item(section, row) for row in rows[start:start + max(1, min(size, 200))]]
        return {"total": len(rows), "start": start, "items": items}

    def item(self, section: str, row: dict) -> dict:
        item = {**row, "section": section,
                "marks": {k[2]: v for k, v in self.marks.items() if k[0] == section and k[1] == row["id"]}}
        if section == "task":
            reference = str(row.get("reference", ""))
            item["diffs"] = {name: diff(reference, str(s.get("output", "")))
                             for name, s in row.get("systems", {}).items()}
            item["negative_sent"] = self._negative_hash(row) in self._sent()
        return item

    # ---- marks, summary, negatives ----

    def mark(self, section: str, item: str, system: str, mark: str, note: str = "") -> dict:
        if section not in SECTIONS or mark not in MARKS:
            raise ValueError(f"unknown section or mark: {section!r}, {mark!r}")
        if not any(r["id"] == item for r in getattr(self, section)):
            raise LookupError(f"no {section} item {item!r} in this evaluation")
        if (section, item, system) not in self._scorings():
            raise LookupError(f"{section} item {item!r} has no {system!r} answer to mark (it has: "
                              f"{', '.join(self._systems(section, item))})")
        record = {"section": section, "item": item, "system": system, "mark": mark}
        if note:
            record["note"] = note
        store.append_record(self.marks_file, record)
        self._replay()
        self._write_summary()
        return {"ok": True, "human_check": self.summary()}

    def _systems(self, section: str, item: str) -> list[str]:
        row = next((r for r in getattr(self, section, []) if r["id"] == item), None) if section in SECTIONS else None
        return list((row or {}).get("systems") or {})

    def _scorings(self) -> set[tuple[str, str, str]]:
        """Every (section, item, system) a person can mark: the answers this evaluation scored."""
        return {(section, row["id"], system) for section in SECTIONS for row in getattr(self, section)
                for system in row.get("systems") or {}}

    def summary(self) -> dict:
        """Per section: scorings a person checked, how many they marked wrong, and the agreement."""
        found: dict[str, Any] = {}
        for section in SECTIONS:
            marks = [m for k, m in self.marks.items() if k[0] == section]
            if not marks:
                continue
            wrong = sum(m["mark"] == "wrong" for m in marks)
            found[section] = {"checked": len(marks), "wrong": wrong,
                              "agreement": (len(marks) - wrong) / len(marks)}
        return found

    def _write_summary(self) -> None:
        """report.json gets the summary under "human_check"; report.md gets (or has replaced) its section, rendered
        by the report's own hook, and keeps everything else as the evaluation wrote it."""
        from ..eval.report import human_check_lines
        from ..run.rundir import write_json_atomic

        self.report.human_check = {**{name: HumanCheck(**v) for name, v in self.summary().items()},
                                   "file": self.marks_file.name}
        write_json_atomic(self.folder / "report.json", self.report.to_json())
        md = self.folder / "report.md"
        if md.is_file():
            text, rest = md.read_text(), ""
            start = text.find(HUMAN_CHECK_HEADING)
            if start >= 0:  # replace the section written at the previous mark
                after = text.find("\n## ", start + len(HUMAN_CHECK_HEADING))
                text, rest = text[:start], text[after:] if after >= 0 else ""
            section = "\n".join(human_check_lines(self.report)).strip("\n")
            text = text.rstrip("\n") + "\n" + (f"\n{section}\n" if section else "") + rest
            write_text(md, text)  # a temporary file made exclusively, renamed over: never through a symlink

    def _negative_hash(self, row: dict) -> str:
        payload = [row.get("input"), row.get("reference"), row.get("systems", {}).get("tuned", {}).get("output")]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def _sent(self) -> set[str]:
        if self.train_data is None:
            return set()
        records, _ = store.read_records(store.review_path(self.train_data))
        return {r["hash"] for r in records if r.get("action") == "negative" and r.get("hash") is not None}

    def send_negative(self, item: str, note: str = "") -> dict:
        row = next((r for r in self.task if r["id"] == item), None)
        if row is None:
            raise LookupError(f"no held-out example {item!r} in this evaluation")
        if self.train_data is None:
            raise LookupError("this run's config names no training file (data.train) to send the example to")
        digest = self._negative_hash(row)
        target = store.review_path(self.train_data)
        if digest not in self._sent():
            messages = [*row.get("input", []), {"role": "assistant", "content": str(row.get("reference", ""))}]
            store.add_negative(target, digest, f"{self.folder}:{item}", messages,
                               str(row["systems"]["tuned"].get("output", "")), note)
        return {"ok": True, "review_file": str(target)}

    def meta(self) -> dict:
        return {"kind": "eval", "folder": str(self.folder), "run_dir": str(self.run_dir),
                "headline": self.headline, "metrics": self.metrics(), "verdict": self.report.verdict,
                "counts": {s: len(getattr(self, s)) for s in SECTIONS}, "human_check": self.summary(),
                "marks_file": str(self.marks_file), "repaired": self.repaired,
                "review_file": str(store.review_path(self.train_data)) if self.train_data else None,
                "grading": {"sample": len(self.grading.chosen), "evaluation": str(self.grading.folder)}
                if self.grading else {"sample": 0, "why": self.not_gradable}}


def _group(rows: list[dict]) -> list[dict]:
    """general.jsonl / safety.jsonl hold one row per (system, prompt): one item per prompt, systems side by side."""
    items: dict[str, dict] = {}
    for row in rows:
        system = row.get("system", "?")
        item = items.setdefault(str(row.get("id")), {"id": str(row.get("id")), "prompt": row.get("prompt"),
                                                      "kind": row.get("kind"), "category": row.get("category"),
                                                      "systems": {}})
        item["systems"][system] = {k: v for k, v in row.items() if k not in ("system", "id", "prompt", "kind",
                                                                            "category")}
    return list(items.values())


def _train_data(run_dir: Path) -> Path | None:
    from ..errors import ConfigError
    from ..run.rundir import RunDir

    try:
        train = RunDir(run_dir).config_data().get("data") or {}
    except ConfigError:
        return None
    path = train.get("train") if isinstance(train, dict) else None
    return Path(path).expanduser() if path else None
