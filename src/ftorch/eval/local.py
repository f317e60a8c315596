"""A local model under evaluation: the base model with the run's LoRA adapter attached, so one load serves
both systems (`base` runs with the adapter disabled). Generation is batched with left padding and the KV
cache, greedy, and stops at the end-of-turn token; scoring gives per-token losses and next-token
distributions for held-out loss and drift."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from .forced import ForcedStart
from .prefix import MINIMUM_SAVED

Messages = list[dict]
# Bump when generate() can reply differently for the same model, prompt and settings: the answer cache
# (eval/answer_cache.py) keys on it, so answers of the old decoder are not reused.
DECODER_VERSION = 1


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def dtype_for(device: str):
    """The dtype a local model is evaluated in on `device`."""
    import torch

    return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32


# The most KV cache one decoding batch may hold (its rows x (longest prompt + max_new_tokens) x the bytes a token
# takes): eval.decode_batch_size rows, fewer where long prompts on a larger model would need more. SmolLM2-135M
# takes 46 KB a token in float32: 128 rows of 700 tokens fit.
DECODE_CACHE_BYTES = 4 << 30

# The largest model whose tuned answers come from a merged copy (see merges_adapter): the copy's extra memory.
MERGED_COPY_MAX_BYTES = 2 << 30


def merges_adapter(device: str, base_path: str | None, adapter: Path | None) -> bool:
    """Whether 'tuned' answers come from a copy of the model with the LoRA adapter merged into its weights: on the
    CPU, where the adapter's extra small matmuls in every layer cost about a fifth of decoding
    (bench/decode_settings.py: 0.79x the time, every reply identical), for a model whose weight files take at
    most MERGED_COPY_MAX_BYTES (the copy is that much memory again). Base and prompted answers always come from
    the unmerged weights, so merging never touches them."""
    if device != "cpu" or adapter is None or base_path is None or not _linear_lora_only(adapter):
        return False
    folder = Path(base_path).expanduser()
    if not folder.is_dir():
        return False
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file()]
    return bool(weights) and sum(p.stat().st_size for p in weights) <= MERGED_COPY_MAX_BYTES


# modules that hold or share the token embeddings: merging into a tied one would change the other as well
EMBEDDING_MODULES = {"embed_tokens", "lm_head", "wte", "embed_out", "word_embeddings", "shared", "output"}


def _linear_lora_only(adapter: Path) -> bool:
    """A plain LoRA adapter on named projections (adapter_config.json): no module trained in full
    (modules_to_save), no trainable tokens, no embedding or output layer among its targets, targets given as a
    list (a regex is not resolved here): what merges into a copy without touching tied weights."""
    import json

    try:
        config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    targets = config.get("target_modules")
    return (isinstance(config, dict) and config.get("peft_type") == "LORA" and not config.get("modules_to_save")
            and not config.get("trainable_token_indices") and isinstance(targets, list) and bool(targets)
            and not any(str(name).rsplit(".", 1)[-1] in EMBEDDING_MODULES for name in targets))


def length_batches(lengths: list[int], size: int) -> list[list[int]]:
    """Indices ordered by length, in batches of `size`: rows of similar length are padded together. Callers put
    each result back at its index."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start:start + size] for start in range(0, len(order), size)]


def load_tokenizer(base_path: str, adapter: Path | None) -> Any:
    """The adapter's tokenizer when it saved one, else the base model's; left padding, a pad token."""
    from transformers import AutoTokenizer

    from ..backends.hf.loading import loading

    with_tokenizer = adapter is not None and (adapter / "tokenizer_config.json").exists()
    tokenizer_source = adapter if with_tokenizer else base_path
    with loading(str(tokenizer_source), "tokenizer"):
        tokenizer: Any = AutoTokenizer.from_pretrained(str(tokenizer_source))  # transformers' stubs: unions
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


_CHAT_IDS: WeakKeyDictionary = WeakKeyDictionary()  # tokenizer -> {messages as JSON: token ids}


