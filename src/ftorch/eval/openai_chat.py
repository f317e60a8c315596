"""An OpenAI model under evaluation, through chat completions with the official SDK: `base` and `prompted`
use the base model id, `tuned` the fine-tuned one. Greedy (temperature 0, fixed seed); requests run
`batch_size` at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

Messages = list[dict]


class OpenAIChat:
    def __init__(self, client, base_model: str, tuned_model: str | None, counter, seed: int, errors=None):
        self.client, self.counter, self.seed = client, counter, seed
        self.errors = errors  # the SDK's error wording (openai_sdk.api_errors by default; together_sdk's too)
        self.models = {"base": base_model, "prompted": base_model, "tuned": tuned_model or base_model}
        self.current = "tuned"
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}

    @contextmanager
    def system(self, name: str) -> Iterator[None]:
        previous, self.current = self.current, name
        try:
            yield
        finally:
            self.current = previous

    constraint_kinds = ("json_schema",)  # response_format; a label set cannot be held to on this API

    def prompt_tokens(self, messages: Messages) -> int:
        return self.counter.count_messages(messages)

    def generate(self, conversations: list[Messages], max_new_tokens: int, batch_size: int,
                 on_batch: Callable[[int], None] | None = None, constraint=None) -> list[str]:
        from ..openai_sdk import api_errors as openai_errors

        api_errors = self.errors or openai_errors
        model = self.models.get(self.current, self.models["base"])  # a prompting arm asks the base model
        extra = {}
        if constraint is not None:
            from .constrained import response_format

            extra["response_format"] = response_format(constraint)

        def ask(messages: Messages) -> str:
            with api_errors(f"chat completion with {model}"):
                reply = self.client.chat.completions.create(model=model, messages=messages, temperature=0,
                                                            max_completion_tokens=max_new_tokens, seed=self.seed,
                                                            **extra)
            if reply.usage:
                self.usage["prompt_tokens"] += reply.usage.prompt_tokens
                self.usage["completion_tokens"] += reply.usage.completion_tokens
            if on_batch:
                on_batch(1)
            return (reply.choices[0].message.content or "").strip()

        with ThreadPoolExecutor(max_workers=batch_size) as pool:
            return list(pool.map(ask, conversations))
