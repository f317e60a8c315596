"""The judges' part of an evaluation (eval.judge.model set): the rubric judge's grade of every answer (the
'judge' metric, when eval.metrics names it) and the pairwise comparison of tuned with the strongest prompt,
combined with the run's human grades into the report's 'judged' section. Called by suite.evaluate."""

from __future__ import annotations

from typing import Any

from ..config.schema import RunConfig
from ..run.rundir import RunDir
from .judge_client import judge_for
from .rubrics import load_rubric
from .tasks import SYSTEMS, Task


def judge_answers(run: RunDir, cfg: RunConfig, task: Task, predictions: list[dict], local, progress,
                  records: list[dict]) -> dict[str, Any]:
    """Adds the 'judge' score to every prediction (when the metric is asked for) and returns the report
    entries: 'judge' (the rubric judge) and 'judged' (the calibrated pairwise comparison)."""
    from .grades import grade_key, load_grades
    from .judged import section
    from .judges import PairwiseJudge, RubricJudge

    ev = cfg.eval
    rubric = load_rubric(ev.judge.rubric)
    judge = judge_for(ev.judge, cfg.model, shared_model=local)
    entries: dict[str, Any] = {}
    if "judge" in ev.metrics:
        grader = RubricJudge(judge, rubric, ev.judge.scale)
        items = [(e.prompt, row["reference"], row["systems"][name]["output"], {"line": row["line"], "system": name})
                 for e, row in zip(task.examples, predictions) for name in SYSTEMS]
        scores = iter(_tracked(progress, "judge · rubric", len(items), lambda tick: grader.score_all(items, tick)))
        for row in predictions:
            for name in SYSTEMS:
                row["systems"][name]["scores"]["judge"] = next(scores)
        records += grader.records
        entries["judge"] = {"model": str(ev.judge.model), "rubric": rubric.name, "scale": grader.scale,
                            "unreadable_verdicts": grader.unreadable}
    if ev.judge.pairwise:
        pairwise = PairwiseJudge(judge, rubric)
        items2 = [(e.prompt, row["reference"], row["systems"]["tuned"]["output"],
                   row["systems"]["prompted"]["output"], row["line"]) for e, row in zip(task.examples, predictions)]
        result = _tracked(progress, "judge · pairwise (both orders)", 2 * len(items2),
                          lambda tick: pairwise.compare_all(items2, tick))
        keys = [grade_key(e.prompt, tuned, prompted) for e, (_, _, tuned, prompted, _) in zip(task.examples, items2)]
        for row, key, outcome in zip(predictions, keys, result.outcomes):
            row["pairwise"] = {"key": key, "judge": outcome.outcome, "first": outcome.first, "second": outcome.second}
        records += pairwise.records
        entries["judged"] = section(result, keys, load_grades(run.path), ev.judge, judge, rubric.name)
    return entries


def _tracked(progress, label: str, total: int, work):
    """Run `work(on_batch)` under a progress bar (or the line-per-stage progress off a terminal)."""
    if progress is None:
        return work(None)
    task_id = progress.add_task(label, total=total)
    result = work(lambda n: progress.advance(task_id, n))
    progress.update(task_id, visible=False)
    return result