def chat_ids(tokenizer, messages: Messages) -> list[int]:
    """The prompt's token ids as generation sees them (chat template, generation prompt added). Remembered per
    tokenizer: an evaluation asks for a prompt's ids several times (its answer cache key, its token count, its
    decoding), and the template takes about a millisecond."""
    import json

    known = _CHAT_IDS.setdefault(tokenizer, {})
    key = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str)
    if key not in known:
        known[key] = tuple(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                         return_dict=False))
    return list(known[key])


def model_config(base_path: str) -> dict[str, Any]:
    """The model's config.json as a dict (a folder's file read directly: importing the model's configuration class
    costs seconds), else what AutoConfig resolves for a hub id."""
    import json

    path = Path(base_path).expanduser() / "config.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            return data
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(base_path).to_dict()


def positive_length(length: Any) -> int | None:
    """A config's max_position_embeddings as the context length, where it is a positive int."""
    return int(length) if isinstance(length, int) and length > 0 else None


def mean_token_loss(rows: list[tuple[float, int]]) -> tuple[float, int]:
    """Mean negative log-likelihood per assistant token (the training loss, on held-out data) over
    LocalModel.assistant_token_losses's rows, and the number of tokens; NaN where there are none."""
    total, count = sum(nll for nll, _ in rows), sum(tokens for _, tokens in rows)
    return (total / count if count else float("nan")), count


