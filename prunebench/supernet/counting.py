"""Exact parameter and MAC counts of a sub-network, without building it.

MACs are multiply-accumulates of matrix products for one sequence of ``seq_len``
tokens: the linear layers and the two attention products (QK^T and AV). Softmax,
LayerNorm, activations and embedding lookups are not counted. Linear layers
outside the encoder (pooler, classifier head) run once per sequence, on the
first token. Tests check both counts against the extracted model itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from prunebench.models.dims import ModelDims
from prunebench.models.loaded import LoadedModel
from prunebench.supernet.spaces import Masks


def layer_parameters(dims: ModelDims, num_heads: int, num_units: int) -> int:
    hidden, width = dims.hidden_size, num_heads * dims.head_size
    attention = 3 * (hidden * width + width) + width * hidden + hidden + 2 * hidden  # q,k,v, output, LayerNorm
    ffn = hidden * num_units + num_units + num_units * hidden + hidden + 2 * hidden  # in, out, LayerNorm
    return attention + ffn


def layer_macs(dims: ModelDims, num_heads: int, num_units: int, seq_len: int) -> int:
    hidden, width = dims.hidden_size, num_heads * dims.head_size
    projections = seq_len * hidden * width * 4  # q, k, v and the output projection
    attention = 2 * seq_len * seq_len * width  # QK^T and AV over all kept heads
    ffn = 2 * seq_len * hidden * num_units
    return projections + attention + ffn


@dataclass(frozen=True)
class CostModel:
    """Counts for sub-networks of one model: its encoder sizes plus what lies outside the encoder."""

    dims: ModelDims
    outside_parameters: int  # embeddings, pooler, task head
    outside_macs: int  # pooler and task head, per sequence
    trimmed_parameters: int = 0  # word-embedding parameters a trimmed vocabulary removed (``models.vocab``)

    @classmethod
    def for_model(cls, loaded: LoadedModel) -> CostModel:
        model, layers = loaded.model, loaded.adapter.encoder_layers(loaded.model)
        encoder_ids = {id(p) for p in layers.parameters()}
        encoder_modules = {id(m) for m in layers.modules()}
        outside_parameters = sum(p.numel() for p in model.parameters() if id(p) not in encoder_ids)
        outside_macs = sum(
            m.in_features * m.out_features
            for m in model.modules()
            if isinstance(m, nn.Linear) and id(m) not in encoder_modules
        )
        trimmed = 0
        if loaded.vocab is not None:
            trimmed = (loaded.vocab.source_vocab_size - loaded.vocab.kept) * loaded.model.config.hidden_size
        return cls(loaded.dims, outside_parameters, outside_macs, trimmed)

    def _kept(self, masks: Masks) -> list[tuple[int, int]]:
        heads, units = masks.heads.sum(dim=1), masks.units.sum(dim=1)
        return [(int(heads[i]), int(units[i])) for i in masks.kept_layers()]

    def encoder_parameters(self, masks: Masks) -> int:
        return sum(layer_parameters(self.dims, h, u) for h, u in self._kept(masks))

    def parameters(self, masks: Masks) -> int:
        return self.outside_parameters + self.encoder_parameters(masks)

    def macs(self, masks: Masks, seq_len: int) -> int:
        return self.outside_macs + sum(layer_macs(self.dims, h, u, seq_len) for h, u in self._kept(masks))

    def relative_parameters(self, masks: Masks) -> float:
        """All parameters (embeddings and head included: what the weight file holds) / the full model's.

        The full model is the untrimmed one: a trimmed vocabulary's removed rows count in the denominator.
        """
        return self.parameters(masks) / (self.parameters(Masks.full(self.dims)) + self.trimmed_parameters)

    def encoder_fraction(self, masks: Masks) -> float:
        """Encoder parameters (what structural pruning removes) / the full encoder's: the default cost."""
        return self.encoder_parameters(masks) / self.encoder_parameters(Masks.full(self.dims))

    @property
    def embedding_share(self) -> float:
        """The part of the full model's parameters outside the encoder: no pruning of the encoder removes it."""
        return self.outside_parameters / self.parameters(Masks.full(self.dims))
