"""Models: a model ready to use (``loaded``), loading by name or folder, one adapter per family, pooling,
layer slicing and the pruned-model format (how an extracted model is saved and rebuilt)."""

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
