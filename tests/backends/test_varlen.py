"""The "torch_varlen" attention that provider=peft uses for packed rows on CUDA without flash-attn: on CPU
(each sequence through SDPA alone) packed logits equal unpacked ones, and sequences do not see each other."""

import pytest

from ftorch.backends.hf import varlen as _varlen
from ftorch.config.schema import TinyModel
from ftorch.tiny import ensure_tiny_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models():
    from transformers import AutoModelForCausalLM

    folder = ensure_tiny_model(TinyModel(hidden_size=64, intermediate_size=128, num_heads=2))
    dense = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa").eval()
    packed = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=_varlen.register()).eval()
    return dense, packed


def packed_logits(model, *sequences):
    import torch

    ids = torch.cat(sequences)[None]
    positions = torch.cat([torch.arange(len(s)) for s in sequences])[None]
    with torch.no_grad():
        return model(input_ids=ids, position_ids=positions).logits[0]


def test_packed_equals_unpacked(models):
    import torch

    dense, packed = models
    a, b = torch.tensor([5, 17, 42, 7, 99, 3, 11]), torch.tensor([8, 8, 250, 31, 4])
    together = packed_logits(packed, a, b)
    with torch.no_grad():
        alone_a = dense(input_ids=a[None]).logits[0]
        alone_b = dense(input_ids=b[None]).logits[0]
    assert torch.allclose(together[:7], alone_a, atol=1e-5)
    assert torch.allclose(together[7:], alone_b, atol=1e-5)


def test_no_attention_across_packed_sequences(models):
    import torch

    _, packed = models
    a = torch.tensor([5, 17, 42, 7, 99, 3, 11])
    first = packed_logits(packed, a, torch.tensor([8, 8, 250, 31, 4]))
    second = packed_logits(packed, a, torch.tensor([60, 61, 62, 63, 64]))
    assert torch.equal(first[:7], second[:7])
    assert not torch.equal(first[7:], second[7:])


def test_plan_picks_varlen_packing_on_a_gpu_without_flash_attn():
    from ftorch.backends.peft.backend import _choose
    from ftorch.config.compose import find_project
    from ftorch.run.lifecycle import prepare

    config = prepare(find_project(), []).config
    choice = _choose(config, 80 * 2**30)  # as on an 80 GB card
    assert choice.settings["packing"] is True and choice.settings["attention"] == "varlen"
    assert any(reason.startswith("packing on") for reason in choice.reasons)