class LocalModel:
    """Weights load on first use: the base model with the adapter (`model` outside a 'tuned' block) and the merged
    copy (inside one, where merge_tuned) each load when first asked for, so an evaluation whose base answers all
    come from the answer cache (a sweep's later trial) loads only the merged copy."""

    def __init__(self, base_path: str, adapter: Path | None, device: str | None = None, tokenizer: Any = None):
        self.device = device or default_device()
        self.tokenizer: Any = tokenizer if tokenizer is not None else load_tokenizer(base_path, adapter)
        self.has_adapter = adapter is not None
        self.base_path: str | None = base_path  # what the answer cache hashes (eval/answer_cache.py)
        self.adapter_path: Path | None = adapter
        self.merge_tuned = merges_adapter(self.device, base_path, adapter)
        self._unmerged: Any = None
        self._merged: Any = None
        self._serving_merged = False  # inside a 'tuned' block that answers from the merged copy
        self._adapter_off = 0  # system() blocks with the adapter off, open now
        self._files_config: dict[str, Any] | None = None  # config.json, read once where no copy is loaded yet

    @classmethod
    def from_loaded(cls, model, tokenizer, device: str | None = None) -> LocalModel:
        """A model already loaded some other way (an export: a merged folder, a GGUF file), without an adapter,
        decoded by the same batched greedy generation."""
        import torch

        self = cls.__new__(cls)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.has_adapter = False
        self.base_path, self.adapter_path = None, None  # no files known: its answers are not cached
        self.merge_tuned, self._merged, self._serving_merged, self._adapter_off = False, None, False, 0
        self._files_config = None
        self._unmerged = model.to(self.device).eval()
        return self

    @property
    def model(self) -> Any:
        """The model answering now: the merged copy inside a 'tuned' block where merge_tuned, else the base model
        with the adapter attached (PEFT), loaded on first use."""
        if self._serving_merged:
            return self._merged_model()
        if self._unmerged is None:
            self._unmerged = self._load(merged=False)
        return self._unmerged

    @model.setter
    def model(self, value: Any) -> None:
        self._unmerged = value

    def _load(self, merged: bool) -> Any:
        """The base model from its folder, with the adapter attached, or merged into its weights."""
        from transformers import AutoModelForCausalLM

        from ..backends.hf.loading import loading

        assert self.base_path is not None  # from_loaded models are never loaded here
        with loading(self.base_path, "model"):
            model: Any = AutoModelForCausalLM.from_pretrained(self.base_path, dtype=dtype_for(self.device))
        if self.adapter_path is not None:
            from peft import PeftModel

            with loading(str(self.adapter_path), "LoRA adapter"):
                model = PeftModel.from_pretrained(model, str(self.adapter_path))
            if merged:
                model = model.merge_and_unload()
        return model.to(self.device).eval()

    @contextmanager
    def system(self, name: str) -> Iterator[None]:
        """Every system but 'tuned' is the base model: the adapter is off for the block ('prompted' and the
        prompting arms are the base model with a different prompt, never the tuned model with examples). An outer
        block's 'off' holds inside. 'tuned' answers from the merged copy where merges_adapter says so."""
        outer = self._serving_merged
        if name != "tuned" and self.has_adapter:
            self._adapter_off += 1
            self._serving_merged = False
            try:
                with self.model.disable_adapter():
                    yield
            finally:
                self._adapter_off -= 1
                self._serving_merged = outer
        elif name == "tuned" and self.merge_tuned and not self._adapter_off:
            self._serving_merged = True
            try:
                yield
            finally:
                self._serving_merged = outer
        else:
            yield

    def load_for(self, systems: tuple[str, ...]) -> None:
        """Load now the weights these systems answer with (each copy otherwise loads on first use): an interactive
        session loads before its first prompt, not in the middle of a reply."""
        for name in systems:
            with self.system(name):
                _ = self.model

    def _merged_model(self):
        """The model with the adapter merged into its weights, loaded from the files on first use (never the loaded
        unmerged model merged in place: the base weights are never changed and restored, so base answers do not
        drift, and a later trial of a sweep never loads the unmerged model at all)."""
        if self._merged is None:
            self._merged = self._load(merged=True)
        return self._merged

    constraint_kinds = ("json_schema", "labels")  # what `generate(constraint=)` can hold replies to
    decodes_locally = True  # generate()'s batch is rows of one KV cache (EvalConfig.generation_batch)
    takes_drafts = True  # generate(drafts=): earlier replies to check several tokens at a time (eval/drafts.py)
    keyed_by_files = True  # the answer cache keys its answers by base_path's and adapter_path's files (LocalDescriber)
    decode_cache_bytes = DECODE_CACHE_BYTES  # at most this much KV cache per batch: fewer rows for long prompts
    share_prefix = True  # prefill a shared prompt prefix once per generate() call (eval/prefix.py)
    grow_cache_in_place = True  # the KV cache's layers grow in buffers, not by concatenation (eval/kv_cache.py)
    shed_fraction = 0.25  # finished rows leave the batch once this share of its rows has finished (_greedy)
    min_prefix_saving = MINIMUM_SAVED  # prompt tokens a shared prefix must save over a call's rows

    def prompt_tokens(self, messages: Messages) -> int:
        return len(self._encode(messages))

    @property
    def context_length(self) -> int | None:
        """Tokens the model attends to (prompt and reply), for capping the number of examples in a prompt. Read from
        whichever copy is loaded, else from the model's files: asking never loads weights (a sweep's later trial
        that needs only the merged copy must not load the unmerged one to learn its context length)."""
        loaded = self._merged if self._merged is not None else self._unmerged
        if loaded is not None:
            return positive_length(getattr(loaded.config, "max_position_embeddings", None))
        if self._files_config is None:
            assert self.base_path is not None  # from_loaded models are loaded
            self._files_config = model_config(self.base_path)
        return positive_length(self._files_config.get("max_position_embeddings"))

    def _token_mask(self, constraint):
        from .constrained import TokenMask, tokenizer_data

        if getattr(self, "_enforcer_data", None) is None:
            self._enforcer_data = tokenizer_data(self.tokenizer)  # about a second for a 50k vocabulary: once
        return TokenMask(self._enforcer_data, constraint, self.stop_ids())

    def _encode(self, messages: Messages) -> list[int]:
        return chat_ids(self.tokenizer, messages)

    def generate(self, conversations: list[Messages], max_new_tokens: int, batch_size: int,
                 on_batch: Callable[[int], None] | None = None, min_new_tokens: int = 0,
                 constraint=None, drafts: list[list[str]] | None = None,
                 starts: list[ForcedStart | None] | None = None) -> list[str]:
        """Greedy replies, batched by similar length (order restored) in batches of at most `batch_size` (fewer where
        their KV cache would pass `decode_cache_bytes`), as even as can be. A row stops at the end-of-turn token or
        max_new_tokens; finished rows leave the batch (their KV cache rows dropped) in groups while longer ones go
        on (_greedy). Identical to one-at-a-time generation up to floating-point reduction order
        (bench/eval_generate.py counts the identical replies). A `constraint` (eval/constrained.py) masks each row's
        logits to what it allows next. `drafts` (per conversation, earlier replies to the same prompt) are guesses
        the decoder checks several tokens at a time (eval/drafts.py); `starts` (per conversation, read off the
        held-out loss's pass: eval/forced.py) are the replies' known beginnings, prefilled with the prompt, or the
        whole reply with no decoding. Both for unconstrained replies only."""
        from .drafts import encode

        encoded = [self._encode(m) for m in conversations]
        mask = self._token_mask(constraint) if constraint is not None else None
        if constraint is not None or min_new_tokens:
            drafts = starts = None  # (as _greedy decides it: before they are encoded and counted in the batch's memory)
        stop = self.stop_ids()
        used = [s if s is not None and s.prompt == tuple(e) else None
                for s, e in zip(starts or [None] * len(encoded), encoded)]
        begun = [list(s.tokens) if s is not None else [] for s in used]
        guesses = [encode(self.tokenizer, d, self.tokenizer.eos_token_id if self.tokenizer.eos_token_id in stop
                          else stop[0]) for d in drafts] if drafts is not None else None
        replies: list[str] = [""] * len(encoded)
        decoding = []  # the rows whose known beginning is not their whole reply
        for index, start in enumerate(used):
            if start is not None and start.complete(stop, max_new_tokens):
                replies[index] = self.tokenizer.decode([t for t in start.tokens if t not in stop],
                                                       skip_special_tokens=True).strip()
            else:
                decoding.append(index)
        if on_batch and len(decoding) < len(encoded):
            on_batch(len(encoded) - len(decoding))
        prefix = self._shared_prefix([encoded[i] for i in decoding])
        # a drafted batch's cache also holds the columns of rejected guesses: at most max_new_tokens more (_greedy)
        longest = max((len(encoded[i]) for i in decoding), default=0) + max_new_tokens * (2 if guesses else 1)
        batch_size = max(1, min(batch_size, self.decode_cache_bytes // max(1, self._cache_bytes_per_token() * longest)))
        batches = math.ceil(len(decoding) / batch_size)
        size = math.ceil(len(decoding) / batches) if batches else 1  # even batches: 72 prompts at most 64 -> 36 + 36
        for chunk in length_batches([len(encoded[i]) + len(begun[i]) for i in decoding], size):
            rows = [decoding[c] for c in chunk]
            for index, tokens in zip(rows, self._greedy([encoded[i] + begun[i] for i in rows], max_new_tokens,
                                                        min_new_tokens, mask, prefix,
                                                        [guesses[i] for i in rows] if guesses else None,
                                                        [begun[i] for i in rows])):
                replies[index] = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
            if on_batch:
                on_batch(len(chunk))
        return replies

    def _cache_bytes_per_token(self) -> int:
        """The KV cache's bytes for one token of one row: keys and values of every layer."""
        config = self.model.config
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = getattr(config, "num_attention_heads", 1) or 1
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        element = next(self.model.parameters()).element_size()
        return 2 * config.num_hidden_layers * kv_heads * head_dim * element

    def _shared_prefix(self, encoded: list[list[int]]):
        """The call's shared prompt prefix with its KV cache (eval/prefix.py), or None when the prompts share
        too little to save `min_prefix_saving` tokens of prefill, `share_prefix` is off, or the model has
        sliding-window or linear-attention layers."""
        from .prefix import common_prefix_length, prefill, supported

        length = common_prefix_length(encoded, self.min_prefix_saving) if self.share_prefix else 0
        if not length or not supported(self.model.config):
            return None
        return prefill(self.model, encoded[0][:length], self._cache_keyword(), self.device)

    def _greedy(self, prompts: list[list[int]], max_new_tokens: int, min_new_tokens: int,
                token_mask=None, prefix=None, drafts: list[list[list[int]]] | None = None,
                begun: list[list[int]] | None = None) -> list[list[int]]:
        """Greedy decoding of left-padded prompts with a KV cache that sheds finished rows; with a `prefix`
        (eval/prefix.py) the batch starts from its cache and prefills only the suffixes. A finished row stays in
        the batch (its tokens ignored) until `shed_fraction` of the rows have finished: dropping rows copies the
        whole cache, so it is done in a few large steps rather than one per reply. With `drafts` (per prompt,
        earlier replies' token ids: eval/drafts.py) a step carries each row's guess after its token and keeps the
        guessed tokens the model picks itself; a rejected guess's cache columns stay, masked out. `begun` (per
        prompt, no stop token among them) are the reply's first tokens, already at the end of its prompt: the
        reply goes on from them, and they count towards max_new_tokens."""
        import torch

        from .drafts import BatchDrafts

        stop = self.stop_ids()
        stop_ids = torch.tensor(stop, device=self.device)
        drafting = drafts is not None and token_mask is None and not min_new_tokens
        guessers = BatchDrafts(drafts) if drafting and drafts is not None else None
        active = list(range(len(prompts)))  # row r of the running batch is prompt active[r]
        done = [False] * len(prompts)  # by row of the running batch: its reply has ended
        generated: list[list[int]] = [list(b) for b in begun] if begun else [[] for _ in prompts]
        counts = [len(g) for g in generated]  # by prompt: tokens chosen, the end-of-turn token included
        guesses: list[list[int]] = [[] for _ in prompts]  # by row: the tokens the step carried after its own
        with torch.no_grad():
            logits, cache, mask, positions = self._prefill(prompts, prefix)
            cache_columns = mask.shape[1] + 2 * max_new_tokens  # what generate's batch size allows when drafted
            following = positions[:, -1]  # by row: the position of the latest token fed, then of the next one
            cache_arg = {self._cache_keyword(): cache}
            for step in range(max_new_tokens):
                width = logits.shape[1] - 1
                if width == 0:  # one token a row, constraints and the minimum length applied
                    last_logits = logits[:, -1]
                    if step < min_new_tokens:
                        last_logits[:, stop_ids] = float("-inf")
                    if token_mask is not None:
                        last_logits = last_logits + self._allowed(
                            token_mask, last_logits, [None if finished else prompts[i] + generated[i]
                                                      for i, finished in zip(active, done)])
                    picks = last_logits.argmax(-1)[:, None].tolist()
                else:
                    picks = logits.argmax(-1).tolist()
                chosen, advanced = [], []
                for row, picked in enumerate(picks):
                    guess, accepted = guesses[row], 0
                    while accepted < len(guess) and guess[accepted] == picked[accepted]:
                        accepted += 1
                    if guessers is not None:
                        guessers.checked(active[row], len(guess), accepted)
                    taken = guess[:accepted] + [picked[accepted]]
                    chosen.append(taken[-1])
                    advanced.append(len(taken))
                    if width > accepted:  # the rejected guess's columns are never attended to again
                        mask[row, mask.shape[1] - width + accepted:] = 0
                    for token in taken:
                        if done[row]:
                            break
                        index = active[row]
                        counts[index] += 1
                        done[row] = token in stop or counts[index] >= max_new_tokens
                        if token not in stop:
                            generated[index].append(token)
                finished = sum(done)
                if finished == len(active):
                    break
                following = following + torch.tensor(advanced, device=self.device)
                chosen_ids = torch.tensor(chosen, device=self.device)
                guesses, width = guessers.next_step(
                    active, [None if d else generated[i] for i, d in zip(active, done)],
                    [max_new_tokens - counts[i] - 1 for i in active]) if guessers is not None else ([], 0)
                # the cache may hold max_new_tokens columns of rejected guesses and padding: a step carries no more
                # than leaves room for the longest reply to finish one token a step
                slack = cache_columns - mask.shape[1] - 1 - max(max_new_tokens - counts[i] - 1
                                                                for i, d in zip(active, done) if not d)
                width = max(0, min(width, slack))
                guesses = [g[:width] for g in guesses] if width else [[] for _ in active]
                # a finished row would carry 1 + width tokens of padding: before a drafted step, shed it at once
                if finished and (width or finished >= self.shed_fraction * len(active)):
                    keep = torch.tensor([r for r, d in enumerate(done) if not d], device=self.device)
                    cache.batch_select_indices(keep)
                    mask, following, chosen_ids = mask[keep], following[keep], chosen_ids[keep]
                    guesses = [guesses[r] for r in keep.tolist()]
                    active = [active[r] for r in keep.tolist()]
                    done = [False] * len(active)
                ids = torch.tensor([[token] + g + [self.tokenizer.pad_token_id] * (width - len(g))
                                    for token, g in zip(chosen_ids.tolist(), guesses)], device=self.device)
                fresh = torch.tensor([[1] * (1 + len(g)) + [0] * (width - len(g)) for g in guesses],
                                     device=self.device, dtype=mask.dtype)
                mask = torch.cat([mask, fresh], dim=1)
                positions = following[:, None] + torch.arange(1 + width, device=self.device)
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                    use_cache=True, **cache_arg).logits
        return generated

    def _prefill(self, prompts: list[list[int]], prefix):
        """The first forward pass of a batch: the last prompt position's logits, the filled cache, and the batch's
        attention mask and position ids (eval/prefix.py's batch_inputs). Rows of very different lengths (they come
        sorted by length) are prefilled in groups, each padded to its own longest row (prefix.prefill_groups),
        and their caches stacked into the batch's, where the cache grows in place."""
        import torch

        from .prefix import batch_cache, batch_inputs, prefill_groups, stacked_cache, supported

        shared = prefix.length if prefix is not None else 0
        growing = self.grow_cache_in_place and supported(self.model.config)  # what stacked_cache builds
        groups = prefill_groups([len(p) - shared for p in prompts]) if growing else [(0, len(prompts))]
        whole = batch_inputs(prompts, prefix, self.tokenizer.pad_token_id, self.device)
        _, whole_mask, whole_positions = whole
        logits, caches = [], []
        for start, end in groups:
            ids, mask, positions = whole if len(groups) == 1 else batch_inputs(
                prompts[start:end], prefix, self.tokenizer.pad_token_id, self.device)
            cache = batch_cache(prefix, end - start, self.model.config, growing)
            # the last column's logits, asked for by index: the model's own `logits_to_keep=1` slices the hidden
            # states to a strided view that the output layer multiplies as one small matmul a row (80 ms for 52
            # rows of SmolLM2's 49,152-word output layer here, against 11 ms for the indexed, contiguous rows)
            last = torch.tensor([ids.shape[1] - 1], device=self.device)
            logits.append(self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                                     logits_to_keep=last, **{self._cache_keyword(): cache}).logits)
            caches.append(cache)
        if len(caches) == 1:
            return logits[0], caches[0], whole_mask, whole_positions
        return torch.cat(logits), stacked_cache(caches, shared, self.model.config), whole_mask, whole_positions

    @staticmethod
    def _allowed(token_mask, logits, sequences: list[list[int] | None]):
        """0 where a row's constraint allows the next token, -inf elsewhere; 0 everywhere for a finished row
        (None: its tokens are ignored)."""
        import torch

        allowed = torch.full_like(logits, float("-inf"))
        for row, tokens in enumerate(sequences):
            if tokens is None:
                allowed[row] = 0.0
            else:
                allowed[row, token_mask.allowed(tokens)] = 0.0
        return allowed

    def _cache_keyword(self) -> str:
        """transformers 5.2x names the KV cache argument `cache`; earlier 5.x releases `past_key_values`."""
        return "cache" if self._forward_takes("cache") else "past_key_values"

    def _forward_takes(self, parameter: str) -> bool:
        """Whether the underlying model's forward (under a PEFT wrapper, the base model's) takes `parameter`."""
        import inspect

        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return parameter in inspect.signature(type(model).forward).parameters

    def stop_ids(self) -> list[int]:
        """The token ids that end a reply: the tokenizer's end of sequence and the generation config's."""
        ids = {self.tokenizer.eos_token_id}
        config_eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update(config_eos if isinstance(config_eos, list) else [config_eos])
        return sorted(i for i in ids if i is not None)

    def assistant_token_losses(self, conversations: list[Messages], batch_size: int) -> list[tuple[float, int]]:
        """Per conversation: the summed negative log-likelihood of its assistant tokens, and their count."""
        return self.scored_answers(conversations, batch_size)[0]

    def scored_answers(self, conversations: list[Messages], batch_size: int, max_new_tokens: int = 0,
                       prompts: list[Messages] | None = None
                       ) -> tuple[list[tuple[float, int]], list[ForcedStart | None]]:
        """Per conversation: the summed negative log-likelihood of its assistant tokens and their count; and, with
        `max_new_tokens`, the beginning of the model's own greedy reply to the conversation before its last
        assistant turn, read off the same pass (eval/forced.py; None without it). With `prompts` (per
        conversation, the prompt the replies will be generated for), a beginning is kept only where that prompt's
        token ids are the conversation's before its last turn (a template, or a system prompt, may render them
        otherwise): the starts that are kept are the ones generate() uses. The output layer runs only at
        the positions that predict an assistant token in some row of the batch (the model's own
        `logits_to_keep`), not at every position: on the quickstart a third of them. Conversations are batched by
        length (order restored), and a prefix every conversation shares before its first assistant token (the
        system prompt) is run once (eval/prefix.py): on the quickstart half of each conversation."""
        import time

        import torch

        from .forced import forced_start, last_turn
        from .prefix import scoring_inputs

        rows = [self.assistant_labels(m) for m in conversations]
        prefix = self._scoring_prefix(rows)
        shared = prefix.length if prefix is not None else 0
        stop = self.stop_ids()
        found: dict[int, tuple[float, int]] = {}
        starts: list[ForcedStart | None] = [None] * len(rows)
        for chunk in length_batches([len(ids) for ids, _ in rows], batch_size):
            started = time.perf_counter()
            ids, mask, positions, cache = scoring_inputs([rows[i][0] for i in chunk], prefix,
                                                         self.tokenizer.pad_token_id, self.model.config, self.device)
            # the logits at suffix position t predict the token at t + 1 (labels -100 beyond each row's end)
            targets = torch.tensor([r[shared + 1:] + [-100] * (ids.shape[1] - len(r) + shared + 1)
                                    for r in (rows[i][1] for i in chunk)], device=self.device)
            keep = (targets != -100).any(dim=0).nonzero().flatten()
            inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                      **({self._cache_keyword(): cache} if cache is not None else {})}
            with torch.no_grad():
                if self._forward_takes("logits_to_keep"):  # transformers 5's models do
                    logits = self.model(**inputs, logits_to_keep=keep).logits.float()
                else:
                    logits = self.model(**inputs).logits.float()[:, keep]
            kept = targets[:, keep]  # (a row of logits per position: 3x faster than the class dimension second)
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), kept.reshape(-1),
                                                    ignore_index=-100, reduction="none").reshape(kept.shape)
            counts = (targets != -100).sum(dim=1)
            found.update((index, (float(total), int(count)))
                         for index, total, count in zip(chunk, nll.sum(dim=1).tolist(), counts.tolist()))
            if max_new_tokens:
                picks = logits.argmax(-1).tolist()
                column = {position: c for c, position in enumerate(keep.tolist())}
                seconds = (time.perf_counter() - started) / len(chunk)
                for row, index in enumerate(chunk):
                    full, labels = rows[index]
                    turn = last_turn(labels)
                    if turn is not None:  # ids[j] is predicted at suffix position j - 1 - shared
                        picked = [picks[row][column[j - 1 - shared]] for j in range(*turn)]
                        start = forced_start(full, turn, picked, stop, max_new_tokens, seconds)
                        if prompts is None or start.prompt == tuple(self._encode(prompts[index])):
                            starts[index] = start
        return [found[i] for i in range(len(rows))], starts

    def _scoring_prefix(self, rows: list[tuple[list[int], list[int]]]):
        """The held-out loss's shared prefix with its KV cache: _shared_prefix of the conversations cut where the
        first of them predicts an assistant token, so the prefix (whose logits are never computed) ends before
        any prediction that counts."""
        if not rows:
            return None
        # labels[j] is predicted at position j - 1; common_prefix_length leaves each row a token of its own, so
        # cutting at the first predicted label ends the prefix at the position that predicts it
        first_predicted = min(next((j for j, t in enumerate(labels) if t != -100), len(labels))
                              for _, labels in rows)
        return self._shared_prefix([ids[:first_predicted] for ids, _ in rows])

    def assistant_labels(self, messages: Messages) -> tuple[list[int], list[int]]:
        """Input ids, and labels on the assistant's tokens only (-100 elsewhere), found as training finds them
        (ftorch.chat_masks, any prefix-preserving template). A conversation whose assistant tokens cannot be found
        is a DataError with the reason, never a loss over the wrong tokens or a silent NaN."""
        from ..chat_masks import MaskError, assistant_token_mask
        from ..errors import DataError, Problem

        try:
            ids, keep = assistant_token_mask(self.tokenizer, messages)
        except MaskError as exc:
            raise DataError(Problem("held-out loss", str(exc), "the held-out loss needs the assistant tokens of each "
                                    "conversation; use a prefix-preserving chat template")) from None
        if 1 not in keep:
            raise DataError(Problem("held-out loss", "a conversation has no assistant tokens after applying the "
                                    "chat template"))
        return ids, [t if k else -100 for t, k in zip(ids, keep)]

    def pad_right(self, ids: list[list[int]], labels: list[list[int]]):
        """A batch padded on the right: input ids, labels (-100 on padding) and the attention mask, as tensors."""
        import torch

        width = max(len(x) for x in ids)

        def padded(rows: list[list[int]], fill: int):
            return torch.tensor([r + [fill] * (width - len(r)) for r in rows], device=self.device)

        mask = padded([[1] * len(r) for r in ids], 0)
        return padded(ids, self.tokenizer.pad_token_id), padded(labels, -100), mask

    def text_logprobs(self, texts: list[str], batch_size: int):
        """Per text, in order: (log-probabilities over the vocabulary at each position, next-token ids), for drift.
        Texts are batched by length, so little of each batch is padding."""
        import torch

        encoded = [self.tokenizer(t, add_special_tokens=True)["input_ids"] for t in texts]
        results: dict[int, tuple] = {}
        for chunk in length_batches([len(e) for e in encoded], batch_size):
            batch = [encoded[i] for i in chunk]
            ids, _, mask = self.pad_right(batch, batch)
            with torch.no_grad():
                logprobs = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            for row, (index, tokens) in enumerate(zip(chunk, batch)):
                n = len(tokens)
                results[index] = (logprobs[row, : n - 1].to("cpu", copy=True), torch.tensor(tokens[1:]))
        return [results[i] for i in range(len(encoded))]
