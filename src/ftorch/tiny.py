"""A small Llama-architecture model and a byte-level BPE tokenizer, built here (never downloaded),
cached by the hash of their spec, and loaded afterwards through the ordinary `from_pretrained` path."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from .cache import cache_root
from .config.schema import TinyModel

BUILD_VERSION = 1  # bump when the build recipe changes, so old caches are not reused
SPECIAL_TOKENS = ["<|pad|>", "<|begin|>", "<|end|>", "<|system|>", "<|developer|>", "<|user|>", "<|assistant|>",
                  "<|tool|>"]

# Assistant turns sit inside {% generation %} so TRL can train on assistant tokens only;
# the end-of-turn token is inside too, so the model learns to stop.
CHAT_TEMPLATE = (
    "{%- macro text(content) -%}{%- if content is string -%}{{ content }}{%- else -%}"
    "{%- for part in content -%}{{ part['text'] }}{%- endfor -%}{%- endif -%}{%- endmacro -%}"
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "<|assistant|>{% generation %}{{ text(message['content']) }}<|end|>{% endgeneration %}"
    "{%- else -%}"
    "<|{{ message['role'] }}|>{{ text(message['content']) }}<|end|>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


def _corpus() -> str:
    return resources.files("ftorch").joinpath("assets/tiny_corpus.txt").read_text()


def spec_key(spec: TinyModel) -> str:
    payload = json.dumps({"spec": spec.model_dump(), "version": BUILD_VERSION, "template": CHAT_TEMPLATE,
                          "corpus": hashlib.sha256(_corpus().encode()).hexdigest()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def tiny_model_dir(spec: TinyModel) -> Path:
    return cache_root() / "models" / f"tiny-llama-{spec_key(spec)}"


def ensure_tiny_model(spec: TinyModel, announce=None) -> Path:
    """The cached model folder, built first if missing, and built again when its content is not what was recorded
    (a truncated or missing file: cache.py). Safe when two processes build at once."""
    from .cache import damage, has_manifest, publish

    target = tiny_model_dir(spec)
    if target.exists():
        problem = damage(target)
        if problem is None:
            return target
        reason = "made by an older ftorch without a content manifest" if not has_manifest(target) and \
            (target / "config.json").is_file() else f"damaged: {problem}"
        (announce or _to_stderr)(f"ftorch: the tiny-model cache entry {target} is {reason}; building it again")
    publish(target, lambda staging: build(spec, staging), prefix=".build-")
    return target


def _to_stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


def build_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(_corpus().splitlines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|begin|>", eos_token="<|end|>",
                                        pad_token="<|pad|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build(spec: TinyModel, out: Path) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(spec.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
