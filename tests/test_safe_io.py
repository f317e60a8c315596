"""ftorch.safe_io: no write follows a symlink, no non-regular file is written, replacements are atomic."""

from __future__ import annotations

import os

import pytest

from ftorch import safe_io
from ftorch.safe_io import UnsafePath


def test_append_refuses_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "train.log").symlink_to(victim)
    with pytest.raises(UnsafePath, match="symlink"):
        safe_io.open_append(tmp_path / "train.log")
    assert victim.read_text() == "precious\n"


def test_append_refuses_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UnsafePath, match="not a regular file"):
        safe_io.open_append(tmp_path / "pipe")


def test_append_creates_and_appends(tmp_path):
    for line in ("a\n", "b\n"):
        with safe_io.open_append(tmp_path / "log") as handle:
            handle.write(line)
    assert (tmp_path / "log").read_text() == "a\nb\n"


def test_atomic_write_replaces_a_symlink_and_leaves_its_target_alone(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "report.md").symlink_to(victim)
    safe_io.write_text(tmp_path / "report.md", "mine\n")
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "report.md").is_symlink()
    assert (tmp_path / "report.md").read_text() == "mine\n"


def test_atomic_write_leaves_no_temporary_file_on_error(tmp_path):
    with pytest.raises(RuntimeError), safe_io.atomic_writer(tmp_path / "out.json") as handle:
        handle.write("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_open_fd_refuses_symlink_even_to_a_missing_target(tmp_path):
    (tmp_path / "run.lock").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UnsafePath):
        safe_io.open_fd(tmp_path / "run.lock", os.O_RDWR | os.O_CREAT)
    assert not (tmp_path / "nowhere").exists()
