"""ftorch chat in a pseudo-terminal (pexpect), as a user types it; ftorch serve's command and its refusal
without vLLM and a GPU."""

import json
import os
import re
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from support.tiny_run import trained_run

pexpect = pytest.importorskip("pexpect")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_run(tmp_path_factory.getbasetemp())


def test_chat_compare_in_a_terminal(trained):
    from ftorch.eval.finished import config_of
    from ftorch.eval.local import LocalModel
    from ftorch.models import model_path
    from ftorch.run.rundir import RunDir

    child = pexpect.spawn(sys.executable, ["-m", "ftorch", "chat", str(trained), "--compare", "--max-new-tokens",
                                           "12"], cwd=str(ROOT), env=os.environ.copy(), encoding="utf-8",
                          timeout=240)
    child.expect("system prompt: (.*)\r\n")
    system = child.match.group(1)
    child.expect("you> ")
    child.sendline("Book a call with Ana Monday 9am.")
    child.expect("base> (.*)\r\n")
    base = child.match.group(1).strip()
    child.expect("tuned> (.*)\r\n")
    tuned = child.match.group(1).strip()
    child.expect("you> ")
    child.sendline("/system Be brief.")
    child.expect("system prompt: Be brief.")
    child.sendline("/save")
    child.expect(r"saved (\S+\.json)")
    saved = child.match.group(1)
    child.sendline("/reset")
    child.expect("conversation forgotten")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

    transcript = json.loads(Path(saved).read_text())
    assert saved.startswith(str(trained / "chat"))
    turn = transcript["turns"][0]
    assert turn["user"] == "Book a call with Ana Monday 9am." and turn["system"] == system
    assert transcript["turns"][1] == {"event": "system", "content": "Be brief."}
    # what was streamed is the greedy answer of the tuned model (and of the base model with the adapter off)
    cfg = config_of(RunDir(trained), [])
    local = LocalModel(model_path(cfg.model), trained / "adapter")
    conversation = [{"role": "system", "content": system}, {"role": "user", "content": turn["user"]}]
    expected_tuned = local.generate([conversation], 12, 1)[0]
    with local.system("base"):
        expected_base = local.generate([conversation], 12, 1)[0]
    assert turn["tuned"] == expected_tuned and turn["base"] == expected_base
    assert re.sub(r"\s+", "", tuned) == re.sub(r"\s+", "", expected_tuned)
    assert re.sub(r"\s+", "", base) == re.sub(r"\s+", "", expected_base)


def test_serve_builds_the_vllm_command_and_refuses_without_a_gpu(trained, capsys):
    from ftorch import serve
    from ftorch.cli import main
    from ftorch.export.source import open_run

    source = open_run(trained)
    rank = json.loads((trained / "adapter" / "adapter_config.json").read_text())["r"]
    argv = serve.command(source, "/models/base", "0.0.0.0", 8123, python="python")
    assert argv == ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "/models/base", "--enable-lora",
                    "--lora-modules", f"ftorch-quickstart-tiny={(trained / 'adapter').resolve()}",
                    "--max-lora-rank", str(rank), "--host", "0.0.0.0", "--port", "8123"]
    assert main(["serve", str(trained), "--print"]) == 0
    assert "vllm.entrypoints.openai.api_server" in capsys.readouterr().out
    lacking = serve.missing()
    if lacking:  # this machine: no vLLM and/or no GPU
        assert main(["serve", str(trained)]) == 2
        err = capsys.readouterr().err
        assert all(reason.split(" (")[0] in err for reason in lacking) and "Traceback" not in err
