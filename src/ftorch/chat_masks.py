"""Which tokens of a conversation are the assistant's, for any chat template: the loss mask of assistant-only
training and of the held-out loss.

A template that marks assistant turns with {% generation %} gives the mask itself
(`apply_chat_template(return_assistant_tokens_mask=True)`). For any other template the mask is computed from the
rendered text: for assistant message i, `messages[:i]` rendered with the generation prompt ends where the reply
starts, and `messages[:i+1]` ends where the turn ends, after the template's end-of-turn text (ChatML: `<|im_end|>\\n`).
Both renders must be prefixes of the whole conversation's render (the template is "prefix-preserving" for this
conversation; one allowance: a template that closes a finished conversation with eos_token, as Phi-3's does); the
fast tokenizer's character offsets then map those spans to tokens. The rendered text is tokenized as
`apply_chat_template` does it (no special tokens added: the template writes BOS where it wants one), so the ids are
the same. A template that is not prefix-preserving, that ignores add_generation_prompt (its assistant header would
be masked), or that cannot render the conversation gives a MaskError saying which message and why.

Boundary rule, for a token that straddles the edge of an assistant span (rare: role headers and end-of-turn markers
are usually special tokens): one that straddles the start is the assistant's, since it carries the first characters
of the reply and the model has to produce it; one that straddles the end is not, since it carries the start of the
next turn, which the model never produces (it has stopped). Tokens wholly inside a span are the assistant's, as
transformers marks {% generation %} blocks, so both ways give the same mask token for token where the template and
its marked version agree on the spans (tests/test_chat_masks.py checks it on every template TRL ships a marked
training version of, and lists where and why they do not agree).

Nothing heavy is imported here: the tokenizer is passed in.
"""

from __future__ import annotations

import re
from typing import Any

MARKERS = re.compile(r"\{%-?\s*generation\s*-?%\}")  # the test transformers and TRL use

HINT = ("set train.assistant_only_loss=false (loss on every token), or use a chat template that is "
        "prefix-preserving or marks assistant turns with {% generation %}")


class MaskError(ValueError):
    """The assistant tokens of this conversation cannot be found with this chat template; str() says why."""


def has_generation_markers(template: str | None) -> bool:
    return template is not None and MARKERS.search(template) is not None


def chat_template(tokenizer, tools: list | None = None) -> str:
    """The template apply_chat_template would use (a dict of named templates picks 'default' or 'tool_use')."""
    try:
        return tokenizer.get_chat_template(None, tools)
    except ValueError as exc:  # no chat template at all
        raise MaskError(f"the tokenizer has no chat template ({str(exc).splitlines()[0]})") from None


