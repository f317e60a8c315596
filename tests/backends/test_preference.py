"""Preference training before anything runs (torch-free): the schema's method/data rules, every preference setting
mapped into the TRL config of its method or refused, plan's notes and memory figures with and without a reference
model; the prompt/chosen/rejected conversion, the whitespace warning, prompt-level leakage; the preference
section of the evaluation from known log-probabilities; `sweep.objective=preference_accuracy`."""

import json
import sys

import pytest

from ftorch.cli import main
from ftorch.data.preference import from_prompt_chosen_rejected, prompt_leakage, trl_row
from ftorch.eval.preference import rejected_behaviour, summarise
from ftorch.run.record import RunRecord
from ftorch.sweep.objective import direction_of, planned, resolve

from conftest import TINY

DPO = ["recipe=dpo-quickstart-tiny", *TINY[1:], "eval=none"]


def plan_json(capsys, *overrides: str) -> dict:
    assert main(["plan", "--json", *DPO, *overrides]) == 0
    return json.loads(capsys.readouterr().out)["plan"]


def refused(capsys, *overrides: str) -> str:
    assert main(["plan", *DPO, *overrides]) == 2
    return capsys.readouterr().err


def test_plan_shows_the_method_reference_and_both_memory_figures_without_heavy_imports(capsys):
    before = set(sys.modules)
    plan = plan_json(capsys)
    notes = "\n".join(plan["notes"])
    assert "method: dpo through trl.DPOTrainer" in notes and "beta=0.1, loss_type=sigmoid" in notes
    assert "reference model: the same weights with the LoRA adapter disabled" in notes
    estimates = plan["estimates"]
    assert 0 < estimates["memory_gib"] < estimates["memory_gib_with_reference_copy"]
    assert plan["inputs"]["preference"]["beta"] == 0.1 and plan["inputs"]["preference"]["loss_type"] == ["sigmoid"]
    assert "packing" not in plan["inputs"]["preference"]
    imported = {name.split(".")[0] for name in set(sys.modules) - before}
    assert not imported & {"torch", "trl", "peft", "transformers"}


@pytest.mark.parametrize("overrides,expected", [
    (["train.method=dpo", "train.preference.beta=0.3", "train.preference.loss_type=robust",
      "train.preference.label_smoothing=0.1"],
     {"beta": 0.3, "loss_type": ["robust"], "label_smoothing": 0.1, "precompute_ref_log_probs": False}),
    (["train.preference.reference=precomputed"], {"precompute_ref_log_probs": True}),
    (["train.method=kto", "train.preference.reference=precomputed"], {"precompute_ref_log_probs": True}),
    (["train.method=simpo", "train.preference.simpo_gamma=1.0", "train.preference.max_completion_length=64"],
     {"loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": 1.0, "max_completion_length": 64}),
    (["train.method=orpo", "train.preference.beta=0.2"], {"beta": 0.2, "max_completion_length": None}),
])
def test_every_setting_reaches_the_trainer_config(capsys, overrides, expected):
    args = plan_json(capsys, *overrides)["inputs"]["preference"]
    assert {k: args[k] for k in expected} == expected
    assert args["max_steps"] == 8 and args["learning_rate"] == 5.0e-3  # the shared train.* settings


def test_reference_free_methods_say_so(capsys):
    notes = "\n".join(plan_json(capsys, "train.method=orpo")["notes"])
    assert "trl.experimental.orpo.ORPOTrainer" in notes and "reference model: none (orpo is reference-free)" in notes


@pytest.mark.parametrize("overrides,key", [
    (["train.preference.simpo_gamma=1.0"], "train.preference.simpo_gamma"),
    (["train.method=simpo", "train.preference.reference=precomputed"], "train.preference.reference"),
    (["train.method=orpo", "train.preference.loss_type=ipo"], "train.preference.loss_type"),
    (["train.preference.max_completion_length=32"], "train.preference.max_completion_length"),
    (["train.preference.label_smoothing=0.1"], "train.preference.label_smoothing"),
    (["model.adapter=/no/such/run"], "model.adapter"),
    (["train.method=lora"], "data.format"),
    (["provider=axolotl", "train.method=kto"], "train.method"),  # dpo/orpo/simpo: test_axolotl_translate.py
])
def test_settings_that_do_not_apply_are_refused(capsys, overrides, key):
    assert key in refused(capsys, *overrides)


def test_sft_refuses_preference_only_keys(capsys):
    for extra, key in ((["train.method=dpo"], "train.method"), (["train.preference.beta=0.5"], "train.preference"),
                       (["model.adapter=/x"], "model.adapter")):
        assert main(["plan", *TINY, "eval=none", *extra]) == 2
        assert key in capsys.readouterr().err


