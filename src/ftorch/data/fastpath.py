"""A fast acceptance test for the common case, in msgspec's C decoder.

`chat_line_ok(line)` returns True only for a line that the detailed checker (checks.py) would pass
without a single issue; anything unusual (tool calls, content parts, extra keys, any error) returns False
and goes to the detailed checker, which stays the one source of truth for issue codes and messages."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

NonEmpty = Annotated[str, Meta(min_length=1)]


class _Message(Struct, forbid_unknown_fields=True):
    role: Literal["system", "developer", "user", "assistant"]
    content: NonEmpty
    name: str | None = None
    weight: Literal[0, 1] | None = None


class _Chat(Struct, forbid_unknown_fields=True):
    messages: Annotated[list[_Message], Meta(min_length=1)]


class _Preference(Struct, forbid_unknown_fields=True):
    input: _Chat
    preferred_output: Annotated[list[_Message], Meta(min_length=1, max_length=1)]
    non_preferred_output: Annotated[list[_Message], Meta(min_length=1, max_length=1)]


_CHAT = msgspec.json.Decoder(_Chat)
_PREFERENCE = msgspec.json.Decoder(_Preference)
_ERRORS = (msgspec.ValidationError, msgspec.DecodeError)


def chat_line_ok(line: bytes) -> bool:
    try:
        example = _CHAT.decode(line)
    except _ERRORS:
        return False
    has_assistant = False
    for message in example.messages:
        if message.content.isspace():
            return False
        if message.role == "assistant":
            has_assistant = True
        elif message.weight is not None:
            return False
    return has_assistant


def preference_line_ok(line: bytes) -> bool:
    try:
        example = _PREFERENCE.decode(line)
    except _ERRORS:
        return False
    messages = example.input.messages
    if messages[-1].role != "user":
        return False
    for message in messages:
        if message.content.isspace() or message.weight is not None:
            return False
    chosen, rejected = example.preferred_output[0], example.non_preferred_output[0]
    return (chosen.role == "assistant" and rejected.role == "assistant" and chosen.weight is None
            and rejected.weight is None and not chosen.content.isspace() and not rejected.content.isspace()
            and chosen.content != rejected.content)
