"""lm-evaluation-harness tasks, base against tuned, on a task of our own with local data (no hub)."""

import json

import pytest

from conftest import TINY, read_run, run_cli, run_dirs

pytestmark = pytest.mark.slow
lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install 'ftorch[lm-eval]')")


@pytest.fixture
def local_task(tmp_path):
    rows = [{"question": f"Which day follows {a}?", "choices": ["Monday", "Tuesday", "Friday"], "answer": i % 3}
            for i, a in enumerate(["Sunday", "Monday", "Thursday"] * 4)]
    data = tmp_path / "days.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "days.yaml").write_text(
        "task: ftorch_days\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: '{{answer}}'\nmetric_list:\n  - metric: acc\n")
    return tasks


def test_lm_eval_base_against_tuned(tmp_path, local_task):
    runs = tmp_path / "runs"
    result = run_cli("train", f"paths.runs={runs}", *TINY, "train.max_steps=3", "eval.limit=2", "eval.few_shot=1",
                     "eval.general=false", "eval.safety=false", "eval.drift=false", "eval.max_new_tokens=4",
                     "eval.lm_eval_tasks=[ftorch_days]", f"eval.lm_eval_include_path={local_task}")
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = run_dirs(runs)
    (folder,) = list((run_dir / "eval").iterdir())
    report = json.loads((folder / "report.json").read_text())
    harness = report["lm_eval"]
    assert 0.0 <= harness["base"]["ftorch_days"]["acc,none"] <= 1.0
    assert harness["change"]["ftorch_days"]["acc,none"] == pytest.approx(
        harness["tuned"]["ftorch_days"]["acc,none"] - harness["base"]["ftorch_days"]["acc,none"])
    assert "lm-eval ftorch_days acc,none" in (folder / "report.md").read_text()
    # every logged sample is kept beside the report, and report.json names the file
    assert harness["samples"] == "lm_eval_samples.jsonl" and report["files"]["lm_eval"] == "lm_eval_samples.jsonl"
    samples = [json.loads(line) for line in (folder / "lm_eval_samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 12  # base and tuned, every document (no eval.lm_eval_limit)
    first = samples[0]
    assert {"system", "task", "doc_id", "prompt", "scored", "doc", "target", "filtered_resps", "acc"} <= set(first)
    assert first["task"] == "ftorch_days" and first["prompt"].startswith("Which day follows")
    assert [choice.strip() for choice in first["scored"]] == ["Monday", "Tuesday", "Friday"]
    for system in ("base", "tuned"):  # the reported accuracy is the mean of the saved per-sample values
        mine = [s["acc"] for s in samples if s["system"] == system]
        assert harness[system]["ftorch_days"]["acc,none"] == pytest.approx(sum(mine) / len(mine))
    assert read_run(run_dir)["evaluated"] is True


def test_unknown_task_is_named(tmp_path, local_task):
    result = run_cli("train", f"paths.runs={tmp_path}", *TINY, "train.max_steps=1", "eval.limit=1",
                     "eval.general=false", "eval.safety=false", "eval.drift=false", "eval.max_new_tokens=2",
                     "eval.lm_eval_tasks=[ftorch_dayz]", f"eval.lm_eval_include_path={local_task}")
    assert "lm-eval has no task ['ftorch_dayz']" in result.stderr
