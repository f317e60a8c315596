"""The evaluation flow with a scripted model: held-out task, few-shot selection, the regression flag,
the verdict, and the files written. (Real tiny models run it end to end in tests/e2e.)"""

import json

import pytest

from ftorch.errors import DataError
from ftorch.eval.finished import evaluate_run
from ftorch.eval.tasks import few_shot, load_task

from conftest import chat
from support.fakes import ANSWER, ScriptedModel


def test_three_systems_regression_flag_and_outputs(scripted_project):
    run, cfg = scripted_project
    model = ScriptedModel()
    report = evaluate_run(run, cfg, console=None, models=(model, None, None)).to_json()
    systems = report["task"]["systems"]
    assert systems["tuned"]["exact_match"]["mean"] == 1.0
    assert systems["prompted"]["exact_match"]["mean"] == 1.0  # the few-shot prompt teaches the format
    assert systems["base"]["exact_match"]["mean"] == 0.0
    assert report["general"]["base"]["prompt_level"] == 1.0 and report["general"]["tuned"]["prompt_level"] == 0.0
    assert report["safety"]["tuned"]["harmful_compliance_rate"] == 1.0
    assert len(report["regressions"]) == 2
    assert report["verdict"].startswith("The tuned model regressed")
    record = run.read()
    assert record["status"] == "succeeded" and record["regressed"] is True and record["evaluated"] is True
    assert record["metrics"]["eval_tuned_exact_match"] == 1.0
    folder = run.path / "eval"
    (only,) = list(folder.iterdir())
    for name in ("predictions.jsonl", "report.json", "report.md", "eval.png"):
        assert (only / name).is_file()
    rows = [json.loads(line) for line in (only / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and set(rows[0]["systems"]) == {"base", "prompted", "tuned"}
    assert "regressed" in (only / "report.md").read_text()
    # a second evaluation adds a new folder and keeps the first
    evaluate_run(run, cfg, console=None, models=(ScriptedModel(), None, None))
    assert len(list(folder.iterdir())) == 2 and len(run.read()["evaluations"]) == 2


def test_prompting_as_good_gives_the_tie_verdict(scripted_project):
    run, cfg = scripted_project
    # prompt_arms=[]: the fixed few_shot prompt, no sweep (tests/eval/test_arms.py covers the sweep)
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"general": False, "safety": False,
                                                                     "prompt_arms": []})})
    report = evaluate_run(run, cfg, console=None, models=(ScriptedModel(), None, None)).to_json()
    assert report["regressions"] == []
    assert report["verdict"].startswith("Quality ties: exact_match 100.0% tuned against 100.0% prompted")
    assert "3.5× fewer prompt tokens per call (6 against 21)" in report["verdict"]
    assert "Forgetting was not measured" in report["verdict"]
    # every metric is tested, tuned against prompted and against base; the headline entries keep their shape
    by_metric = report["significance_by_metric"]
    assert set(by_metric) == {"exact_match", "json_valid", "field_accuracy"}
    assert by_metric["exact_match"]["tuned_vs_prompted"] == report["significance"]["tuned_vs_prompted"]
    assert by_metric["field_accuracy"]["tuned_vs_base"]["test"] == "paired bootstrap"
    assert by_metric["json_valid"]["tuned_vs_base"]["p_value"] < 0.001
    low, high = report["task"]["systems"]["base"]["exact_match"]["ci95"]
    assert low == 0.0 and high == pytest.approx(0.0876, abs=1e-4)  # all zero: the interval is not a point
    assert report["task"]["systems"]["base"]["field_accuracy"]["ci95"][1] > 0.08
    assert report["cost"]["prompted"]["prompt_tokens_per_call"] > report["cost"]["tuned"]["prompt_tokens_per_call"]


def test_few_shot_is_deterministic():
    examples = [chat(f"q{i}", f"a{i}") for i in range(50)]
    assert few_shot(examples, 5, seed=1) == few_shot(examples, 5, seed=1)
    assert few_shot(examples, 5, seed=1) != few_shot(examples, 5, seed=2)
    assert few_shot(examples, 0, seed=1) == [] and len(few_shot(examples[:3], 5, seed=1)) == 3


def test_held_out_overlapping_train_is_refused(scripted_project, chat_jsonl):
    _, cfg = scripted_project
    leaked = chat_jsonl([chat("Is 3 even?", ANSWER, system="Answer in JSON.")], "leak.jsonl")
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"test": str(leaked)})})
    with pytest.raises(DataError, match="leakage"):
        load_task(cfg)


def test_a_local_decoder_takes_decode_batch_size_prompts_and_a_hosted_model_batch_size(scripted_project):
    """eval.decode_batch_size rows go through a local model's KV cache together; eval.batch_size is a hosted
    model's requests in flight (and the scoring passes' batch)."""
    run, cfg = scripted_project
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"decode_batch_size": 7, "batch_size": 3})})
    seen: list[int] = []

    class Local(ScriptedModel):
        decodes_locally = True

        def generate(self, conversations, max_new_tokens, batch_size, **kwargs):
            seen.append(batch_size)
            return super().generate(conversations, max_new_tokens, batch_size, **kwargs)

    evaluate_run(run, cfg, console=None, models=(Local(), None, None))
    assert seen and set(seen) == {7}
    assert cfg.eval.generation_batch(ScriptedModel()) == 3


def test_the_held_out_loss_runs_before_the_answers_and_begins_them(scripted_project):
    """With a local model the held-out loss of base and of tuned runs before that system's answers, and hands
    the answers the beginnings its pass read off (eval/forced.py); the prompted system, other prompts, gets none.
    The pass's seconds count in the answers' latency."""
    from ftorch.eval.forced import ForcedStart

    run, cfg = scripted_project
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"general": False, "safety": False,
                                                                     "prompt_arms": [], "drift": False})})

    class Local(ScriptedModel):
        decodes_locally = True

        def scored_answers(self, conversations, batch_size, max_new_tokens=0, prompts=None):
            assert prompts is not None and len(prompts) == len(conversations)
            self.calls.append(("scored", self.current, max_new_tokens))
            return [(3.0, 2)] * len(conversations), [ForcedStart((i,), (1,), 0.25) for i in range(len(conversations))]

        def generate(self, conversations, max_new_tokens, batch_size, on_batch=None, starts=None):
            self.calls.append(("generate", self.current, starts is not None and len(starts) == len(conversations)))
            return super().generate(conversations, max_new_tokens, batch_size, on_batch)

    model = Local()
    report = evaluate_run(run, cfg, console=None, models=(model, model, None)).to_json()
    steps = [call for call in model.calls if call[0] in ("scored", "generate")]
    assert steps == [("scored", "base", cfg.eval.max_new_tokens), ("generate", "base", True),
                     ("generate", "prompted", False),
                     ("scored", "tuned", cfg.eval.max_new_tokens), ("generate", "tuned", True)]
    assert report["held_out_loss"]["tuned"]["loss"] == 1.5 and report["held_out_loss"]["base"]["tokens"] == 80
    assert report["latency"]["tuned"]["seconds_per_call"] >= 0.25
