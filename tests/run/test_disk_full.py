"""A full disk is recognised whatever the library says. torch.save on a full disk raises only "[enforce fail at
inline_container.cc:672] . unexpected pos N vs M" (no errno, no "No space left"): after a failed save the run's
free space decides. The real torch error is made here without filling a disk: a file-size limit (RLIMIT_FSIZE)
cuts torch.save's write short the same way, and the free space is what shutil.disk_usage is made to report."""

from __future__ import annotations

import errno
import json
import resource
import shutil
import signal
from collections import namedtuple
from contextlib import contextmanager
from pathlib import Path

import pytest

from ftorch.backends.child import Ended, raise_failure
from ftorch.errors import BackendError
from ftorch.run import lifecycle
from ftorch.run.rundir import RunDir

Usage = namedtuple("Usage", "total used free")


@contextmanager
def file_size_limit(size: int):
    """Writes past `size` bytes fail (EFBIG), as they would on a full disk; SIGXFSZ ignored meanwhile."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def torch_save_cut_short(path: Path) -> RuntimeError:
    """torch.save of an optimizer-sized state into `path`, failing part way: the exact error torch raises."""
    import torch

    with file_size_limit(4096):
        try:
            torch.save({"state": torch.zeros(100_000)}, path)
        except RuntimeError as exc:
            return exc
    raise AssertionError("torch.save was not cut short")


@pytest.fixture(scope="module")
def torch_error(tmp_path_factory) -> RuntimeError:
    error = torch_save_cut_short(tmp_path_factory.mktemp("save") / "optimizer.pt")
    assert "inline_container.cc" in str(error) and "unexpected pos" in str(error)
    assert "No space left" not in str(error)  # what the old check looked for
    return error


def free_space(monkeypatch, free: int) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * 2**30, 10 * 2**30 - free, free))


# --- the classifier ---------------------------------------------------------------------------------------

def test_torch_s_words_on_a_disk_with_no_room_left_are_a_full_disk(torch_error, tmp_path, monkeypatch):
    free_space(monkeypatch, 512 * 1024)
    assert lifecycle.disk_full(torch_error, tmp_path) == "0.5 MiB left on it"


def test_the_same_error_with_room_left_is_not(torch_error, tmp_path, monkeypatch):
    free_space(monkeypatch, 5 * 2**30)
    assert lifecycle.disk_full(torch_error, tmp_path) is None
    assert lifecycle.disk_full(torch_error) is None  # no folder to look at: the words and errnos only


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_an_errno_anywhere_in_the_chain_is_enough(tmp_path, monkeypatch, code):
    free_space(monkeypatch, 5 * 2**30)  # space freed since (a temporary file removed): the errno still says it
    try:
        try:
            raise OSError(code, "write failed", "optimizer.pt")
        except OSError as exc:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from exc
    except RuntimeError as wrapped:
        assert lifecycle.disk_full(wrapped, tmp_path) == "no space left on device"
        assert lifecycle.disk_full(wrapped) == "no space left on device"


@pytest.mark.parametrize("error", [MemoryError(), type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory")])
def test_running_out_of_memory_is_not_a_full_disk(tmp_path, monkeypatch, error):
    free_space(monkeypatch, 1024)
    assert lifecycle.disk_full(error, tmp_path) is None


def test_free_space_is_read_on_the_nearest_existing_folder(tmp_path, monkeypatch):
    real, asked = shutil.disk_usage, []

    def usage(path):
        asked.append(Path(path))
        real(path)  # FileNotFoundError for a folder not there
        return Usage(10, 3, 7)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    assert lifecycle.free_space(tmp_path / "gone" / "run") == 7
    assert asked == [tmp_path / "gone" / "run", tmp_path / "gone", tmp_path]  # a run folder not made yet


# --- a run whose checkpoint save fills the disk -----------------------------------------------------------

def make_run(folder: Path) -> RunDir:
    run = RunDir(folder)
    folder.mkdir(parents=True)
    run.update(status="running", recipe="r", provider="peft", started="2026-01-01T00:00:00+00:00", ended=None)
    complete = run.checkpoints / "checkpoint-2"
    complete.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt",
                 "rng_state.pth", "training_args.bin"):
        (complete / name).write_bytes(b"x")
    (complete / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    return run


def test_a_checkpoint_save_that_fills_the_disk_is_exit_2_with_the_resume_command(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    cut = run.checkpoints / "checkpoint-4"

    def train():  # the Trainer's checkpoint: the adapter is written, then the optimizer's state fills the disk
        cut.mkdir()
        (cut / "adapter_model.safetensors").write_bytes(b"x" * 100)
        raise torch_save_cut_short(cut / "optimizer.pt")

    free_space(monkeypatch, 3 * 2**20)
    with pytest.raises(lifecycle.DiskFull) as caught:
        lifecycle.supervise(run, train, "t")
    assert caught.value.exit_code == 2
    message = caught.value.render()
    assert "the disk is full (3.0 MiB left on it)" in message and "unexpected pos" in message
    assert f"ftorch resume {run.path}" in message
    record = run.read()
    assert record["status"] == "failed" and "disk is full" in record["error"]
    assert f"ftorch resume {run.path}" in record["error"]
    assert not cut.exists() and (run.checkpoints / "checkpoint-2").is_dir()  # the cut save's space is freed
    assert "checkpoint-4 is incomplete" in run.log.read_text()


def test_a_training_child_that_died_of_a_full_disk_is_exit_2_too(tmp_path, monkeypatch):
    """A child (torchrun, unsloth, axolotl) that could not even write its result on the full disk."""
    run = make_run(tmp_path / "run")

    def train():
        raise_failure(Ended(1, None), where="provider=unsloth", log=run.log)

    free_space(monkeypatch, 0)
    with pytest.raises(lifecycle.DiskFull):
        lifecycle.supervise(run, train, "t")
    assert "disk is full" in run.read()["error"]


def test_a_failure_with_room_left_stays_a_failure(torch_error, tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")

    def train():
        raise torch_error

    free_space(monkeypatch, 5 * 2**30)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        lifecycle.supervise(run, train, "t")
    assert run.read()["status"] == "failed" and "disk is full" not in run.read()["error"]
    with pytest.raises(BackendError):
        lifecycle.supervise(run, lambda: raise_failure(Ended(1, None), where="x", log=run.log), "t")