def assistant_token_mask(tokenizer, messages: list[dict], tools: list | None = None) -> tuple[list[int], list[int]]:
    """(input_ids, mask): mask is 1 on each assistant message's tokens, its end-of-turn text included, and 0 on
    everything else (system, user and tool turns, role headers, generation prompts). Raises MaskError."""
    if has_generation_markers(chat_template(tokenizer, tools)):
        out = _apply(tokenizer, messages, tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        return list(out["input_ids"]), list(out["assistant_masks"])
    text, spans = assistant_spans(tokenizer, messages, tools)
    if not getattr(tokenizer, "is_fast", False):
        raise MaskError("finding the assistant tokens of a template without {% generation %} markers needs a fast "
                        "tokenizer (character offsets); this one is a slow (Python) tokenizer")
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(encoded["input_ids"]), mask_from_spans(encoded["offset_mapping"], spans)


def mask_from_spans(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """1 for each token inside a character span, or straddling its start; 0 for one straddling its end (see the
    module docstring). Spans and offsets are both in order, so one pass does."""
    mask = [0] * len(offsets)
    index = 0
    for token, (start, end) in enumerate(offsets):
        while index < len(spans) and start >= spans[index][1]:
            index += 1
        if index == len(spans):
            break
        span_start, span_end = spans[index]
        if end > span_start and (end <= span_end or start <= span_start):
            mask[token] = 1
    return mask


PROBE = [{"role": "user", "content": "Book a call with Ana on Monday."},
         {"role": "assistant", "content": "Booked: Monday 9am with Ana."},
         {"role": "user", "content": "Move it to Tuesday."},
         {"role": "assistant", "content": "Moved to Tuesday 9am."}]


def template_problem(tokenizer) -> str | None:
    """Why this tokenizer's template cannot give assistant masks by offsets (None: it can), judged on a two-turn
    probe conversation: the spans must be found, the text must tokenize to apply_chat_template's ids, and each
    turn must end with an end-of-turn text (else a model trained on assistant tokens only never learns to stop)."""
    try:
        text, spans = assistant_spans(tokenizer, PROBE)
        if not getattr(tokenizer, "is_fast", False):
            return "the tokenizer is a slow (Python) one, without the character offsets the mask needs"
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if list(ids) != list(_apply(tokenizer, PROBE, None, tokenize=True, return_dict=False)):
            return "tokenizing the rendered conversation does not give apply_chat_template's token ids"
    except MaskError as exc:
        return str(exc)
    for (start, end), message in zip(spans, [m for m in PROBE if m["role"] == "assistant"]):
        at = text.find(message["content"], start, end)
        if at >= 0 and not text[at + len(message["content"]):end].strip():
            return ("the chat template writes no end-of-turn text after an assistant turn (the next turn's header "
                    "ends it), so a model trained on assistant tokens only would never learn to stop")
    return None


def assistant_spans(tokenizer, messages: list[dict], tools: list | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span [start, end) of each assistant message in it."""
    template = chat_template(tokenizer, tools)
    reads_generation_prompt = "add_generation_prompt" in template

    def render(part: list[dict], generation_prompt: bool) -> str:
        return _apply(tokenizer, part, tools, tokenize=False, add_generation_prompt=generation_prompt)

    full = render(messages, False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        where = f"message {i + 1} (assistant)"
        if i == 0:
            raise MaskError(f"{where} opens the conversation: nothing renders before it to tell where it starts")
        before = render(messages[:i], True)
        through = render(messages[: i + 1], False)
        if not full.startswith(before):
            raise MaskError(f"{where}: the chat template is not prefix-preserving: the conversation before it, "
                            "rendered with the generation prompt, is not how the whole conversation starts "
                            f"({_parting(before, full)})")
        end = _turn_end(through, full, getattr(tokenizer, "eos_token", None))
        if end is None:
            raise MaskError(f"{where}: the chat template is not prefix-preserving: it renders the conversation "
                            "differently when this message is the last one, so where the turn ends cannot be told "
                            f"({_parting(through, full)})")
        start = len(before)
        if end <= start:
            raise MaskError(f"{where}: the chat template renders nothing for it after the generation prompt")
        if spans and start < spans[-1][1]:
            raise MaskError(f"{where}: its span overlaps the previous assistant turn's")
        if not reads_generation_prompt and before == render(messages[:i], False):
            lead = _lead(full[start:end], message)
            if lead is not None and lead.strip():
                raise MaskError(f"{where}: the chat template ignores add_generation_prompt, so the turn's header "
                                f"{lead!r} cannot be told apart from what the assistant writes")
        spans.append((start, end))
    if not spans:
        raise MaskError("the conversation has no assistant message")
    return full, spans


def _apply(tokenizer, messages: list[dict], tools: list | None, **kwargs):
    try:
        return tokenizer.apply_chat_template(messages, tools=tools, **kwargs)
    except Exception as exc:  # jinja's TemplateError, raise_exception() in the template, a missing key...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise MaskError(f"the chat template cannot render the conversation up to message {len(messages)}: "
                        f"{type(exc).__name__}: {first}") from None


def _lead(span_text: str, message: dict[str, Any]) -> str | None:
    """The text of a span before the message's content (None when the content is not found verbatim)."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str) or not content.strip():
        return None
    at = span_text.find(content.strip())
    return span_text[:at] if at >= 0 else None


def _turn_end(through: str, full: str, eos: str | None) -> int | None:
    """Where the turn that `through` ends with ends inside `full`: the end of `through` when it is a prefix of
    `full`; or, for a template that closes a finished conversation with eos_token (Phi-3 does), the end of
    `through` without that closing eos_token. None when neither holds."""
    if full.startswith(through):
        return len(through)
    if eos and through.endswith(eos) and full.endswith(eos) and full.startswith(through[: -len(eos)]):
        return len(through) - len(eos)
    return None


def _parting(prefix: str, full: str) -> str:
    """Where two renders part, with a little of each, for an error message."""
    n = 0
    for a, b in zip(prefix, full):
        if a != b:
            break
        n += 1
    return (f"they part at character {n}: {prefix[max(0, n - 15):n + 25]!r} against "
            f"{full[max(0, n - 15):n + 25]!r}")
