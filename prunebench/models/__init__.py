"""Models: loading by name, family adapters, the pruned-model format."""

from prunebench.models.adapters import FamilyAdapter, adapter_for
from prunebench.models.dims import LayerStructure, ModelDims, PrunedStructure
from prunebench.models.loaded import LoadedModel
from prunebench.models.loading import load_model

__all__ = [
    "FamilyAdapter",
    "LayerStructure",
    "LoadedModel",
    "ModelDims",
    "PrunedStructure",
    "adapter_for",
    "load_model",
]
