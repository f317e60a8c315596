"""Signal handling shared by training, resuming and evaluating: Ctrl-C and SIGTERM held while a record is written,
or SIGTERM raised as RunInterrupted so a run stops the way Ctrl-C stops it. Its own module so eval/ and cli/ use it
without importing run/lifecycle.py (which imports eval/)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import RunInterrupted


@contextmanager
def signals_held() -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM are noted, not raised, inside this block (main thread only)."""
    caught: list[int] = []

    def hold(signum, frame):
        caught.append(signum)

    previous: dict = {}
    try:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):  # one at a time, each restored even if the next fails
                previous[sig] = signal.signal(sig, hold)
        except ValueError:  # not the main thread
            pass
        yield caught
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises RunInterrupted inside this block (main thread only), as Ctrl-C raises KeyboardInterrupt."""
    def handler(signum, frame):
        raise RunInterrupted()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
