"""Suspect labels: training examples ranked by how likely their answer (the label) is wrong, from two cheap
signals of a finished run's tuned model (eval/suspect_signals.py measures them):

- **loss**: the mean loss per assistant token of the example under the final adapter. A label the model finds
  surprising after training on it (a wrong value, a malformed JSON) stands out; normalised to its percentile among
  the training examples, so it does not depend on the task's loss scale.
- **disagreement**: 1 minus the task's headline metric of the model's own greedy answer scored against the label
  (for field_accuracy: the share of fields where they differ). The confident-learning idea (Northcutt et al., 2021)
  in its cheapest form: the model's answer beside the label.

Both are in-sample (the model saw each label while training): a memorised wrong label scores low on both. That
is the proxy's trade-off against k-fold cross-fitting, which trains k times. The score ranks candidates for a person
to review (`ftorch review FILE --order suspects --run RUN`), never deletions."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ..errors import DataError, Problem

FILE = "suspects.jsonl"  # in the run's folder, best suspect first
By = Literal["both", "loss", "disagreement"]


@dataclass(frozen=True)
class Signals:
    """What the tuned model says about one training example."""

    line: int  # in the training file
    hash: str  # the example's content key (data.profile.exact_key): a changed file is noticed
    prompt: str  # the last user message
    label: str  # the assistant answer in the file
    answer: str | None  # the tuned model's greedy answer (None when not generated)
    loss: float  # mean loss per assistant token under the final adapter
    agreement: float | None  # the headline metric of answer against label, in [0, 1]


@dataclass(frozen=True)
class Suspect:
    rank: int
    line: int
    hash: str
    score: float  # in [0, 1]; higher = more likely wrong
    loss: float
    loss_percentile: float
    disagreement: float | None
    label: str
    answer: str | None
    prompt: str


def percentiles(values: Sequence[float]) -> list[float]:
    """Each value's mid-rank percentile in [0, 1] (ties share one); NaN counts as the highest."""
    keyed = [(math.inf if math.isnan(v) else v) for v in values]
    order = sorted(range(len(keyed)), key=lambda i: keyed[i])
    result = [0.0] * len(keyed)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and keyed[order[end + 1]] == keyed[order[start]]:
            end += 1
        middle = (start + end) / 2
        for i in order[start:end + 1]:
            result[i] = middle / (len(keyed) - 1) if len(keyed) > 1 else 1.0
        start = end + 1
    return result


def rank(signals: Sequence[Signals], by: By = "both") -> list[Suspect]:
    """Most suspect first. both: the mean of disagreement and the loss percentile (an example without an answer
    counts its loss alone); ties go to the higher loss."""
    pct = percentiles([s.loss for s in signals])
    scored = []
    for signal, p in zip(signals, pct):
        disagreement = None if signal.agreement is None else 1.0 - float(signal.agreement)
        if by == "loss" or (by == "both" and disagreement is None):
            score = p
        elif by == "disagreement":
            if disagreement is None:
                raise ValueError("ranking by disagreement needs the model's answers")
            score = disagreement
        else:
            score = 0.5 * (disagreement or 0.0) + 0.5 * p
        scored.append((score, p, signal, disagreement))
    scored.sort(key=lambda t: (-t[0], -t[1], t[2].line))
    return [Suspect(n, s.line, s.hash, round(score, 6), s.loss, round(p, 6), d, s.label, s.answer, s.prompt)
            for n, (score, p, s, d) in enumerate(scored, start=1)]


def precision_recall(ranked_lines: Sequence[int], planted: set[int], share: float) -> tuple[float, float]:
    """Of the top `share` of the ranking: the share that is planted (precision) and the share of planted errors
    found there (recall)."""
    top = ranked_lines[: max(1, round(share * len(ranked_lines)))]
    hits = sum(line in planted for line in top)
    return hits / len(top), (hits / len(planted) if planted else 0.0)


def write(path: Path, suspects: Sequence[Suspect], source: Path, by: By) -> None:
    """RUN/suspects.jsonl: one suspect a line, best first; the first line names the training file and method."""
    from ..safe_io import atomic_writer
    from ..secrets import known, scrub_text_tree

    secrets = known()
    with atomic_writer(path) as handle:
        handle.write(json.dumps({"suspects_of": str(source), "by": by, "count": len(suspects)}) + "\n")
        for suspect in suspects:
            handle.write(json.dumps(scrub_text_tree(asdict(suspect), secrets), ensure_ascii=False) + "\n")


def read(run_dir: Path) -> tuple[Path, list[dict]]:
    """(the training file they rank, the suspects best first) from RUN/suspects.jsonl."""
    path = run_dir / FILE
    if not path.is_file():
        raise DataError(Problem(str(path), "no suspects for this run yet", f"run: ftorch data suspects {run_dir}"))
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows or "suspects_of" not in rows[0]:
        raise DataError(Problem(str(path), "not a suspects file (its first line names no training file)",
                                f"make it again: ftorch data suspects {run_dir}"))
    return Path(rows[0]["suspects_of"]), rows[1:]
