"""Evaluation through vLLM's offline engine (eval/vllm_generator.py), tested by construction: vLLM is not installed
here and there is no GPU. Without vLLM or CUDA the transformers decoder answers; with both, requests reach a
stand-in `vllm` module (injected into sys.modules) as LocalModel would send them: the same prompt token ids,
greedy, the same stop tokens, the adapter as a LoRARequest for 'tuned' only, constraints as structured outputs,
replies in the order asked."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from dataclasses import dataclass, field

import pytest

from ftorch.config.schema import TinyModel
from ftorch.eval.constrained import Constraint
from ftorch.eval.vllm_generator import OPT_OUT, VLLMGenerator, choose_generator, why_not_vllm

CONVERSATIONS = [[{"role": "system", "content": "Reply in JSON."}, {"role": "user", "content": text}]
                 for text in ("cancel Monday", "move lunch to Friday at noon", "book the dentist")]


@dataclass
class Completion:
    text: str


@dataclass
class Output:
    outputs: list


@dataclass
class FakeLLM:
    """vllm.LLM's offline surface: records each generate() call and answers with the prompt's length."""

    options: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)

    def generate(self, prompts, sampling_params, lora_request=None, use_tqdm=True):
        self.calls.append((prompts, sampling_params, lora_request))
        return [Output([Completion(f"  reply to {len(p['prompt_token_ids'])} tokens\n")]) for p in prompts]


class Recorded:
    """SamplingParams, LoRARequest, StructuredOutputsParams: keep what they were given."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@pytest.fixture
def fake_vllm(monkeypatch):
    built: list[FakeLLM] = []
    modules = {name: types.ModuleType(name) for name in ("vllm", "vllm.lora", "vllm.lora.request",
                                                         "vllm.sampling_params")}
    for name, module in modules.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        monkeypatch.setitem(sys.modules, name, module)
    modules["vllm"].LLM = lambda **options: built.append(FakeLLM(options)) or built[-1]
    modules["vllm"].SamplingParams = type("SamplingParams", (Recorded,), {})
    modules["vllm.lora.request"].LoRARequest = type("LoRARequest", (Recorded,), {})
    modules["vllm.sampling_params"].StructuredOutputsParams = type("StructuredOutputsParams", (Recorded,), {})
    return built


@pytest.fixture(scope="module")
def tiny(offline_env):
    from ftorch.eval.local import LocalModel
    from ftorch.tiny import ensure_tiny_model

    path = ensure_tiny_model(TinyModel(hidden_size=64, intermediate_size=128, num_heads=2))
    return str(path), LocalModel(str(path), None, device="cpu")


def adapter(tmp_path, **config):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 16, **config}))
    return folder


def with_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **kw: True)


def test_without_vllm_or_cuda_the_transformers_decoder_answers(tiny, tmp_path, monkeypatch, fake_vllm):
    path, local = tiny
    monkeypatch.delitem(sys.modules, "vllm")  # not installed here, as on the CPU box
    assert "vLLM is not installed" in why_not_vllm(None)
    assert choose_generator(local, path, adapter(tmp_path)) is local
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    sys.modules["vllm"].__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "no CUDA GPU" in why_not_vllm(None)  # vLLM without a GPU
    assert choose_generator(local, path, None) is local and not fake_vllm


def test_with_vllm_and_cuda_the_engine_is_built_with_the_adapter(tiny, tmp_path, monkeypatch, fake_vllm):
    path, local = tiny
    with_cuda(monkeypatch)
    folder = adapter(tmp_path, r=24)
    generator = choose_generator(local, path, folder)
    assert isinstance(generator, VLLMGenerator)
    assert not fake_vllm  # the engine starts on first use
    started = generator.llm
    (llm,) = fake_vllm
    assert started is llm
    assert llm.options["model"] == path and llm.options["enable_lora"] is True
    assert llm.options["max_lora_rank"] == 32  # the next rank vLLM accepts
    assert llm.options["dtype"] == "bfloat16" and llm.options["max_model_len"] == local.context_length
    assert llm.options["enforce_eager"] is True and llm.options["gpu_memory_utilization"] <= 0.5
    monkeypatch.setenv(OPT_OUT, "0")
    assert choose_generator(local, path, folder) is local and why_not_vllm(folder) == f"{OPT_OUT}=0"


