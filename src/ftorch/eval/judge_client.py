"""Who the judge is: a hosted model on any OpenAI-compatible chat endpoint (OpenAI, Azure, a hosted open-model
service, a local vLLM or Ollama server through a base URL), through the official openai SDK; or a local model
loaded the way model.name is (a folder, a hub id or a GGUF file). Every call is cached by content (the judge's
identity, the exact messages, the decoding length), so re-evaluating costs nothing; tokens are counted, and a
hosted judge's spend is estimated and checked against eval.judge.max_cost_usd before the first call."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..config.schema import JudgeConfig
from ..errors import ConfigError, Problem

Messages = list[dict]
CACHE_VERSION = 1


class Endpoint(Protocol):
    identity: str  # what the cache key names: endpoint, server and model (a local model's files)
    hosted: bool

    def complete_all(self, conversations: Sequence[Messages], max_tokens: int,
                     choices: tuple[str, ...] = ()) -> list[tuple[str, int, int]]:
        """(reply, input tokens, output tokens) per conversation, in order. `choices`: the final lines a reply
        must end in (a local judge is held to exactly one of them; a hosted one reasons first)."""
        ...

    def count_tokens(self, messages: Messages) -> int: ...


class HostedEndpoint:
    """An OpenAI-compatible chat endpoint through the official SDK. The SDK retries rate limits (429), 5xx and
    timeouts with backoff (honouring Retry-After); a missing key is exit 2 naming the variable."""

    hosted = True

    def __init__(self, cfg: JudgeConfig):
        from ..openai_sdk import sdk_and_key

        openai, key = sdk_and_key("eval.judge.model", cfg.api_key_env, "the judge's API key is missing: the "
                                  "variable is not set", f"export {cfg.api_key_env}=... (ftorch never stores it), "
                                  "or use a local judge: eval.judge.endpoint=local")
        base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL")
        self.client = openai.OpenAI(api_key=key, base_url=base_url, max_retries=6, timeout=120)
        self.model, self.workers = str(cfg.model), cfg.workers
        self.identity = f"openai:{base_url or 'api.openai.com'}:{self.model}"

    def complete_all(self, conversations: Sequence[Messages], max_tokens: int,
                     choices: tuple[str, ...] = ()) -> list[tuple[str, int, int]]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda m: self._complete(m, max_tokens), conversations))

    def _complete(self, messages: Messages, max_tokens: int) -> tuple[str, int, int]:
        from ..openai_sdk import api_errors

        with api_errors(f"LLM judge {self.model}"):
            reply = self.client.chat.completions.create(model=self.model, messages=messages,
                                                        temperature=0, max_completion_tokens=max_tokens)
        usage = reply.usage
        return (reply.choices[0].message.content or "", usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0)

    def count_tokens(self, messages: Messages) -> int:
        from ..data.tokens import counter_for

        return counter_for(self.model).count_messages(messages)


class LocalEndpoint:
    """A local model as the judge, greedy, batched. Given the run's own loaded model (the same base weights),
    it judges with the adapter off instead of loading a second copy. Where the reply is a choice (a grade, a
    verdict), decoding is held to exactly one of the choices (eval/constrained.py's label constraint): a small
    local model cannot be trusted to follow the reply format, and a reply it cannot format is no judgement."""

    hosted = False

    def __init__(self, path: str, shared=None, batch_size: int = 8):
        """`path`: what from_pretrained loads (models.local_path / model_path); `shared`: that model, loaded."""
        self.batch_size = batch_size
        if shared is not None:
            self.model = shared
        else:
            from .local import LocalModel

            self.model = LocalModel(path, None)
        self.identity = f"local:{_files_identity(path)}"

    def complete_all(self, conversations: Sequence[Messages], max_tokens: int,
                     choices: tuple[str, ...] = ()) -> list[tuple[str, int, int]]:
        extra: dict[str, Any] = {}
        if choices:
            from .constrained import Constraint

            extra["constraint"] = Constraint("labels", labels=choices)
            max_tokens = max(len(self.model.tokenizer(c)["input_ids"]) for c in choices) + 2
        with self.model.system("base"):
            replies = self.model.generate(list(conversations), max_tokens, self.batch_size, **extra)
        return [(reply, self.count_tokens(m), len(self.model.tokenizer(reply)["input_ids"]))
                for reply, m in zip(replies, conversations)]

    def count_tokens(self, messages: Messages) -> int:
        return int(self.model.prompt_tokens(messages))


def _files_identity(name: str) -> str:
    """A local model's identity for the cache: its folder's weight and config files by name, size and time
    (a hub id stands for itself)."""
    folder = Path(name).expanduser()
    if not folder.is_dir():
        return name
    parts = sorted(f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in folder.iterdir()
                   if p.suffix in (".safetensors", ".bin", ".json") and p.is_file())
    return f"{folder.resolve()}|" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@dataclass
class Usage:
    calls: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class CachedJudge:
    """An endpoint with a content-keyed answer cache under $FTORCH_CACHE/judge/ and token accounting."""

    endpoint: Endpoint
    cfg: JudgeConfig
    usage: Usage = field(default_factory=Usage)
    folder: Path | None = None

    def __post_init__(self) -> None:
        if self.folder is None:
            from ..cache import cache_root

            self.folder = cache_root() / "judge"

    def key(self, messages: Messages, max_tokens: int, choices: tuple[str, ...] = ()) -> str:
        payload = json.dumps({"v": CACHE_VERSION, "judge": self.endpoint.identity, "messages": messages,
                              "max_tokens": max_tokens, "choices": list(choices)}, sort_keys=True,
                             ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.json"

    def complete_all(self, conversations: Sequence[Messages], max_tokens: int,
                     on_batch: Callable[[int], None] | None = None, choices: tuple[str, ...] = ()) -> list[str]:
        keys = [self.key(m, max_tokens, choices) for m in conversations]
        replies: dict[int, str] = {}
        for i, key in enumerate(keys):
            found = _read(self._path(key))
            if found is not None:
                replies[i] = found
        self.usage.cached += len(replies)
        missing = [i for i in range(len(conversations)) if i not in replies]
        if missing:
            self.check_budget([conversations[i] for i in missing], max_tokens)
        for start in range(0, len(missing), 16):
            chunk = missing[start:start + 16]
            for i, (text, tokens_in, tokens_out) in zip(chunk, self.endpoint.complete_all(
                    [conversations[i] for i in chunk], max_tokens, choices)):
                replies[i] = text
                self.usage.calls += 1
                self.usage.input_tokens += tokens_in
                self.usage.output_tokens += tokens_out
                _write(self._path(keys[i]), text)
            if on_batch:
                on_batch(len(chunk))
        return [replies[i] for i in range(len(conversations))]

    def dollars(self, input_tokens: int, output_tokens: int) -> float | None:
        if not self.endpoint.hosted or self.cfg.input_usd_per_1m is None:
            return None
        return (input_tokens * self.cfg.input_usd_per_1m + output_tokens * (self.cfg.output_usd_per_1m or 0.0)) / 1e6

    def spent(self) -> float | None:
        return self.dollars(self.usage.input_tokens, self.usage.output_tokens)

    def check_budget(self, conversations: Sequence[Messages], max_tokens: int) -> None:
        """A hosted judge's estimated spend for these calls (prompt tokens counted, replies at their maximum)
        refused before any call when it would pass eval.judge.max_cost_usd; without a price, a budget cannot be
        checked and is refused too."""
        if not self.endpoint.hosted or self.cfg.max_cost_usd is None:
            return
        if self.cfg.input_usd_per_1m is None:
            raise ConfigError(Problem("eval.judge.max_cost_usd", "a budget needs the judge's price",
                                      "set eval.judge.input_usd_per_1m and eval.judge.output_usd_per_1m"))
        tokens_in = sum(self.endpoint.count_tokens(m) for m in conversations)
        estimate = (self.spent() or 0.0) + (self.dollars(tokens_in, max_tokens * len(conversations)) or 0.0)
        if estimate > self.cfg.max_cost_usd:
            raise ConfigError(Problem("eval.judge.max_cost_usd",
                                      f"the judge's calls would cost up to ${estimate:.2f} ({len(conversations)} "
                                      f"calls, {tokens_in} prompt tokens), over the limit of "
                                      f"${self.cfg.max_cost_usd:.2f}",
                                      "raise eval.judge.max_cost_usd, lower eval.limit, or use a local judge"))


def _read(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["reply"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(path: Path, reply: str) -> None:
    from ..safe_io import ensure_dir, write_text

    ensure_dir(path.parent)
    write_text(path, json.dumps({"reply": reply}, ensure_ascii=False))


BASE = "base"  # eval.judge.model=base: the run's own base model, adapter off (endpoint=local)


def judge_for(cfg: JudgeConfig, model_cfg=None, shared_model=None) -> CachedJudge:
    """The configured judge, cached. With endpoint=local, `shared_model` (the run's loaded local model, when it
    has one) judges when the judge is the run's base model (eval.judge.model=base, or the same name as
    model.name) instead of a second copy being loaded."""
    if cfg.endpoint != "local":
        return CachedJudge(HostedEndpoint(cfg), cfg)
    from ..models import local_path, model_path

    same = model_cfg is not None and cfg.model in (BASE, model_cfg.name)
    if cfg.model == BASE and model_cfg is None:
        raise ConfigError(Problem("eval.judge.model", "'base' names the run's own base model, and this evaluation "
                                  "has none", "name a model folder, hub id or .gguf file"))
    path = model_path(model_cfg) if same else local_path(str(cfg.model))
    return CachedJudge(LocalEndpoint(path, shared_model if same else None), cfg)


def as_text(value: Any) -> str:
    """A message content (a string, or the chat API's list of parts) as plain text for a judge prompt."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in value)
    return "" if value is None else str(value)
