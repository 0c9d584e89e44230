"""What a measurement is of: one model with its exact counts and its identity.

A subject is one fp32 model (un-pruned, or pruned by extraction) plus the sub-network it is
of its source model (``Masks``), so parameter and MAC counts come from ``CostModel`` and
compare across pruned and un-pruned models. Which models a profiling call takes (names,
folders, a run's models) is ``prunebench.profiling.subjects``.

Each subject has a ``content_key``: a hash of what the model computes (its pruned structure,
config and weights), so the profile and score tables recognise a model by what it is, not by
where it lies or what it is called (``content_key``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from prunebench.models import LoadedModel, load_model
from prunebench.supernet import CostModel, Masks


@dataclass
class Subject:
    label: str  # unique within one profiling call: "full", a pruned directory's name, ...
    source: str  # what it was loaded from
    loaded: LoadedModel
    masks: Masks  # the sub-network of the source model that this model is
    cost: CostModel
    weights_stamp: tuple | None = None  # the weight files ``loaded`` was read from (``load_subject``)

    @cached_property
    def content_key(self) -> str:
        """What the model is: structure, config and weights hashed (``content_key``); computed once."""
        return content_key(self.loaded, self.weights_stamp)

    @property
    def pruned(self) -> bool:
        return self.loaded.structure is not None

    @property
    def parameters(self) -> int:
        return self.cost.parameters(self.masks)

    @property
    def relative_parameters(self) -> float:
        return self.cost.relative_parameters(self.masks)

    @property
    def encoder_parameters(self) -> int:
        return self.cost.encoder_parameters(self.masks)

    @property
    def encoder_fraction(self) -> float:
        return self.cost.encoder_fraction(self.masks)

    def macs(self, seq_len: int) -> int:
        return self.cost.macs(self.masks, seq_len)


def masks_of(loaded: LoadedModel) -> Masks:
    """The sub-network a model is: all ones for an un-pruned model, its kept heads/units for a pruned one."""
    dims = loaded.dims
    if loaded.structure is None:
        return Masks.full(dims)
    heads = torch.zeros(dims.num_layers, dims.num_heads)
    units = torch.zeros(dims.num_layers, dims.intermediate_size)
    layers = torch.zeros(dims.num_layers, dtype=torch.bool)
    for kept in loaded.structure.layers:
        layers[kept.source_layer] = True
        heads[kept.source_layer, list(kept.heads)] = 1.0
        units[kept.source_layer, list(kept.units)] = 1.0
    return Masks(heads, units, layers)


def subject_from_loaded(label: str, loaded: LoadedModel) -> Subject:
    return Subject(label, loaded.source, loaded, masks_of(loaded), CostModel.for_model(loaded))


def load_subject(label: str, path: Path, **options) -> Subject:
    """``load_model(path)`` as a subject whose weights hash is cached by ``path``'s weight files (``content_key``)."""
    stamp = weights_stamp(path)
    subject = subject_from_loaded(label, load_model(path, **options))
    subject.weights_stamp = stamp
    return subject


# --- content keys -----------------------------------------------------------------------------

# Config entries that describe the file, not the computation (a model saved and reloaded keeps its key).
_CONFIG_METADATA = ("transformers_version", "architectures", "dtype", "torch_dtype")
_WEIGHT_FILES = ("*.safetensors", "*.bin")
_DIGESTS: dict[tuple, str] = {}  # weights hashes by weights_stamp, in this process (see content_key)


def structure_hash(loaded: LoadedModel) -> str | None:
    """A short hash of what a pruned model kept of its source (None: an un-pruned model)."""
    if loaded.structure is None:
        return None
    return hashlib.sha256(json.dumps(loaded.structure.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def weights_hash(loaded: LoadedModel) -> str:
    """sha256 over every tensor of the state dict in name order: name, dtype, shape and bytes.

    Hashed from memory rather than from the files, so an in-memory model and the same model on disk
    agree and nothing is read twice; about 0.08 s for MiniLM's 90 MB on one core (sha256 runs at
    memory speed here), so a run's models cost well under a second per profiling call.
    """
    digest = hashlib.sha256()
    state = loaded.model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def _config_text(loaded: LoadedModel) -> str:
    config = {
        k: v
        for k, v in loaded.model.config.to_dict().items()
        if not k.startswith("_") and k not in _CONFIG_METADATA  # _name_or_path is where it lies
    }
    return json.dumps(config, sort_keys=True, default=str)


def weights_stamp(path: Path) -> tuple | None:
    """A model directory's weight files as (directory, (name, size, mtime, inode) ...); None without any."""
    path = Path(path).resolve()
    files = sorted(f for pattern in _WEIGHT_FILES for f in path.glob(pattern)) if path.is_dir() else []
    if not files:
        return None
    stats = [(f.name, f.stat()) for f in files]
    return (str(path), *((name, st.st_size, st.st_mtime_ns, st.st_ino) for name, st in stats))


def content_key(loaded: LoadedModel, stamp: tuple | None = None) -> str:
    """The identity of a model for the profile and score tables: structure hash + config + weights hash.

    Two models with the same key compute the same thing, wherever they lie and whatever their
    label, so a moved or copied run keeps its measurements, and a label that now names another
    model (a new Pareto export reusing p00, p01, ...) is measured again.

    ``stamp``: ``weights_stamp`` of the directory, taken just before ``loaded`` was read from it.
    While the files still carry that stamp, the weights hash is kept for this process under it, so
    a run profiled and then scored (two loads) hashes each model once.
    """
    cache_key = None
    if stamp is not None and weights_stamp(stamp[0]) == stamp:  # not rewritten since it was loaded
        cache_key = (*stamp, loaded.task_kind, getattr(loaded.model.config, "num_labels", None))
    weights = _DIGESTS.get(cache_key) if cache_key is not None else None
    if weights is None:
        weights = weights_hash(loaded)
        if cache_key is not None:
            _DIGESTS[cache_key] = weights
    parts = [structure_hash(loaded), _config_text(loaded), weights]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]
