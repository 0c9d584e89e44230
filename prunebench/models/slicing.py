"""Physically remove heads and FFN units from one encoder layer.

Shared by extraction (indices chosen from masks) and by loading a saved pruned
model (indices read from its metadata), so both build exactly the same shapes.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from transformers.pytorch_utils import prune_linear_layer

from prunebench.models.adapters import FamilyAdapter


def _head_rows(heads: list[int], head_size: int) -> torch.Tensor:
    rows = [torch.arange(h * head_size, (h + 1) * head_size) for h in heads]
    return torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)


def _slice(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    # prune_linear_layer keeps dtype/device and copies the kept rows or columns; a fully
    # pruned block gives a 0-wide Linear, whose (no-op) initialisation torch warns about.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        return prune_linear_layer(linear, index.to(linear.weight.device), dim=dim)


def slice_layer(adapter: FamilyAdapter, layer: nn.Module, heads: list[int], units: list[int]) -> None:
    """Keep only ``heads`` (head indices) and ``units`` (FFN unit indices) of ``layer``, in place."""
    parts = adapter.layer_parts(layer)
    head_size = parts.self_attention.attention_head_size
    rows = _head_rows(heads, head_size)
    attention = parts.self_attention
    attention.query = _slice(parts.query, rows, dim=0)
    attention.key = _slice(parts.key, rows, dim=0)
    attention.value = _slice(parts.value, rows, dim=0)
    _replace(layer, parts.attention_output, _slice(parts.attention_output, rows, dim=1))
    adapter.set_head_count(layer, len(heads))

    unit_index = torch.tensor(units, dtype=torch.long)
    _replace(layer, parts.intermediate_dense, _slice(parts.intermediate_dense, unit_index, dim=0))
    _replace(layer, parts.ffn_output, _slice(parts.ffn_output, unit_index, dim=1))


def _replace(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Swap submodule ``old`` of ``root`` for ``new`` wherever it is registered."""
    for name, module in root.named_modules():
        if module is old:
            parent_name, _, attr = name.rpartition(".")
            setattr(root.get_submodule(parent_name) if parent_name else root, attr, new)
            return
    raise ValueError("module to replace is not part of the layer")
