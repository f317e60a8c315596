"""Evaluation generation through vLLM's offline engine, on a CUDA GPU with vLLM installed (the `serve` extra): the
same Generator protocol as eval/local.py's LocalModel (system() selecting base or tuned, generate(),
prompt_tokens, context_length, constraint_kinds), the same prompts (token ids from the same tokenizer and chat
template), greedy decoding, the same stop tokens, and replies in the same form (decoded without special tokens,
stripped). 'tuned' sends each request with a LoRARequest for the run's adapter; every other system is the base
model. vLLM schedules all requests of a call at once (continuous batching, its own prefix caching), so
eval.batch_size only sets how often progress is reported. The engine starts on the first request, so an evaluation
whose answers all come from the answer cache (eval/answer_cache.py keys vLLM's answers apart from the transformers
decoder's: `engine`) never starts it.

Version assumptions (vLLM's offline API as of v0.12, 2025-12; checked against its docs, not run here: no GPU):
`vllm.LLM(model=, tokenizer=, enable_lora=True, max_lora_rank=, max_loras=1, dtype=, seed=, enforce_eager=,
gpu_memory_utilization=, max_model_len=)`, `LLM.generate(prompts, sampling_params, lora_request=, use_tqdm=)` with
prompts as `{"prompt_token_ids": [...]}`, `vllm.lora.request.LoRARequest(name, int_id, path)`,
`SamplingParams(temperature=0, max_tokens=, min_tokens=, stop_token_ids=, skip_special_tokens=True,
structured_outputs=)` and `vllm.sampling_params.StructuredOutputsParams(json= | choice=)` (v0.12 removed the
older `guided_decoding`/GuidedDecodingParams). bench/device_check.sh runs it on a GPU when one is lent."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Messages = list[dict]
GPU_MEMORY_SHARE = 0.5  # of the GPU for vLLM's weights and KV cache; the rest for the transformers model beside it
                        # (held-out loss and drift still run there) and for training's leftovers in the process
OPT_OUT = "FTORCH_EVAL_VLLM"  # =0: evaluate with the transformers decoder even where vLLM could run


def why_not_vllm(adapter: Path | None) -> str | None:
    """None when evaluation can generate through vLLM here; otherwise the reason it uses the transformers
    decoder (vLLM missing, no CUDA GPU, the opt-out variable, an adapter vLLM's LoRA cannot load)."""
    from ..serve import LORA_RANKS, missing

    if os.environ.get(OPT_OUT, "").strip().lower() in ("0", "false", "no", "off"):
        return f"{OPT_OUT}={os.environ[OPT_OUT]}"
    lacking = missing()
    if lacking:
        return "; ".join(lacking)
    if adapter is not None:
        config = json.loads((adapter / "adapter_config.json").read_text())
        if int(config.get("r") or 8) > LORA_RANKS[-1]:
            return f"LoRA rank {config['r']} is above vLLM's largest ({LORA_RANKS[-1]})"
        if config.get("modules_to_save"):
            return f"the adapter also trains {config['modules_to_save']} in full, which vLLM's LoRA does not load"
    return None


class VLLMGenerator:
    constraint_kinds = ("json_schema", "labels")  # what `generate(constraint=)` can hold replies to
    keyed_by_files = True  # the answer cache keys its answers by its model's and adapter's files, and `engine`

    def __init__(self, base_path: str, adapter: Path | None, engine: Any = None):
        """`engine` is an already built vllm.LLM (tests pass a stand-in); otherwise one is built on first use."""
        import torch
        from transformers import AutoTokenizer

        from ..backends.hf.loading import loading

        with_tokenizer = adapter is not None and (adapter / "tokenizer_config.json").exists()
        self.tokenizer_path = str(adapter if with_tokenizer else base_path)
        with loading(self.tokenizer_path, "tokenizer"):
            self.tokenizer: Any = AutoTokenizer.from_pretrained(self.tokenizer_path)
        self.base_path, self.adapter = base_path, adapter
        # what the answer cache keys on (eval/answer_cache.py's LocalDescriber), as for eval/local.py's LocalModel
        self.adapter_path, self.has_adapter, self.device = adapter, adapter is not None, "cuda"
        self.dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float16"
        self._llm = engine
        self._lora: Any = None
        self._stop = self._stop_ids()

    @property
    def engine(self) -> str:
        """What generates, with its version: vLLM's replies are keyed apart from the transformers decoder's."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"vllm {version('vllm')}"
        except PackageNotFoundError:
            return "vllm"

    @property
    def llm(self) -> Any:
        """vllm.LLM, started on first use."""
        if self._llm is None:
            self._llm = self._engine()
        return self._llm

    def _engine(self):
        from vllm import LLM

        from ..serve import LORA_RANKS

        options: dict[str, Any] = {}
        if self.adapter is not None:
            rank = int(json.loads((self.adapter / "adapter_config.json").read_text()).get("r") or 8)
            options = {"enable_lora": True, "max_loras": 1,
                       "max_lora_rank": next(r for r in LORA_RANKS if r >= rank)}
        # eager: an evaluation's few hundred requests do not repay CUDA-graph capture and compilation at start-up
        return LLM(model=self.base_path, tokenizer=self.tokenizer_path, dtype=self.dtype, seed=0, enforce_eager=True,
                   gpu_memory_utilization=GPU_MEMORY_SHARE, max_model_len=self.context_length, **options)

    def _stop_ids(self) -> list[int]:
        """As LocalModel.stop_ids: the tokenizer's end of sequence and the base model's generation config's."""
        from transformers import GenerationConfig

        ids = {self.tokenizer.eos_token_id}
        try:
            config_eos = GenerationConfig.from_pretrained(self.base_path).eos_token_id
        except OSError:  # no generation_config.json
            config_eos = None
        ids.update(config_eos if isinstance(config_eos, list) else [config_eos])
        return sorted(i for i in ids if i is not None)

    @contextmanager
    def system(self, name: str) -> Iterator[None]:
        """'tuned' is the base model with the run's adapter (a LoRARequest on every request); the others are the
        base model alone."""
        from vllm.lora.request import LoRARequest

        saved = self._lora
        self._lora = (LoRARequest("ftorch-tuned", 1, str(self.adapter))
                      if name == "tuned" and self.adapter is not None else None)
        try:
            yield
        finally:
            self._lora = saved

    def _encode(self, messages: Messages) -> list[int]:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                  return_dict=False)

    def prompt_tokens(self, messages: Messages) -> int:
        return len(self._encode(messages))

    @property
    def context_length(self) -> int | None:
        from transformers import AutoConfig

        from .local import positive_length

        return positive_length(getattr(AutoConfig.from_pretrained(self.base_path), "max_position_embeddings", None))

    def sampling(self, max_new_tokens: int, min_new_tokens: int = 0, constraint=None):
        """Greedy SamplingParams with the model's stop tokens, held to `constraint` (eval/constrained.py)."""
        from vllm import SamplingParams

        options: dict[str, Any] = {}
        if constraint is not None:
            from vllm.sampling_params import StructuredOutputsParams

            held = (StructuredOutputsParams(json=constraint.schema) if constraint.kind == "json_schema"
                    else StructuredOutputsParams(choice=list(constraint.labels)))
            options["structured_outputs"] = held
        return SamplingParams(temperature=0.0, max_tokens=max_new_tokens, min_tokens=min_new_tokens,
                              stop_token_ids=self._stop, skip_special_tokens=True, **options)

    def generate(self, conversations: list[Messages], max_new_tokens: int, batch_size: int,
                 on_batch: Callable[[int], None] | None = None, min_new_tokens: int = 0,
                 constraint=None) -> list[str]:
        """Greedy replies in the order asked, in chunks of 8 x batch_size requests (progress after each)."""
        if constraint is not None and constraint.kind not in self.constraint_kinds:
            raise ValueError(f"vLLM cannot hold replies to a {constraint.kind} constraint")
        params = self.sampling(max_new_tokens, min_new_tokens, constraint)
        replies: list[str] = []
        step = max(1, 8 * batch_size)
        for start in range(0, len(conversations), step):
            chunk = conversations[start:start + step]
            prompts = [{"prompt_token_ids": self._encode(m)} for m in chunk]
            outputs = self.llm.generate(prompts, params, lora_request=self._lora, use_tqdm=False)
            replies += [output.outputs[0].text.strip() for output in outputs]
            if on_batch:
                on_batch(len(chunk))
        return replies


def choose_generator(local, base_path: str, adapter: Path | None):
    """What answers the evaluation's prompts: vLLM's engine where it can run here (why_not_vllm is None), else
    `local` (eval/local.py's LocalModel, the batched transformers decoder), which also serves held-out loss and
    drift either way."""
    if why_not_vllm(adapter) is not None:
        return local
    return VLLMGenerator(base_path, adapter)
