"""`ftorch setup unsloth`: the same numbered, pinned, idempotent steps as `ftorch setup axolotl` (whose own tests
are in tests/backends/test_axolotl_translate.py); pip is replaced by a recorder, the real build runs in CI."""

import subprocess
from pathlib import Path

import pytest

from ftorch import setup_envs
from ftorch.errors import BackendError


def recorder(commands: list[list[str]], fail_at: int | None = None):
    def fake_call(command):
        commands.append(command)
        if command[1:3] == ["-m", "venv"]:
            (Path(command[3]) / "bin").mkdir(parents=True)
            (Path(command[3]) / "bin" / "python").write_text("")
        return 1 if fail_at is not None and len(commands) == fail_at else 0
    return fake_call


def test_unsloth_environment_steps_are_pinned_and_run_once(tmp_path, monkeypatch, capsys):
    commands: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", recorder(commands))
    python = setup_envs.setup_unsloth(tmp_path, python="/usr/bin/python3.11")
    env = tmp_path / ".venv-unsloth"
    assert python == env / "bin" / "python"
    pins = ["-c", str(env / "ftorch-constraints.txt")]
    assert (env / "ftorch-constraints.txt").read_text() == "torch==2.13.0\n"
    assert commands[0] == ["/usr/bin/python3.11", "-m", "venv", str(env)]
    assert commands[2][-1] == "torch==2.13.0"
    source = setup_envs.ftorch_source()
    assert source is not None  # the tests run from the checkout
    assert commands[3][-4:] == [*pins, "-e", f"{source}[dev]"]
    assert commands[4][-4:] == [*pins, f"unsloth=={setup_envs.UNSLOTH_VERSION}",
                                f"unsloth_zoo=={setup_envs.UNSLOTH_VERSION}"]
    assert commands[5] == [str(python), "-m", "pip", "uninstall", "-y", "torchvision"]
    assert commands[6][:2] == [str(python), "-c"] and "import unsloth" in commands[6][2]
    assert "[7/7] checking that unsloth imports" in capsys.readouterr().err
    assert setup_envs.setup_unsloth(tmp_path) == python and len(commands) == 7  # the stamp: nothing to do
    assert "Unsloth environment already set up" in capsys.readouterr().err


def test_a_failed_step_is_named_and_leaves_no_stamp(tmp_path, monkeypatch):
    commands: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", recorder(commands, fail_at=7))
    with pytest.raises(BackendError) as raised:
        setup_envs.setup_unsloth(tmp_path)
    assert "step 7 (checking that unsloth imports)" in raised.value.render()
    assert "ftorch setup unsloth --force" in raised.value.render()
    assert not (tmp_path / ".venv-unsloth" / setup_envs.STAMP).exists()


def test_a_changed_dependency_list_brings_the_environment_up_to_date(tmp_path, monkeypatch, capsys):
    """An environment built from a checkout whose pyproject.toml has since changed (a dependency added) is
    installed again, not reused: its stamp records the requirements' digest."""
    commands: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", recorder(commands))
    setup_envs.setup_unsloth(tmp_path, python="/usr/bin/python3.11")
    built = len(commands)
    monkeypatch.setattr(setup_envs, "_requirements_digest", lambda source: "another")
    setup_envs.setup_unsloth(tmp_path)
    assert len(commands) > built and "reusing" in capsys.readouterr().err

