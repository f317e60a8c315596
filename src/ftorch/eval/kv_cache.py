"""The decoder's KV cache (eval/local.py): transformers' DynamicCache with layers that grow in place. A
DynamicLayer concatenates each step's keys and values onto the whole cache, copying all of it at every step of
every layer; a GrowingLayer writes them into a buffer with room for the tokens to come and hands attention views
of its filled part. The keys and values attention sees are the same numbers, in the same shapes."""

from __future__ import annotations

from typing import Any

from transformers.cache_utils import DynamicCache, DynamicLayer

ROOM = 64  # tokens of room a buffer gets beyond what it must hold when it grows


class GrowingLayer(DynamicLayer):
    """A full-attention cache layer whose keys and values live in buffers of `capacity` positions; `keys` and
    `values` are views of the first `length`."""

    def lazy_initialization(self, key_states, value_states) -> None:
        super().lazy_initialization(key_states, value_states)
        self.key_buffer: Any = None
        self.value_buffer: Any = None
        self.length = 0

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self.key_buffer is None or end > self.key_buffer.shape[-2] \
                or self.key_buffer.shape[0] != key_states.shape[0]:
            self._grow(key_states, value_states, end + ROOM)
        self.key_buffer[..., self.length:end, :] = key_states
        self.value_buffer[..., self.length:end, :] = value_states
        self.length = end
        self.keys, self.values = self.key_buffer[..., :end, :], self.value_buffer[..., :end, :]
        return self.keys, self.values

    def _grow(self, key_states, value_states, capacity: int) -> None:
        """New buffers of `capacity` positions holding what is cached so far."""
        import torch

        def buffer(cached, states):
            shape = (*states.shape[:-2], capacity, states.shape[-1])
            grown = torch.empty(shape, dtype=states.dtype, device=states.device)
            if self.length:
                grown[..., :self.length, :] = cached
            return grown

        self.key_buffer = buffer(self.keys, key_states)
        self.value_buffer = buffer(self.values, value_states)

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def batch_select_indices(self, indices) -> None:
        """Keep the rows `indices` (rows whose replies ended leave the batch), room included."""
        if self.is_initialized and self.length:
            self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
            self.keys = self.key_buffer[..., :self.length, :]
            self.values = self.value_buffer[..., :self.length, :]

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("the evaluation's decoder never crops its cache")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("the evaluation's decoder never repeats rows")

    def reset(self) -> None:
        super().reset()
        self.key_buffer = self.value_buffer = None
        self.length = 0


def growing_cache(config, filled=()) -> DynamicCache:
    """A DynamicCache for `config` whose layers grow in place, holding `filled` ((keys, values) per layer) if given.
    Only for models whose every layer is plain full attention (eval/prefix.py's supported)."""
    cache = DynamicCache(config=config)
    layers = [GrowingLayer() for _ in cache.layers]
    for layer, (keys, values, *_) in zip(layers, filled):
        layer.update(keys, values)
    cache.layers = list(layers)
    return cache