def test_starting_adapter_is_found_in_a_run_directory(capsys, tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    notes = "\n".join(plan_json(capsys, f"model.adapter={tmp_path}")["notes"])
    assert f"starts from the adapter in {tmp_path}" in notes and "a frozen copy of the starting adapter" in notes


def test_prompt_chosen_rejected_converts_strings_and_messages():
    pair = from_prompt_chosen_rejected({"prompt": "q?", "chosen": "good", "rejected": "bad", "system": "S"})
    assert pair == {"input": {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "q?"}]},
                    "preferred_output": [{"role": "assistant", "content": "good"}],
                    "non_preferred_output": [{"role": "assistant", "content": "bad"}]}
    conversational = from_prompt_chosen_rejected({
        "prompt": [{"role": "user", "content": "q?"}],
        "chosen": [{"role": "user", "content": "q?"}, {"role": "assistant", "content": "good"}],
        "rejected": [{"role": "assistant", "content": "bad"}]})
    assert conversational["preferred_output"][0]["content"] == "good"
    assert trl_row(pair)["chosen"] == [{"role": "assistant", "content": "good"}]
    with pytest.raises(ValueError, match="'prompt', 'chosen' and 'rejected'"):
        from_prompt_chosen_rejected({"prompt": "q", "chosen": "a"})
    with pytest.raises(ValueError, match="'rejected' must be"):
        from_prompt_chosen_rejected({"prompt": "q", "chosen": "a", "rejected": [{"role": "user", "content": "x"}]})


def test_data_convert_writes_preference_jsonl_and_warns_on_whitespace_only_pairs(tmp_path, capsys):
    source = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "a?", "chosen": "yes", "rejected": "no"},
            {"prompt": "b?", "chosen": "x  y", "rejected": "x y\n"},
            {"prompt": "c?", "chosen": "same", "rejected": "same"}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "convert", str(source), "--from", "prompt-chosen-rejected", "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    out = tmp_path / "pairs.preference.jsonl"
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["input"]["messages"][-1]["content"] for w in written] == ["a?", "b?"]
    assert "identical_outputs" in captured.err and f"{source}:3" in captured.err
    assert "outputs_differ_in_whitespace" in captured.err and f"{source}:2" in captured.err
    assert main(["data", "check", str(out)]) == 0  # what convert writes passes the check


