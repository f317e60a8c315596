"""Prompting arms with a scripted model: the validation data and shot pool, the k sweep, retrieval, the context
cap, early stopping, the choice (made on validation only: the test split cannot move it), the verdict naming the
strongest prompt, and the quality-versus-cost table and chart."""

import json

from ftorch.config.schema import RunConfig
from ftorch.eval.arms import Arm, Prompts, split
from ftorch.eval.constrained import constraint_for
from ftorch.eval.finished import evaluate_run
from ftorch.eval.selection import choose
from ftorch.eval.suite import evaluate
from ftorch.eval.tradeoff import pareto
from ftorch.run.rundir import RunDir

from conftest import chat
from support.fakes import ANSWER, COLOURS, RetrievalHurts, ShotCounter


def config(tmp_path, chat_jsonl, test_rows=None, **eval_settings) -> RunConfig:
    train = chat_jsonl([chat(f"Is {i} even? colour {COLOURS[i % 5]}", ANSWER, system="Answer in JSON.")
                        for i in range(60)], "train.jsonl")
    test = chat_jsonl(test_rows or [chat(f"Is {i} odd?", ANSWER, system="Answer in JSON.") for i in range(30)],
                      f"test-{len(test_rows or [])}.jsonl")
    settings = {"metrics": ["exact_match", "json_valid"], "headline": "exact_match", "general": False,
                "safety": False, "drift": False, "validation_limit": 10, **eval_settings}
    return RunConfig.model_validate({"provider": {"name": "peft"}, "model": {"name": "scripted"},
                                     "data": {"train": str(train), "test": str(test)}, "eval": settings})


def test_the_validation_slice_is_kept_out_of_the_shots_and_is_deterministic(tmp_path, chat_jsonl):
    cfg = config(tmp_path, chat_jsonl)
    data = split(cfg)
    assert len(data.validation) == 10 and len(data.pool) == 50
    asked = {e.prompt[-1]["content"] for e in data.validation}
    assert not asked & {c[0]["content"] for c in data.pool}
    assert [e.line for e in split(cfg).validation] == [e.line for e in data.validation]
    assert all("odd" not in text for text in asked)  # from train, never the test split
    # a run with data.validation uses it, and the whole of train is the pool
    held = chat_jsonl([chat(f"Is {i} small?", ANSWER) for i in range(5)], "validation.jsonl")
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"validation": str(held)})})
    data = split(cfg)
    assert len(data.pool) == 60 and [e.prompt[-1]["content"] for e in data.validation][0] == "Is 0 small?"


def test_retrieved_shows_the_most_similar_training_examples_closest_last(tmp_path, chat_jsonl):
    pool = split(config(tmp_path, chat_jsonl)).pool
    prompts = Prompts("Answer in JSON.", pool, seed=0)
    shots = prompts.shots(Arm("retrieved", 3), [{"role": "user", "content": "which one is violet?"}])
    assert len(shots) == 3 and all("violet" in s[0]["content"] for s in shots)
    conversation = prompts.conversation(Arm("k_shot", 2), [{"role": "user", "content": "q"}])
    assert conversation[0]["role"] == "system" and len(conversation) == 1 + 4 + 1


def test_the_choice_is_made_on_validation_and_the_test_split_cannot_move_it(tmp_path, chat_jsonl):
    # on the test inputs zero-shot would be right and every prompt with examples wrong: a choice that looked
    # at the test split would pick zero_shot; validation picks k_shot_3 (right, and fewest tokens of the right)
    reports = []
    for rows in (None, [chat(f"Is {i} odd? {i}", "something else") for i in range(12)]):
        cfg = config(tmp_path, chat_jsonl, test_rows=rows)
        model = ShotCounter(needs=3, on_test=lambda shots: shots == 0)
        result = evaluate(RunDir(tmp_path / "run"), cfg, model)
        report = result.report.to_json()
        swept = sum(a.get("n", 0) for a in report["prompt_arms"]["arms"])
        assert swept < len(model.asked) and not any("odd" in text for _, text, _ in model.asked[:swept])
        reports.append(report)  # (the sweep never saw a test input)
    timeless = [{**r["prompt_arms"], "arms": [{k: v for k, v in a.items() if k != "seconds_per_call"}
                                             for a in r["prompt_arms"]["arms"]]} for r in reports]
    assert timeless[0] == timeless[1]  # everything but the wall time per call
    arms = reports[0]["prompt_arms"]
    assert arms["chosen"] == "k_shot_3"
    assert {a["name"]: a.get("mean") for a in arms["arms"]} == {
        "zero_shot": 0.0, "k_shot_1": 0.0, "k_shot_3": 1.0, "k_shot_5": 1.0, "k_shot_10": 1.0, "retrieved_3": 1.0,
        "constrained_k_shot_3": None}  # skipped: this scripted provider cannot hold replies to anything
    assert "k_shot_3 scored 100.0% exact_match on 10 validation examples" in arms["why"]
    # k_shot_5 (eval.few_shot) ran first; zero_shot and k_shot_1, clearly below it, stopped after 5 of 10
    assert [a["name"] for a in arms["arms"]][:2] == ["k_shot_5", "k_shot_1"]
    assert {a["name"] for a in arms["arms"] if a["status"] == "stopped early"} == {"zero_shot", "k_shot_1"}
    # on test the chosen prompt scores 0 (the scripted trap), and tuned is compared with it, not with zero_shot
    report = reports[0]
    assert report["task"]["systems"]["prompted"]["exact_match"]["mean"] == 0.0
    assert report["cost"]["prompted"]["prompt_tokens_per_call"] > report["cost"]["base"]["prompt_tokens_per_call"]


