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

from prunebench.models.loading import LoadedModel
from prunebench.supernet.extraction import extract
from prunebench.supernet.spaces import Masks


def shared_extract(loaded: LoadedModel, masks: Masks) -> LoadedModel:
    """The sub-network ``masks`` of ``loaded`` as a smaller model sharing ``loaded``'s unpruned tensors."""
    if loaded.structure is not None:
        raise ValueError("slice from the un-pruned super-network")
    return extract(loaded, masks, share_tensors=True)


def shape_signature(masks: Masks) -> tuple[tuple[int, int], ...]:
    """(heads, units) kept per kept layer: all that compute, latency and memory depend on."""
    heads, units = masks.heads.sum(dim=1), masks.units.sum(dim=1)
    return tuple((int(heads[i]), int(units[i])) for i in masks.kept_layers())
