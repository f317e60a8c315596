"""ftorch export as a user runs it, on a tiny run trained once: merged, GGUF and Ollama exports are written into
new folders, load back with plain transformers, agree with base + adapter, and are recorded in run.json."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import read_run, run_cli
from support.tiny_run import trained_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_run(tmp_path_factory.getbasetemp())


def export(run_dir, *args):
    return run_cli("export", str(run_dir), "--limit", "6", *args)


def test_merged_fp32_is_identical_and_loads_without_peft(trained):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    first = export(trained, "--to", "merged")
    assert first.returncode == 0, first.stderr[-3000:]
    folder = trained / "export" / "merged-float32"
    assert str(folder) in first.stdout
    for name in ("model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja", "verification.json"):
        assert (folder / name).is_file(), name
    assert not (folder / "INCOMPLETE").exists()
    verification = json.loads((folder / "verification.json").read_text())
    assert verification["passed"] and verification["identical"] == 1.0 and verification["n"] == 6
    assert len(verification["rows"]) == 6
    record = read_run(trained)
    assert record["export"]["dir"] == str(folder) and record["export"]["verification"]["identical"] == 1.0
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.dtype == torch.float32 and tokenizer.chat_template
    assert not any("lora" in name for name, _ in model.named_parameters())

    second = export(trained, "--to", "merged", "--no-verify")  # a new folder; nothing overwritten
    assert second.returncode == 0 and (trained / "export" / "merged-float32-2" / "model.safetensors").is_file()
    assert [e["dir"] for e in read_run(trained)["exports"]][-2:] == [
        str(trained / "export" / n) for n in ("merged-float32", "merged-float32-2")]
    assert read_run(trained)["export"]["verification"] == {"skipped": "--no-verify"}


def test_gguf_f16_loads_back_with_the_same_logits_and_tokenizer(trained):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = export(trained, "--to", "gguf", "--type", "f16")
    assert result.returncode == 0, result.stderr[-3000:]
    (gguf,) = (trained / "export" / "gguf-f16").glob("*.gguf")
    merged = trained / "export" / "merged-float32"
    if not merged.is_dir():
        assert export(trained, "--to", "merged", "--no-verify").returncode == 0
        merged = sorted((trained / "export").glob("merged-float32*"))[0]
    ours = AutoTokenizer.from_pretrained(merged)
    back = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    conversation = [{"role": "system", "content": "Reply in JSON."},
                    {"role": "user", "content": "Book a call with Ana Monday 9am, {\"x\": 1}"}]
    ids = ours.apply_chat_template(conversation, add_generation_prompt=True, return_dict=False)
    assert back.apply_chat_template(conversation, add_generation_prompt=True, return_dict=False) == ids
    assert back.eos_token == ours.eos_token and back.chat_template == ours.chat_template
    reference = AutoModelForCausalLM.from_pretrained(merged).eval()
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    with torch.no_grad():
        a = reference(torch.tensor([ids])).logits
        b = loaded(torch.tensor([ids])).logits
    assert torch.allclose(a, b, atol=2e-2), (a - b).abs().max()  # f16 weights; q/k rows permuted and back


def test_ollama_modelfile_beside_a_4bit_gguf(trained):
    result = export(trained, "--to", "ollama", "--type", "q4_0")
    assert result.returncode == 0, result.stderr[-3000:]
    folder = trained / "export" / "ollama-q4_0"
    (gguf,) = folder.glob("*.gguf")
    modelfile = (folder / "Modelfile").read_text()
    assert f"FROM ./{gguf.name}\n" in modelfile
    assert 'PARAMETER stop "<|end|>"' in modelfile and "<|{{ .Role }}|>{{ .Content }}<|end|>" in modelfile
    config = yaml.safe_load((trained / "config.yaml").read_text())
    train_file = config["data"]["train"]
    system = json.loads(Path(train_file).read_text().splitlines()[0])["messages"][0]["content"]
    assert f'SYSTEM """{system}"""' in modelfile
    command = f"ollama create ftorch-quickstart-tiny:{trained.name}-q4_0 -f {folder / 'Modelfile'}"
    assert command in result.stdout
    entry = read_run(trained)["export"]
    assert entry["ollama_create"] == command and "max_metric_drop" in json.dumps(entry["verification"])


def test_failed_verification_exits_nonzero_and_is_recorded(trained):
    result = export(trained, "--to", "gguf", "--type", "q4_1", "--min-identical", "1.01")
    assert result.returncode == 1
    ours = [line for line in result.stderr.splitlines() if "it/s]" not in line]  # not a progress bar's rate
    assert "export verification failed" in result.stderr and not any("1.01" in line for line in ours)
    assert "101% required" in result.stderr and "Traceback" not in result.stderr
    assert read_run(trained)["export"]["verification"]["passed"] is False


def test_user_mistakes_are_clear(trained, tmp_path, capsys):
    from ftorch.cli import main

    def export_in_process(path, *args):
        code = main(["export", str(path), "--to", "merged", *args])
        return code, capsys.readouterr().err

    code, err = export_in_process(tmp_path / "nope")
    assert code == 2 and "no such run directory" in err
    code, err = export_in_process(tmp_path)
    assert code == 2 and "no run.json" in err
    unfinished = tmp_path / "unfinished"
    shutil.copytree(trained, unfinished, ignore=shutil.ignore_patterns("export", "checkpoints", "run.lock"))
    record = read_run(unfinished)
    (unfinished / "run.json").write_text(json.dumps({**record, "status": "failed", "error": "boom"}))
    code, err = export_in_process(unfinished)
    assert code == 2 and "has not finished training (status: failed)" in err and "boom" in err
    (unfinished / "run.json").write_text(json.dumps(record))
    shutil.rmtree(unfinished / "adapter")
    code, err = export_in_process(unfinished)
    assert code == 2 and "no LoRA adapter" in err and "Traceback" not in err
    assert not (unfinished / "export").exists()


def test_openai_run_names_its_model(tmp_path, capsys):
    from ftorch.cli import main

    assert main(["plan", "recipe=openai-quickstart", "--json"]) == 0
    config = json.loads(capsys.readouterr().out)["config"]
    run_dir = tmp_path / "openai-run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "run.json").write_text(json.dumps({"status": "succeeded", "provider": "openai",
                                                  "fine_tuned_model": "ft:gpt-4.1-mini-2025-04-14:org::abc123"}))
    assert main(["export", str(run_dir), "--to", "gguf"]) == 0
    out = capsys.readouterr().out
    assert "provider=openai): its weights stay with the provider" in out
    assert "ft:gpt-4.1-mini-2025-04-14:org::abc123" in out
    assert not (run_dir / "export").exists()