def test_a_held_out_prompt_seen_in_training_is_leakage(tmp_path):
    from ftorch.data.checks import read_jsonl

    def pair(prompt, chosen, system="S"):
        return {"input": {"messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}]},
                "preferred_output": [{"role": "assistant", "content": chosen}],
                "non_preferred_output": [{"role": "assistant", "content": "no"}]}

    (tmp_path / "train.jsonl").write_text(json.dumps(pair("Book Ana", "yes")) + "\n")
    (tmp_path / "test.jsonl").write_text(json.dumps(pair("book  ana", "other", "T")) + "\n"
                                         + json.dumps(pair("Book Omar", "yes")) + "\n")
    splits = {name: read_jsonl(tmp_path / f"{name}.jsonl", "preference") for name in ("train", "test")}
    problems = prompt_leakage(splits)
    assert [p.where for p in problems] == [f"{tmp_path / 'test.jsonl'}:1"]
    assert "same prompt is in train" in problems[0].message


def test_preference_accuracy_and_implicit_reward_from_log_probs():
    base = [(-10.0, -9.0)] * 6 + [(-5.0, -8.0)] * 4  # base prefers chosen in 4 of 10
    tuned = [(-8.0, -12.0)] * 6 + [(-5.0, -9.0)] * 4  # tuned: all 10
    section = summarise(base, tuned, beta=0.5)
    assert section["base"]["accuracy"] == 0.4 and section["tuned"]["accuracy"] == 1.0
    assert section["tuned_vs_base"]["b01"] == 6 and section["tuned_vs_base"]["mean_diff"] == pytest.approx(0.6)
    low, high = section["tuned"]["ci95"]
    assert low < 1.0 == high
    reward = section["implicit_reward"]
    # beta * ((tuned_c - base_c) - (tuned_r - base_r)): 0.5 * (2 + 3) = 2.5 for six pairs, 0.5 * 1 for four
    assert reward["accuracy"] == 1.0 and reward["mean_margin"] == pytest.approx((6 * 2.5 + 4 * 0.5) / 10)
    assert reward["margin_ci95"][0] <= reward["mean_margin"] <= reward["margin_ci95"][1]


def test_rejected_behaviour_rate_per_system():
    outputs = {"base": ["Sure! {}", "{}", "Here: {}", "{}"], "prompted": ["{}", "Ok {}", "{}", "{}"],
               "tuned": ["{}", "{}", "{}", '{"date": 1}']}
    predictions = [{"systems": {name: {"output": outputs[name][i]} for name in outputs}} for i in range(4)]
    result = rejected_behaviour(predictions, [r"^\s*[^\s{]", r'"date"\s*:'], ("base", "prompted", "tuned"))
    assert [result[name]["rate"] for name in ("base", "prompted", "tuned")] == [0.5, 0.25, 0.25]
    assert result["tuned_vs_base"]["mean_diff"] == -0.25
    assert predictions[3]["systems"]["tuned"]["rejected_behaviour"] is True


def test_sweep_objective_can_name_preference_accuracy():
    record = RunRecord(status="succeeded", metrics={"eval_tuned_preference_accuracy": 0.9})
    assert resolve(record, "preference_accuracy") == ("eval_tuned_preference_accuracy", 0.9)
    assert planned({"sweep": {"objective": "preference_accuracy"}})[0]["direction"] == "maximize"
    assert direction_of("eval_tuned_rejected_rate") == "minimize"
    assert direction_of("eval_tuned_reward_margin") == "maximize"


def test_sft_weight_adds_trl_s_sft_loss_to_dpo():
    from ftorch.backends.hf.preference import trainer_args
    from ftorch.config.compose import find_project
    from ftorch.run.lifecycle import prepare

    project = find_project()
    cfg = prepare(project, ["recipe=dpo-quickstart-tiny", "train.preference.sft_weight=0.5"]).config
    args = trainer_args(cfg, {})
    assert args["loss_type"] == ["sigmoid", "sft"] and args["loss_weights"] == [1.0, 0.5]
    assert "loss_weights" not in trainer_args(prepare(project, ["recipe=dpo-quickstart-tiny"]).config, {})


def test_the_preference_task_s_prompted_conversation_carries_the_do_not_rules():
    from ftorch.config.compose import find_project
    from ftorch.eval.tasks import load_task
    from ftorch.run.lifecycle import prepare

    cfg = prepare(find_project(), ["recipe=dpo-quickstart-tiny",
                                   "eval.prompted_instructions='Do not add text.'"]).config
    task = load_task(cfg)
    assert task.prompter is None and len(task.pairs) == len(task.examples) > 0
    prompted = task.conversation("prompted", task.examples[0])
    assert prompted[0]["role"] == "system" and prompted[0]["content"].endswith("Do not add text.")
    assert "Do not add text." not in str(task.conversation("base", task.examples[0]))


class Recorder:
    """A scripted model for the prompting arms: records each conversation, answers with an empty JSON object."""

    def __init__(self):
        self.asked: list[list[dict]] = []

    def generate(self, conversations, max_new_tokens, batch_size, on_batch=None, constraint=None):
        self.asked += conversations
        return ["{}" for _ in conversations]

    def prompt_tokens(self, messages):
        return sum(len(str(m["content"]).split()) for m in messages)


def test_prompting_arms_on_preference_data_show_preferred_answers_and_carry_the_do_not_rules():
    from pathlib import Path

    from ftorch.config.compose import find_project
    from ftorch.data.checks import content_text, read_jsonl
    from ftorch.eval.arms import split
    from ftorch.eval.selection import choose
    from ftorch.eval.tasks import load_task
    from ftorch.run.lifecycle import prepare

    rules = "Do not add text."
    cfg = prepare(find_project(), ["recipe=dpo-quickstart-tiny", f"eval.prompted_instructions='{rules}'",
                                   "eval.prompt_arms=[zero_shot,k_shot,retrieved]", "eval.k_shots=[1,3]",
                                   "eval.validation_limit=6"]).config
    pairs = read_jsonl(Path(cfg.data.train), "preference").examples
    preferred = {content_text(p["preferred_output"][0]) for p in pairs}
    rejected = {content_text(p["non_preferred_output"][0]) for p in pairs}
    data = split(cfg)  # the arms' shot pool and validation: train pairs as prompt + preferred answer
    assert len(data.pool) + len(data.validation) == len(pairs) and len(data.validation) == 6
    assert all(c[-1]["role"] == "assistant" and c[-1]["content"] in preferred for c in data.pool)
    assert all(h.reference in preferred for h in data.validation)
    task = load_task(cfg)
    model = Recorder()
    chosen = choose(cfg, task.prompted_system_prompt, model)
    assert [a["name"] for a in chosen.report["arms"]] == ["k_shot_3", "k_shot_1", "zero_shot", "retrieved_1"]
    for conversation in model.asked:  # every arm's prompt: the rules once, never a rejected answer as an example
        assert conversation[0]["role"] == "system" and conversation[0]["content"].count(rules) == 1
        assert not any(m["role"] == "assistant" and m["content"] in rejected - preferred for m in conversation)
    task.prompter = lambda prompt: chosen.prompts.conversation(chosen.arm, prompt)
    prompted = task.conversation("prompted", task.examples[0])
    assert prompted[0]["content"].count(rules) == 1 and prompted[-1] == task.examples[0].prompt[-1]
    assert rules not in str(task.conversation("base", task.examples[0]))