def test_adapters_vllm_cannot_load_stay_on_transformers(tiny, tmp_path, monkeypatch, fake_vllm):
    path, local = tiny
    with_cuda(monkeypatch)
    assert "above vLLM's largest" in why_not_vllm(adapter(tmp_path, r=1024))
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 8, "modules_to_save": ["lm_head"]}))
    assert "lm_head" in why_not_vllm(tmp_path / "adapter")
    assert choose_generator(local, path, tmp_path / "adapter") is local and not fake_vllm


def test_requests_are_translated_as_the_transformers_decoder_sends_them(tiny, tmp_path, fake_vllm):
    path, local = tiny
    llm = FakeLLM()
    folder = adapter(tmp_path)
    generator = VLLMGenerator(path, folder, engine=llm)
    seen: list[int] = []
    with generator.system("base"):
        replies = generator.generate(CONVERSATIONS, max_new_tokens=20, batch_size=1, on_batch=seen.append,
                                     min_new_tokens=2)
    expected = [local._encode(c) for c in CONVERSATIONS]
    assert replies == [f"reply to {len(ids)} tokens" for ids in expected]  # in order, stripped
    prompts, params, lora = llm.calls[0]
    assert [p["prompt_token_ids"] for p in prompts] == expected
    assert params.kwargs == {"temperature": 0.0, "max_tokens": 20, "min_tokens": 2,
                             "stop_token_ids": local.stop_ids(), "skip_special_tokens": True}
    assert lora is None and seen == [3]  # one chunk of up to 8 x batch_size requests
    assert [generator.prompt_tokens(c) for c in CONVERSATIONS] == [local.prompt_tokens(c) for c in CONVERSATIONS]
    assert generator.context_length == local.context_length
    with generator.system("tuned"):
        generator.generate(CONVERSATIONS[:1], max_new_tokens=5, batch_size=4)
    assert llm.calls[-1][2].args == ("ftorch-tuned", 1, str(folder))
    with generator.system("prompted"):
        generator.generate(CONVERSATIONS[:1], max_new_tokens=5, batch_size=4)
    assert llm.calls[-1][2] is None  # prompting arms are the base model


def test_constraints_become_structured_outputs(tiny, fake_vllm):
    path, _ = tiny
    llm = FakeLLM()
    generator = VLLMGenerator(path, None, engine=llm)
    schema = {"type": "object", "properties": {"day": {"enum": ["Monday", "Friday"]}}}
    generator.generate(CONVERSATIONS, 30, 8, constraint=Constraint("json_schema", schema=schema))
    assert llm.calls[-1][1].kwargs["structured_outputs"].kwargs == {"json": schema}
    generator.generate(CONVERSATIONS, 30, 8, constraint=Constraint("labels", labels=("cancel", "move")))
    assert llm.calls[-1][1].kwargs["structured_outputs"].kwargs == {"choice": ["cancel", "move"]}
    with generator.system("tuned"):  # no adapter: tuned would be the base model, so no LoRARequest
        generator.generate(CONVERSATIONS[:1], 5, 8)
    assert llm.calls[-1][2] is None


def test_vllm_answers_are_cached_apart_from_the_transformers_decoders(tiny, tmp_path, monkeypatch, fake_vllm):
    """The answer cache keys vLLM's replies by the same model and adapter content as the transformers decoder's, and
    by its engine: a second evaluation reuses them without starting the engine, and neither engine's answers
    stand for the other's."""
    from ftorch.eval.answer_cache import CachedGenerator, wrap

    path, local = tiny
    with_cuda(monkeypatch)
    monkeypatch.setenv("FTORCH_CACHE", str(tmp_path / "cache"))
    folder = adapter(tmp_path, r=8)

    def ask(generator, system):
        with generator.system(system):
            return generator.generate(CONVERSATIONS, 8, 2)

    first = wrap(choose_generator(local, path, folder))
    assert isinstance(first, CachedGenerator) and isinstance(first.inner, VLLMGenerator)
    replies = {name: ask(first, name) for name in ("base", "tuned")}
    assert len(fake_vllm) == 1 and first.usage["tuned"].generated == 3
    again = wrap(choose_generator(local, path, folder))
    assert {name: ask(again, name) for name in ("base", "tuned")} == replies
    assert again.usage["base"].reused == 3 and again.usage["tuned"].reused == 3
    assert len(fake_vllm) == 1  # all from the cache: no second engine started
    keys = {again.key(m, 8, {}) for m in CONVERSATIONS}
    transformers_side = wrap(local)
    assert keys.isdisjoint(transformers_side.key(m, 8, {}) for m in CONVERSATIONS)
