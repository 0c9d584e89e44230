"""A physically sliced sub-network that shares every untouched tensor with the super-network.

``prunebench.supernet.extract`` deep-copies the whole model (embeddings included) because
its result is saved and outlives the super-network. Search only runs a candidate for a
moment, so here the module tree is copied *without* its tensors (parameters and buffers are
shared through deepcopy's memo) and only the kept layers' prunable linears get new, smaller
tensors from ``slice_layer``. The result computes exactly what ``extract`` gives, for the
cost of copying the kept weights once. Treat it as read-only: its embeddings, LayerNorms and
task head are the super-network's own tensors.
"""

from __future__ import annotations

import copy

from torch import nn

from prunebench.models.dims import LayerStructure, PrunedStructure
from prunebench.models.loading import LoadedModel
from prunebench.models.pooling import apply_pooling
from prunebench.models.slicing import slice_layer
from prunebench.supernet.spaces import Masks


def _tensor_memo(model: nn.Module) -> dict[int, object]:
    memo: dict[int, object] = {id(p): p for p in model.parameters()}
    memo.update({id(b): b for b in model.buffers()})
    return memo


def shared_extract(loaded: LoadedModel, masks: Masks) -> LoadedModel:
    """The sub-network ``masks`` of ``loaded`` as a smaller model sharing ``loaded``'s unpruned tensors."""
    if loaded.structure is not None:
        raise ValueError("slice from the un-pruned super-network")
    adapter = loaded.adapter
    model = copy.deepcopy(loaded.model, memo=_tensor_memo(loaded.model))
    for module in model.modules():  # the copy must not call back into the super-network's masks
        module._forward_pre_hooks.clear()
        module._forward_hooks.clear()
        module.__dict__.pop("forward", None)
    apply_pooling(model, adapter)  # the pooling hooks went with the others; the config says which
    layers = adapter.encoder_layers(model)
    kept_layers, structure = nn.ModuleList(), []
    for index in masks.kept_layers():
        heads, units = masks.kept_heads(index), masks.kept_units(index)
        slice_layer(adapter, layers[index], heads, units)
        kept_layers.append(layers[index])
        structure.append(LayerStructure(index, tuple(heads), tuple(units)))
    adapter.set_encoder_layers(model, kept_layers)
    pruned = PrunedStructure(loaded.dims, tuple(structure))
    return LoadedModel(model.eval(), loaded.tokenizer, adapter, loaded.source, loaded.task_kind, pruned)


def shape_signature(masks: Masks) -> tuple[tuple[int, int], ...]:
    """(heads, units) kept per kept layer: all that compute, latency and memory depend on."""
    heads, units = masks.heads.sum(dim=1), masks.units.sum(dim=1)
    return tuple((int(heads[i]), int(units[i])) for i in masks.kept_layers())
