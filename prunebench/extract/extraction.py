"""Turn a sub-network (masks) into a physically smaller model.

Dropped layers leave the layer list; kept layers lose the rows of q/k/v and the
columns of the output projection of their pruned heads, and the rows/columns of
their pruned FFN units (``models.slicing.slice_layer``, which the pruned-model loader
uses too, so both build the same shapes). Layers may end up with different sizes, which
plain ``from_pretrained`` cannot rebuild: ``prunebench.models.pruned`` stores the
per-layer structure and rebuilds from it.

``extract`` deep-copies the whole model (embeddings included) because its result is saved
and outlives the super-network. Search only runs a candidate for a moment, so
``shared_extract`` copies the module tree *without* its tensors (parameters and buffers are
shared through deepcopy's memo) and only the kept layers' prunable linears get new, smaller
tensors. The result computes exactly what ``extract`` gives, for the cost of copying the kept
weights once. Treat it as read-only: its embeddings, LayerNorms and task head are the
super-network's own tensors.
"""

from __future__ import annotations

import copy

from torch import nn

from prunebench.errors import PrunebenchError
from prunebench.models.dims import LayerStructure, PrunedStructure
from prunebench.models.loaded import LoadedModel
from prunebench.models.pooling import apply_pooling
from prunebench.models.slicing import slice_layer
from prunebench.supernet.spaces import Masks


def _detached_copy(model: nn.Module, share_tensors: bool) -> nn.Module:
    """A deep copy without the super-network's hooks or layer skips (they refer to the original).

    With ``share_tensors`` only the module tree is copied: parameters and buffers stay the
    original's (deepcopy's memo), and slicing then gives the kept layers new, smaller tensors.
    """
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())} if share_tensors else None
    clone = copy.deepcopy(model, memo=memo)
    for module in clone.modules():
        module._forward_pre_hooks.clear()
        module._forward_hooks.clear()
        module.__dict__.pop("forward", None)
    return clone


def extract(loaded: LoadedModel, masks: Masks, share_tensors: bool = False) -> LoadedModel:
    """Return a new, smaller model computing what ``loaded`` computes under ``masks``.

    ``share_tensors=True`` (search: a candidate lives for a moment) copies only the kept
    weights; the result's embeddings, LayerNorms and head are then the original's own
    tensors, so treat it as read-only.
    """
    if loaded.structure is not None:
        raise PrunebenchError("this model is already pruned; extract from the un-pruned model it came from")
    adapter = loaded.adapter
    model = _detached_copy(loaded.model, share_tensors)
    apply_pooling(model, adapter)  # the copy lost the pooling hooks with the others
    layers = adapter.encoder_layers(model)
    kept: list[LayerStructure] = []
    new_layers = nn.ModuleList()
    for index in masks.kept_layers():
        heads, units = masks.kept_heads(index), masks.kept_units(index)
        slice_layer(adapter, layers[index], heads, units)
        new_layers.append(layers[index])
        kept.append(LayerStructure(index, tuple(heads), tuple(units)))
    adapter.set_encoder_layers(model, new_layers)
    structure = PrunedStructure(loaded.dims, tuple(kept))
    return LoadedModel(
        model.eval(), loaded.tokenizer, adapter, loaded.source, loaded.task_kind, structure, loaded.vocab
    )


def shared_extract(loaded: LoadedModel, masks: Masks) -> LoadedModel:
    """The sub-network ``masks`` of ``loaded`` as a smaller model sharing ``loaded``'s unpruned tensors."""
    if loaded.structure is not None:
        raise ValueError("slice from the un-pruned super-network")
    return extract(loaded, masks, share_tensors=True)
