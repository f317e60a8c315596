"""A fast acceptance test for the common case, in msgspec's C decoder.

`accepts(fmt, block)` gives, per line of a block, True only for a line that the detailed checker
(checks.py) would pass without a single issue; anything unusual (tool calls, content parts, extra keys,
any error) gives False and goes to the detailed checker, which stays the one source of truth for issue
codes and messages. Roles, keys, non-empty content and `weight` are checked inside the decoder (a tagged
union per role); whitespace-only content is found by one regex over the whole block, and only a block
with a possible hit pays for a per-message check."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

NonEmpty = Annotated[str, Meta(min_length=1)]
_OPTIONS = {"tag_field": "role", "forbid_unknown_fields": True, "gc": False}


class _System(Struct, tag="system", **_OPTIONS):
    content: NonEmpty
    name: str | None = None


class _Developer(Struct, tag="developer", **_OPTIONS):
    content: NonEmpty
    name: str | None = None


class _User(Struct, tag="user", **_OPTIONS):
    content: NonEmpty
    name: str | None = None


class _Assistant(Struct, tag="assistant", **_OPTIONS):
    content: NonEmpty
    name: str | None = None
    weight: Literal[0, 1] | None = None


_Message = _System | _Developer | _User | _Assistant


class _Chat(Struct, forbid_unknown_fields=True, gc=False):
    messages: Annotated[list[_Message], Meta(min_length=1)]


class _Input(Struct, forbid_unknown_fields=True, gc=False):
    messages: Annotated[list[_Message], Meta(min_length=1)]


class _Preference(Struct, forbid_unknown_fields=True, gc=False):
    input: _Input
    preferred_output: Annotated[list[_Assistant], Meta(min_length=1, max_length=1)]
    non_preferred_output: Annotated[list[_Assistant], Meta(min_length=1, max_length=1)]


_decode_chat = msgspec.json.Decoder(_Chat).decode
_decode_preference = msgspec.json.Decoder(_Preference).decode
_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)  # nesting: the slow path says so
# A "content" string made only of whitespace, escapes or non-ASCII bytes (conservative: a hit only
# means the block's lines get the per-message whitespace check).
_MAYBE_BLANK = re.compile(rb'"content"\s*:\s*"(?:\s|\\(?:u[0-9a-fA-F]{4}|[^u])|[\x80-\xff])*"')


def accepts(fmt: str, block: list[bytes]) -> list[bool]:
    strict = _MAYBE_BLANK.search(b"".join(block)) is not None
    if fmt != "chat":
        return [_preference_ok(raw, strict) for raw in block]
    verdicts: list[bool] = []
    append = verdicts.append
    for raw in block:  # the hot loop: kept inline, no call per line beyond the decoder's
        try:
            messages = _decode_chat(raw).messages
        except _ERRORS:
            append(False)
            continue
        if strict and any(m.content.isspace() for m in messages):
            append(False)
        else:
            last = messages[-1]  # an assistant message with weight 1 (or none): something to learn
            append((last.__class__ is _Assistant and last.weight != 0)
                   or any(m.__class__ is _Assistant and m.weight != 0 for m in messages))
    return verdicts


def _preference_ok(raw: bytes, strict: bool) -> bool:
    try:
        pair = _decode_preference(raw)
    except _ERRORS:
        return False
    chosen, rejected = pair.preferred_output[0], pair.non_preferred_output[0]
    if pair.input.messages[-1].__class__ is not _User or chosen.weight is not None or rejected.weight is not None:
        return False
    if strict and any(m.content.isspace() for m in (*pair.input.messages, chosen, rejected)):
        return False
    # outputs equal up to whitespace take the slow path (an error when identical, a warning otherwise)
    return "".join(chosen.content.split()) != "".join(rejected.content.split())
