"""A local decoder worth testing batching and caching on (tests/eval): the tiny model with larger random weights, so
its replies depend on the request (at the default scale it repeats one token whatever the prompt), and two common
tokens made stop tokens, so rows end at different steps."""

from __future__ import annotations

from ftorch.config.schema import TinyModel


def varied_tiny_model():
    import torch

    from ftorch.eval.local import LocalModel
    from ftorch.tiny import ensure_tiny_model

    path = ensure_tiny_model(TinyModel(hidden_size=64, intermediate_size=128, num_heads=2))
    model = LocalModel(str(path), None, device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weights in model.model.parameters():
            weights.copy_(torch.randn(weights.shape, generator=generator) * 0.5)
    model.model.generation_config.eos_token_id = [model.tokenizer.eos_token_id, 12, 232]
    return model
