"""Extraction: masks -> a physically smaller model, weight-sharing slices for search, sub-networks on disk.

- ``extract`` / ``shared_extract`` (``extraction.py``): a sub-network as a smaller model (a copy
  to keep, or a read-only slice that shares the untouched tensors);
- ``export_subnetworks`` / ``extract_subnetworks`` (``export.py``): named (or ``prunebench extract``'s
  random) sub-networks written as pruned models, each checked against the masked super-network on request.

The pruned-model format (how such a model is saved and loaded again) is ``prunebench.models.pruned``;
a search's Pareto set is exported into its run by ``prunebench.search.extract_pareto``, which reads
the search's tables and calls ``export_subnetworks``.
"""

from prunebench.extract.export import (
    VERIFY_TOLERANCE,
    ExtractedModel,
    export_subnetworks,
    extract_subnetworks,
    verification_batch,
)
from prunebench.extract.extraction import extract, shared_extract

__all__ = [
    "VERIFY_TOLERANCE",
    "ExtractedModel",
    "export_subnetworks",
    "extract_subnetworks",
    "extract",
    "shared_extract",
    "verification_batch",
]
