"""`ftorch chat RUN_DIR [--compare]`: talk to a run's tuned model in the terminal (the session: ftorch.chat)."""

from __future__ import annotations

from pathlib import Path

from .argtypes import positive_int


def add_parser(sub) -> None:
    chat = sub.add_parser("chat", help="chat with a run's tuned model in the terminal (/system /reset /save /quit)")
    chat.add_argument("run_dir", type=Path)
    chat.add_argument("--compare", action="store_true", help="answer each message with the base model too")
    chat.add_argument("--max-new-tokens", type=positive_int, default=256, metavar="N",
                      help="longest reply, in tokens (default 256); a message must leave room for it in the context")


def run(args) -> int:
    from ..chat import chat

    return chat(args)
