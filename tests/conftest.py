"""Shared fixtures, and the helpers every kind of test uses (running ftorch, reading a run, a chat row). No network:
hub access is switched off and non-loopback sockets are refused. Fakes and other shared builders are in support/."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ftorch import threads

ROOT = Path(__file__).resolve().parents[1]
# Each pytest-xdist worker gets its share of the cores (`make test` runs TEST_WORKERS of them): the thread policy
# goes into this process's environment before any test imports torch, and every ftorch a test starts inherits it.
# A user's OMP_NUM_THREADS or FTORCH_THREADS is respected.
threads.apply(workers=int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
# A suite started in the background of a non-interactive shell (`make test &`, some CI runners) inherits SIGINT
# ignored, and so would every ftorch it starts: the Ctrl-C tests would then test nothing. Children get the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# The quickstart task on the tiny random model (smaller than quickstart-tiny's), so the suite trains in seconds;
# tests/e2e/test_real_model.py runs the real quickstart model.
TINY = ["recipe=quickstart-tiny", "model.tiny.hidden_size=64", "model.tiny.intermediate_size=128",
        "model.tiny.num_heads=2"]
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled"}


@pytest.fixture(scope="session", autouse=True)
def offline_env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("ftorch-cache")
    patch = {**OFFLINE_ENV, "FTORCH_CACHE": str(cache), "FTORCH_ROOT": str(ROOT)}
    saved = {k: os.environ.get(k) for k in patch}
    os.environ.update(patch)
    yield cache
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def forget_secrets():
    """ftorch remembers each secret it met for the life of the process (to scrub it from later output): a test's
    made-up secrets must not scrub the next test's text when tests share a process."""
    from ftorch import secrets

    values, names = set(secrets._remembered), set(secrets._remembered_env)
    yield
    secrets._remembered.clear()
    secrets._remembered.update(values)
    secrets._remembered_env.clear()
    secrets._remembered_env.update(names)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and self.family != socket.AF_UNIX:
            raise OSError(f"network access refused in tests: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, **popen) -> subprocess.CompletedProcess:
    """Run `python -m ftorch ARGS` as a user would, in a separate process."""
    return subprocess.run([sys.executable, "-m", "ftorch", *args], cwd=cwd or ROOT, capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy(), **popen)


def train_run(runs: Path, *args: str, timeout: float = 600) -> tuple[Path, subprocess.CompletedProcess]:
    """`ftorch train ARGS` into `runs`, which must succeed with one run directory: (that directory, the result)."""
    result = run_cli("train", f"paths.runs={runs}", *args, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = run_dirs(runs)
    return run_dir, result


def run_dirs(runs: Path) -> list[Path]:
    return sorted(p.parent for p in runs.rglob("run.json"))


def read_run(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def assert_two_process_run(runs: Path, result: subprocess.CompletedProcess) -> tuple[Path, dict]:
    """A train.num_gpus=2 run of 4 steps under torchrun: succeeded, two processes, one writer of metrics.jsonl, and
    the reload check passed. Returns the run directory and its run.json for the caller's own checks."""
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = run_dirs(runs)
    record = read_run(run_dir)
    assert record["status"] == "succeeded" and record["processes"] == 2 and record["metrics"]["global_step"] == 4
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == [1, 2, 3, 4]  # one writer
    assert record["reload_check"]["matches_trained"]
    return run_dir, record


def assert_preference_evaluated(run_dir: Path, result: subprocess.CompletedProcess, n: int = 8) -> dict:
    """A preference run's evaluation, whatever the provider: base and tuned preference accuracy, the tuned reward
    margin and rejected rate in run.json, the console lines, and paired figures with an interval in report.json
    (returned for the caller's own checks)."""
    metrics = read_run(run_dir)["metrics"]
    for key in ("eval_base_preference_accuracy", "eval_tuned_preference_accuracy", "eval_tuned_rejected_rate"):
        assert 0 <= metrics[key] <= 1, key
    assert "eval_tuned_reward_margin" in metrics
    assert f"preference accuracy (n={n}): base" in result.stdout and "verdict:" in result.stdout
    (report_dir,) = (run_dir / "eval").iterdir()
    report = json.loads((report_dir / "report.json").read_text())
    assert report["preference"]["pairs"]["n"] == n and report["preference"]["pairs"]["tuned_vs_base"]["ci"] is not None
    return report


@pytest.fixture
def chat_jsonl(tmp_path):
    """Factory: write chat examples (dicts or raw strings) to a JSONL file."""

    def make(rows, name="data.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
        return path

    return make


def chat(user: str, answer: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


@pytest.fixture
def project_copy(tmp_path, monkeypatch) -> Path:
    """A temporary project: a copy of the project's conf/ and recipes/ (data paths still point at the real
    datasets), made the project ftorch uses (FTORCH_ROOT)."""
    folder = tmp_path / "project"
    shutil.copytree(ROOT / "conf", folder / "conf")
    shutil.copytree(ROOT / "recipes", folder / "recipes")
    monkeypatch.setenv("FTORCH_ROOT", str(folder))
    return folder


@pytest.fixture
def scripted_project(tmp_path, chat_jsonl, monkeypatch):
    """A finished run ready to be evaluated by support.fakes.ScriptedModel, with its config: a held-out JSON task
    (20 train, 40 test), a 40-item general suite and 40 red-team and benign prompts each."""
    from ftorch.config.schema import RunConfig
    from ftorch.eval import instructions, safety
    from ftorch.run.rundir import RunDir

    from support.fakes import ANSWER

    train = chat_jsonl([chat(f"Is {i} even?", ANSWER, system="Answer in JSON.") for i in range(20)], "train.jsonl")
    test = chat_jsonl([chat(f"Is {i} odd?", ANSWER, system="Answer in JSON.") for i in range(40)], "test.jsonl")
    suite = [instructions.parse_instruction({"id": f"if-{i}", "prompt": f"Say it in lowercase {i}.",
                                             "checks": [{"type": "lowercase"}]}) for i in range(40)]
    monkeypatch.setattr(instructions, "load_suite", lambda limit=None: suite[:limit])
    red = [safety.SafetyPrompt(f"rt-{i}", "weapons", f"refuse-me {i}") for i in range(40)]
    benign = [safety.SafetyPrompt(f"bn-{i}", "homonym", f"How do I kill process {i}?") for i in range(40)]
    monkeypatch.setattr(safety, "load_prompts", lambda kind, limit=None, seed=0: red if kind == "redteam" else benign)
    cfg = RunConfig.model_validate({
        "provider": {"name": "peft"}, "model": {"name": "scripted"},
        "data": {"train": str(train), "test": str(test)},
        "eval": {"metrics": ["exact_match", "json_valid", "field_accuracy"], "headline": "exact_match",
                 "few_shot": 3, "drift": False}})
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.start(recipe="t", provider="peft", project_root=tmp_path, overrides=[])
    run.finish("succeeded")
    return run, cfg


@pytest.fixture
def openai_standin():
    """A fresh OpenAI stand-in per test (support/openai_standin.py); fails the test if any response broke the spec."""
    from support.openai_standin import start_standin

    with start_standin() as handle:
        yield handle


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> bytes:
    """The adapter of an uninterrupted crash-harness run (support/crash.py), once per module that asks."""
    from support.crash import ARGS, adapter_bytes, run_cli_forked, the_run

    runs = tmp_path_factory.mktemp("reference")
    assert run_cli_forked(["train", f"paths.runs={runs}", *ARGS]) == 0
    return adapter_bytes(the_run(runs))
