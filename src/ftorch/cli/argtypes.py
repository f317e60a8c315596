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
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535): give one from 1024 to 65535, "
                                         "or 0 for a free one")
    return value


def add_max_line_bytes(parser: argparse.ArgumentParser) -> None:
    """`--max-line-bytes N`, as data.max_line_bytes, for every command that reads a data file."""
    from ..data.lines import DEFAULT_MAX_LINE_BYTES

    parser.add_argument("--max-line-bytes", type=positive_int, default=DEFAULT_MAX_LINE_BYTES, metavar="N",
                        help="a line (a JSON array's element) longer than N bytes is reported unread, before any parse "
                        f"(default {DEFAULT_MAX_LINE_BYTES:,}, as data.max_line_bytes)")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
