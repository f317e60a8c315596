"""The crash harness: `ftorch` forked from a server that has imported torch and transformers once
(multiprocessing's forkserver), killed with SIGKILL at seeded points (a hook's n-th call, optionally after a
delay; or mid-write, half the file's bytes on disk), and the checks that a killed run's record is truthful and a
resumed run ends with the uninterrupted adapter. tests/e2e/test_crash_resume.py, test_crash_signals.py and
bench/soak_resume.py use it."""


from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import threading
from pathlib import Path

from conftest import ROOT, TINY

MAX_STEPS = 8
ARGS = [*TINY, "train.max_steps=8", "train.save_steps=2", "train.batch_size=2", "train.logging_steps=1", "eval=none"]
QUICK_EVAL = ["eval.limit=2", "eval.general=false", "eval.safety=false", "eval.drift=false",
              "eval.max_new_tokens=4", "eval.few_shot=0"]
PRELOAD = ["torch", "transformers", "peft", "trl", "trl.trainer.sft_trainer", "hydra", "datasets", "matplotlib.pyplot",
           "ftorch.cli", "ftorch.cli.train", "ftorch.run.lifecycle", "ftorch.run.launch",
           "ftorch.backends.peft.backend", "ftorch.run.plots", "ftorch.backends.hf.preprocess", "ftorch.eval.suite"]
# Where a kill can land: (hook, how). "call": SIGKILL when the hook is called the n-th time, after `delay`
# seconds (a timer, so it lands wherever the process is then); "write": the n-th file written through the hook
# gets half its bytes, then SIGKILL.
HOOKS = {
    "step": "call",          # Trainer.training_step: mid-step, or (with a delay) anywhere in the next steps
    "torch_save": "write",   # optimizer.pt, scheduler.pt, rng_state.pth, training_args.bin of a checkpoint
    "safetensors": "write",  # adapter_model.safetensors of a checkpoint, or of the final adapter
    "state_json": "write",   # trainer_state.json, the last file of a checkpoint
    "publish": "call",       # the adapter written in full, not yet renamed into place
}


# ---- in the forked process -------------------------------------------------------------------------------------

