"""Argparse types for numeric flags, so a value out of range is refused by argparse itself (exit 2, the usage line
and a message naming the flag) instead of failing later with a traceback: `--max-new-tokens -5`, `--port 70000`."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer above zero (a count: tokens, examples)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number (1 or more)")
    return value


def port(text: str) -> int:
    """A TCP port number, 0 to 65535 (0: let the system pick a free one)."""
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
