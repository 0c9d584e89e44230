"""One adapter per model family: everything that differs between BERT-like families.

Pruning, extraction and counting code only talks to a ``FamilyAdapter``; adding a
family with the same layout means adding one subclass here and registering it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForMultipleChoice,
    BertForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
    RobertaConfig,
    RobertaForMultipleChoice,
    RobertaForSequenceClassification,
)

from prunebench.errors import PrunebenchError, UnknownNameError


@dataclass(frozen=True)
class LayerParts:
    """The prunable linear layers of one encoder layer."""

    self_attention: nn.Module  # holds query/key/value and the head count attributes
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    attention_output: nn.Linear  # input is the concatenation of all heads
    intermediate: nn.Module  # dense + activation; its output has one column per FFN unit
    intermediate_dense: nn.Linear
    ffn_output: nn.Linear


class FamilyAdapter:
    """BERT layout: ``<base>.encoder.layer[i].{attention.{self,output},intermediate,output}``."""

    model_types: ClassVar[tuple[str, ...]] = ("bert",)
    config_class: ClassVar[type[PretrainedConfig]] = BertConfig
    head_classes: ClassVar[dict[str, type[PreTrainedModel]]] = {
        "classification": BertForSequenceClassification,
        "regression": BertForSequenceClassification,
        "multiple_choice": BertForMultipleChoice,
    }
    # RoBERTa has a single token type; feeding BERT-style segment ids would index out of range.
    uses_token_type_ids: ClassVar[bool] = True
    # Task-head modules that quantized variants keep in floating point (a name covers its children:
    # RoBERTa's classifier.dense and classifier.out_proj too). A 2-label output layer is too narrow
    # for bitsandbytes' 4-bit CPU kernels, and an exact head is common practice anyway.
    quantization_skip_modules: ClassVar[tuple[str, ...]] = ("classifier",)
    # Whether ``reorder_layer`` is an exact reparameterisation for this family (importance-ordered training).
    # A family whose heads or units are tied to their position elsewhere (per-head tables outside these
    # linear layers, say) sets it False, and ordering is refused for it.
    can_reorder: ClassVar[bool] = True

    def model_class(self, task_kind: str) -> type[PreTrainedModel]:
        try:
            return self.head_classes[task_kind]
        except KeyError:
            raise UnknownNameError("task kind", task_kind, sorted(self.head_classes)) from None

    def encoder_layers(self, model: PreTrainedModel) -> nn.ModuleList:
        return model.base_model.encoder.layer

    def set_encoder_layers(self, model: PreTrainedModel, layers: nn.ModuleList) -> None:
        model.base_model.encoder.layer = layers
        model.config.num_hidden_layers = len(layers)

    def first_token_reader(self, model: PreTrainedModel) -> nn.Module:
        """The module of the task head that takes the sequence and reads its first token."""
        pooler = getattr(model.base_model, "pooler", None)
        # RoBERTa's sequence classifier has no pooler: its head reads the first token itself.
        return pooler if pooler is not None else model.classifier

    def output_layer(self, model: PreTrainedModel) -> nn.Linear:
        """The sequence head's last linear layer (its outputs are the logits or the regression score)."""
        return model.classifier

    def layer_parts(self, layer: nn.Module) -> LayerParts:
        attention = layer.attention.self
        return LayerParts(
            self_attention=attention,
            query=attention.query,
            key=attention.key,
            value=attention.value,
            attention_output=layer.attention.output.dense,
            intermediate=layer.intermediate,
            intermediate_dense=layer.intermediate.dense,
            ffn_output=layer.output.dense,
        )

    def reorder_layer(self, layer: nn.Module, heads: Sequence[int], units: Sequence[int]) -> None:
        """Put ``layer``'s heads and FFN units in the order ``heads`` and ``units`` (permutations), in place.

        Heads are the query/key/value output rows (blocks of head_size) and the attention output's input
        columns; units the intermediate rows and the FFN output's input columns. Attention treats heads
        independently and the FFN sums over units, so the layer computes the same function. The parameters stay
        the same tensors (their values are rewritten), so an optimiser built on them still holds them.
        """
        if not self.can_reorder:
            raise PrunebenchError(f"{type(self).__name__} cannot reorder heads and units; train without ordering")
        parts = self.layer_parts(layer)
        head_size = parts.self_attention.attention_head_size
        heads, units = torch.as_tensor(list(heads), dtype=torch.long), torch.as_tensor(list(units), dtype=torch.long)
        counts = (parts.self_attention.num_attention_heads, parts.intermediate_dense.out_features)
        for order, count in zip((heads, units), counts, strict=True):
            if sorted(order.tolist()) != list(range(count)):
                raise ValueError(f"not a permutation of {count} items: {order.tolist()}")
        rows = (heads[:, None] * head_size + torch.arange(head_size)).reshape(-1)
        for linear in (parts.query, parts.key, parts.value):
            _reorder(linear, rows, dim=0)
        _reorder(parts.attention_output, rows, dim=1)
        _reorder(parts.intermediate_dense, units, dim=0)
        _reorder(parts.ffn_output, units, dim=1)

    def set_head_count(self, layer: nn.Module, num_heads: int) -> None:
        """Keep the attention module's bookkeeping in line with its sliced weights."""
        attention = layer.attention.self
        attention.num_attention_heads = num_heads
        attention.all_head_size = num_heads * attention.attention_head_size
        if num_heads == 0:
            # Reshaping a 0-wide projection into (-1, head_dim) is ambiguous; a layer
            # without heads contributes only the output bias, which EmptySelfAttention gives.
            layer.attention.self = EmptySelfAttention(attention.attention_head_size)

    def max_sequence_length(self, config: PretrainedConfig) -> int:
        """The longest input (in tokens) the position embeddings can take."""
        return config.max_position_embeddings

    def skip_layer(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """What a dropped layer returns: its input (transformers 5 layers return a tensor)."""
        return hidden_states


@torch.no_grad()
def _reorder(linear: nn.Linear, index: torch.Tensor, dim: int) -> None:
    """Rows (``dim`` 0, with the bias) or input columns (``dim`` 1) of ``linear`` in the order ``index``."""
    index = index.to(linear.weight.device)
    linear.weight.copy_(linear.weight.index_select(dim, index))
    if dim == 0 and linear.bias is not None:
        linear.bias.copy_(linear.bias.index_select(0, index))


class RobertaAdapter(FamilyAdapter):
    model_types = ("roberta", "xlm-roberta")
    config_class = RobertaConfig
    head_classes = {
        "classification": RobertaForSequenceClassification,
        "regression": RobertaForSequenceClassification,
        "multiple_choice": RobertaForMultipleChoice,
    }
    uses_token_type_ids = False

    def output_layer(self, model: PreTrainedModel) -> nn.Linear:
        return model.classifier.out_proj  # RoBERTa's head is dense -> tanh -> out_proj

    def max_sequence_length(self, config: PretrainedConfig) -> int:
        # Positions start after the padding index (pad_token_id + 1), so 514 embeddings hold 512 tokens.
        return config.max_position_embeddings - config.pad_token_id - 1


class EmptySelfAttention(nn.Module):
    """Self-attention with every head pruned: a 0-wide context, so the output dense adds only its bias."""

    def __init__(self, attention_head_size: int):
        super().__init__()
        self.num_attention_heads = 0
        self.attention_head_size = attention_head_size
        self.all_head_size = 0

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None


_ADAPTERS: tuple[FamilyAdapter, ...] = (FamilyAdapter(), RobertaAdapter())


def adapter_for(config: PretrainedConfig) -> FamilyAdapter:
    for adapter in _ADAPTERS:
        if config.model_type in adapter.model_types:
            return adapter
    known = sorted(t for a in _ADAPTERS for t in a.model_types)
    raise PrunebenchError(
        f"model type {config.model_type!r} has no prunebench adapter; supported families: {', '.join(known)}"
    )