def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(hook: str, n: int, delay: float) -> None:
    """Patch the hook so that its n-th use kills this process."""
    calls = [0]

    def due() -> bool:
        calls[0] += 1
        return calls[0] == n

    def kill_soon() -> None:
        if delay <= 0:
            _die()
        threading.Timer(delay, _die).start()

    if hook == "step":
        from transformers import Trainer

        real_step = Trainer.training_step

        def training_step(self, *a, **k):
            if due():
                kill_soon()
            return real_step(self, *a, **k)

        Trainer.training_step = training_step
    elif hook == "publish":
        from ftorch.backends.hf import publish

        real_publish = publish.publish_adapter

        def publish_adapter(run, write, main=True):
            if due():
                write(run.path / ".adapter.partial")
                _die()
            return real_publish(run, write, main)

        publish.publish_adapter = publish_adapter
    elif hook == "torch_save":
        import io

        import torch

        real_save = torch.save

        def save(obj, f, *a, **k):
            if isinstance(f, (str, os.PathLike)) and due():
                buffer = io.BytesIO()
                real_save(obj, buffer, *a, **k)
                Path(f).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                _die()
            return real_save(obj, f, *a, **k)

        torch.save = save
    elif hook == "safetensors":
        import peft.peft_model
        from safetensors.torch import save as to_bytes

        real_file = peft.peft_model.safe_save_file

        def safe_save_file(tensors, filename, metadata=None):
            if due():
                data = to_bytes(tensors, metadata=metadata)
                Path(filename).write_bytes(data[: len(data) // 2])
                _die()
            return real_file(tensors, filename, metadata=metadata)

        peft.peft_model.safe_save_file = safe_save_file
    elif hook == "state_json":
        from transformers import TrainerState

        real_json = TrainerState.save_to_json

        def save_to_json(self, json_path):
            if due():
                real_json(self, json_path)
                text = Path(json_path).read_text()
                Path(json_path).write_text(text[: len(text) // 2])
                _die()
            return real_json(self, json_path)

        TrainerState.save_to_json = save_to_json
    elif hook == "enospc":  # the n-th file torch.save writes finds the disk full
        import errno

        import torch

        real_save = torch.save

        def save(obj, f, *a, **k):
            if isinstance(f, (str, os.PathLike)) and due():
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
            return real_save(obj, f, *a, **k)

        torch.save = save
    elif hook == "eval":  # the evaluation has begun (its folder and run.json's record exist): die after `delay`
        from ftorch.eval import suite as runner

        real_evaluate = runner.evaluate

        def evaluate(*a, **k):
            if due():
                kill_soon()
            return real_evaluate(*a, **k)

        runner.evaluate = evaluate
    else:
        raise ValueError(hook)


def _child(argv: list[str], kill: tuple[str, int, float] | None, env: dict[str, str], output: str | None) -> None:
    os.environ.update(env)
    os.chdir(ROOT)
    import sys

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal
    sink = os.open(output or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    import torch

    torch.set_num_threads(1)  # a tiny model: one thread is fastest on a shared machine, and the same in every cycle
    if kill:
        _arm(*kill)
    from ftorch.cli import main

    try:
        code = main(argv)
    except BaseException:  # what escaped the CLI (a test fails on the traceback)
        import traceback

        traceback.print_exc()
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ---- in the test process ---------------------------------------------------------------------------------------

_CONTEXT = None


def context():
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def start_forked(argv: list[str], kill: tuple[str, int, float] | None = None, output: Path | None = None):
    """`ftorch ARGV` in a process forked from the preloaded server (output to a file, or nowhere)."""
    env = {k: os.environ[k] for k in os.environ if k.startswith(("FTORCH_", "HF_", "TRANSFORMERS_", "TOKENIZERS_"))}
    process = context().Process(target=_child, args=(argv, kill, env, str(output) if output else None))
    process.start()
    return process


def run_cli_forked(argv: list[str], kill: tuple[str, int, float] | None = None, timeout: float = 300,
                   output: Path | None = None) -> int:
    """Run `ftorch ARGV` forked (see start_forked); its exit code (-9 when killed)."""
    process = start_forked(argv, kill, output)
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join()
        raise TimeoutError(f"ftorch {' '.join(argv)} did not finish in {timeout} s")
    return process.exitcode


def kill_points(seed: int, count: int) -> list[tuple[str, int, float]]:
    """Seeded kills: which hook, at its how-many-th use in that process, and after what delay."""
    rng = random.Random(seed)
    points = []
    for _ in range(count):
        hook = rng.choice(list(HOOKS))
        n = {"step": rng.randint(1, 4), "torch_save": rng.randint(1, 6), "safetensors": rng.randint(1, 3),
             "state_json": rng.randint(1, 2), "publish": 1}[hook]
        delay = round(rng.uniform(0, 0.3), 3) if hook == "step" else 0.0
        points.append((hook, n, delay))
    return points


def the_run(runs: Path) -> Path:
    (found,) = [p.parent for p in runs.rglob("run.json")]
    return found


def adapter_bytes(run_dir: Path) -> bytes:
    return (run_dir / "adapter" / "adapter_model.safetensors").read_bytes()


def assert_truthful_after_kill(run_dir: Path) -> None:
    """After kill -9: nobody holds the lock, readers see 'died' (training) or an evaluation that died, and the
    checkpoint run.json names is complete."""
    from ftorch.backends.hf.checkpoints import checkpoint_problem
    from ftorch.run.rundir import RunDir

    run = RunDir(run_dir)
    assert run.holder() is None
    record = run.record()
    seen = run.observed(record)
    if record.status == "running":
        assert seen.status == "died" and f"ftorch resume {run_dir}" in seen.error
    else:
        assert record.status == "succeeded" and seen.evaluation.status == "died", record
    step = record.last_checkpoint_step
    if step and record.status == "running":
        assert checkpoint_problem(run_dir / "checkpoints" / f"checkpoint-{step}") is None


def assert_finished_like(run_dir: Path, reference: bytes) -> None:
    from ftorch.run.rundir import RunDir

    record = RunDir(run_dir).read()
    assert record["status"] == "succeeded" and record["metrics"]["global_step"] == MAX_STEPS, record
    assert adapter_bytes(run_dir) == reference
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(1, MAX_STEPS + 1))  # each step once
    assert not (run_dir / ".adapter.partial").exists() and RunDir(run_dir).holder() is None


def crash_and_resume(runs: Path, points: list[tuple[str, int, float]], reference: bytes) -> int:
    """Train, killed at the first point; resume, killed at the next; ... ; a last resume to the end. A point the
    run never reaches (it finished first, or resumed past it) is tried again on a fresh run. Every run must end
    with the reference adapter. Returns the number of runs used."""
    fresh = 0

    def new_run() -> list[str]:
        nonlocal fresh
        fresh += 1
        return ["train", f"paths.runs={runs / str(fresh)}", *ARGS]

    argv = new_run()
    for point in points:
        code = run_cli_forked(argv, kill=point)
        if code == 0:  # the run finished before the point came: check it, and aim the point at a new one
            assert_finished_like(the_run(runs / str(fresh)), reference)
            argv = new_run()
            code = run_cli_forked(argv, kill=point)
        assert code == -signal.SIGKILL, (point, code)
        run_dir = the_run(runs / str(fresh))
        assert_truthful_after_kill(run_dir)
        argv = ["resume", str(run_dir)]
    assert run_cli_forked(argv) == 0
    assert_finished_like(the_run(runs / str(fresh)), reference)
    return fresh