def test_a_clearly_worse_arm_stops_after_half_the_validation_examples(tmp_path, chat_jsonl):
    cfg = config(tmp_path, chat_jsonl, prompt_arms=["k_shot", "retrieved"], k_shots=[3], validation_limit=12)
    model = RetrievalHurts()
    selection = choose(cfg, "Answer in JSON.", model)
    by_name = {a["name"]: a for a in selection.report["arms"]}
    assert by_name["k_shot_3"]["status"] == "scored" and by_name["k_shot_3"]["mean"] == 1.0
    assert by_name["retrieved_3"]["status"] == "stopped early" and by_name["retrieved_3"]["n"] == 6
    assert "clearly below k_shot_3" in by_name["retrieved_3"]["reason"]
    assert len(model.asked) == 12 + 6 and selection.arm.name == "k_shot_3"
    # without early stopping every arm runs on every example
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"early_stop": False})})
    model = RetrievalHurts()
    choose(cfg, "Answer in JSON.", model)
    assert len(model.asked) == 24


def test_a_k_whose_prompts_exceed_the_context_is_skipped_with_the_reason(tmp_path, chat_jsonl):
    cfg = config(tmp_path, chat_jsonl, prompt_arms=["k_shot"], k_shots=[1, 10], max_new_tokens=8)
    selection = choose(cfg, "Answer in JSON.", ShotCounter(needs=1, context_length=60))
    by_name = {a["name"]: a for a in selection.report["arms"]}
    assert by_name["k_shot_10"]["status"] == "skipped" and "context of 60 tokens" in by_name["k_shot_10"]["reason"]
    assert selection.arm.name == "k_shot_1"


def test_the_constraint_comes_from_the_schema_or_a_closed_label_set(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object"}))
    constraint, why = constraint_for(str(schema), ["anything"])
    assert constraint.kind == "json_schema" and "schema.json" in why
    constraint, why = constraint_for(None, ["yes", "no", "no", "yes", "yes", "no"])
    assert constraint.labels == ("no", "yes") and constraint.regex() == "(no|yes)"
    constraint, why = constraint_for(None, [f"free text {i}" for i in range(30)])
    assert constraint is None and "30 distinct" in why


def test_the_constrained_arm_is_built_on_the_best_prompt_and_passed_to_the_generator(tmp_path, chat_jsonl):
    cfg = config(tmp_path, chat_jsonl, prompt_arms=["k_shot", "constrained"], k_shots=[3])
    model = ShotCounter(needs=3)
    model.constraint_kinds = ("labels",)
    selection = choose(cfg, None, model)
    names = [a["name"] for a in selection.report["arms"]]
    assert names == ["k_shot_3", "constrained_k_shot_3"]
    assert [c.labels for c in model.constraints if c is not None][0] == (ANSWER,)
    # a provider that cannot hold replies to a label set: skipped, with the reason
    selection = choose(cfg, None, ShotCounter(needs=3))
    assert selection.report["arms"][1]["status"] == "skipped" and "cannot" in selection.report["arms"][1]["reason"]


def test_pareto_front():
    assert pareto([(0.9, 100), (0.8, 10), (0.7, 50), (0.9, 200), (None, 1)]) == [True, True, False, False, False]


def test_report_names_the_strongest_prompt_and_draws_the_tradeoff(tmp_path, chat_jsonl):
    cfg = config(tmp_path, chat_jsonl, test_rows=[chat(f"Is {i} even? colour red {i}", ANSWER) for i in range(30)])
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.start(recipe="t", provider="peft", project_root=tmp_path, overrides=[])
    run.finish("succeeded")
    report = evaluate_run(run, cfg, console=None, models=(ShotCounter(needs=3), None, None)).to_json()
    assert report["verdict"].startswith("Quality ties with the strongest prompt, k_shot_3 (system prompt + 3 fixed "
                                        "training examples; best of 6 arms on validation): exact_match 100.0%")
    assert "fewer prompt tokens per call" in report["verdict"]  # what fine-tuning still buys
    (folder,) = (run.path / "eval").iterdir()
    markdown = (folder / "report.md").read_text()
    assert "## Prompting arms (chosen on validation" in markdown and "| k_shot_10 |" in markdown
    assert "## Quality versus cost" in markdown and "| test | prompted (k_shot_3) |" in markdown
    assert (folder / "tradeoff.png").stat().st_size > 10_000
    assert json.loads((run.path / "run.json").read_text())["evaluation"]["prompt_arm"] == "k_shot_3"


def test_off_a_terminal_the_evaluation_prints_a_line_per_stage(tmp_path, chat_jsonl):
    import io

    from rich.console import Console

    cfg = config(tmp_path, chat_jsonl, test_rows=[chat(f"Is {i} even? colour red {i}", ANSWER) for i in range(6)],
                 prompt_arms=["k_shot"], k_shots=[3], validation_limit=8)
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.start(recipe="t", provider="peft", project_root=tmp_path, overrides=[])
    run.finish("succeeded")
    log = io.StringIO()
    evaluate_run(run, cfg, console=Console(file=log, force_terminal=False), models=(ShotCounter(needs=3), None, None))
    lines = log.getvalue().splitlines()
    for stage in ("task · base (6)", "task · prompted (6)", "task · tuned (6)"):
        assert any(line.startswith(f"evaluated {stage} in ") for line in lines), (stage, lines)
    assert any(line.startswith("evaluated ") and "k_shot_3" in line for line in lines), lines
