"""The masked super-network: one loaded model whose sub-networks are selected by masks.

transformers 5 ignores ``head_mask``, so heads are masked by a pre-hook on the input
of the attention output projection (the concatenated heads), FFN units by a hook on
the intermediate block's output, and dropped layers by making the layer return its
input. Hooks stay registered; ``reset`` makes them no-ops, so the full network runs
unchanged. Works in training (gradients flow through the masks) and under no_grad.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from prunebench.models.loaded import LoadedModel
from prunebench.supernet.spaces import Masks


class MaskedSuperNetwork:
    def __init__(self, loaded: LoadedModel):
        if loaded.structure is not None:
            raise ValueError("a physically pruned model cannot serve as a super-network; load the un-pruned model")
        self.loaded = loaded
        self.model = loaded.model
        self.dims = loaded.dims
        self.layers = list(loaded.adapter.encoder_layers(self.model))
        self._head_masks: list[torch.Tensor | None] = [None] * len(self.layers)
        self._unit_masks: list[torch.Tensor | None] = [None] * len(self.layers)
        self._handles = []
        for index, layer in enumerate(self.layers):
            parts = loaded.adapter.layer_parts(layer)
            self._handles.append(parts.attention_output.register_forward_pre_hook(self._head_hook(index)))
            self._handles.append(parts.intermediate.register_forward_hook(self._unit_hook(index)))
        self.masks = Masks.full(self.dims)

    def _head_hook(self, index: int):
        def hook(module, args):
            mask = self._head_masks[index]
            if mask is None:
                return None
            return (args[0] * mask.to(args[0].dtype),) + args[1:]

        return hook

    def _unit_hook(self, index: int):
        def hook(module, args, output):
            mask = self._unit_masks[index]
            return None if mask is None else output * mask.to(output.dtype)

        return hook

    def apply(self, masks: Masks) -> None:
        """Select the sub-network given by ``masks`` (replaces any earlier selection)."""
        device = next(self.model.parameters()).device
        head_size = self.dims.head_size
        for index, layer in enumerate(self.layers):
            heads, units = masks.heads[index], masks.units[index]
            # An all-ones mask is left out so the full network pays nothing for its hooks.
            self._head_masks[index] = None if heads.all() else heads.repeat_interleave(head_size).to(device)
            self._unit_masks[index] = None if units.all() else units.to(device)
            if masks.layers[index]:
                layer.__dict__.pop("forward", None)
            else:
                layer.forward = self.loaded.adapter.skip_layer
        self.masks = masks

    def reset(self) -> None:
        """Back to the full network."""
        self.apply(Masks.full(self.dims))

    @contextmanager
    def masked(self, masks: Masks) -> Iterator[MaskedSuperNetwork]:
        previous = self.masks
        self.apply(masks)
        try:
            yield self
        finally:
            self.apply(previous)

    def remove(self) -> None:
        """Detach all hooks and restore every layer."""
        self.reset()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __call__(self, **inputs):
        return self.model(**inputs)
