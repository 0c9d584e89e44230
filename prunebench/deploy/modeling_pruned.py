"""A pruned BERT- or RoBERTa-layout encoder with a sequence head, loadable by ``transformers`` alone.

Written next to ``config.json`` by ``prunebench export``; ``config.json`` points here through
``auto_map``, so ``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)``
builds it. It needs torch and transformers only (never prunebench).

Why a file of its own: transformers derives the head size from hidden / heads and gives every layer
the same size, so a model whose layers keep different numbers of heads and FFN units (some none), reads
a mean-pooled sequence, or keeps only some rows of its word-embedding table cannot be described by a
stock config. This one says per layer what is there:

- ``layer_heads`` / ``layer_units``: attention heads and FFN units of each layer (0 allowed);
- ``attention_head_size``: the width of one head (unchanged by pruning);
- ``pooling``: ``"cls"`` (the first token) or ``"mean"`` (the mean over non-padding tokens), what the
  head reads;
- ``vocab_rows``: rows kept in the word-embedding table (null: all); ``vocab_map`` (a weight) maps every
  tokenizer id to its row, ids without a row read the unknown token's;
- ``family``: ``"bert"`` (pooler + linear head, segment ids) or ``"roberta"`` (positions after the padding
  index, dense + tanh + linear head).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PretrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput

FAMILIES = ("bert", "roberta")
POOLINGS = ("cls", "mean")


class PrunedEncoderConfig(PretrainedConfig):
    model_type = "prunebench_pruned_encoder"

    def __init__(
        self,
        family: str = "bert",
        vocab_size: int = 30522,
        hidden_size: int = 768,
        attention_head_size: int = 64,
        layer_heads: list[int] | None = None,
        layer_units: list[int] | None = None,
        hidden_act: str = "gelu",
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        layer_norm_eps: float = 1e-12,
        pad_token_id: int = 0,
        pooling: str = "cls",
        vocab_rows: int | None = None,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        if family not in FAMILIES:
            raise ValueError(f"family {family!r}: use one of {FAMILIES}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r}: use one of {POOLINGS}")
        self.family = family
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.attention_head_size = attention_head_size
        self.layer_heads = list(layer_heads or [])
        self.layer_units = list(layer_units or [])
        if len(self.layer_heads) != len(self.layer_units):
            raise ValueError("layer_heads and layer_units must list the same layers")
        self.num_hidden_layers = len(self.layer_heads)
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.pooling = pooling
        self.vocab_rows = vocab_rows
        self.initializer_range = initializer_range
        super().__init__(pad_token_id=pad_token_id, **kwargs)


class TrimmedWordEmbeddings(nn.Module):
    """Kept rows of the word-embedding table; ``vocab_map[token id]`` is the row a token reads."""

    def __init__(self, rows: int, hidden: int, vocab_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(rows, hidden))
        self.register_buffer("vocab_map", torch.zeros(vocab_size, dtype=torch.int32))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(self.vocab_map[input_ids].long(), self.weight)


class Embeddings(nn.Module):
    def __init__(self, config: PrunedEncoderConfig):
        super().__init__()
        hidden = config.hidden_size
        if config.vocab_rows is None:
            self.word_embeddings = nn.Embedding(config.vocab_size, hidden)
        else:
            self.word_embeddings = TrimmedWordEmbeddings(config.vocab_rows, hidden, config.vocab_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, hidden)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.family, self.pad_id = config.family, config.pad_token_id

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        if self.family == "roberta":  # positions count real tokens only, starting after the padding index
            real = input_ids.ne(self.pad_id).long()
            positions = torch.cumsum(real, dim=1) * real + self.pad_id
        else:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        summed = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )
        return self.LayerNorm(summed)


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, head_size: int):
        super().__init__()
        self.heads, self.head_size = heads, head_size
        if heads:  # a layer without heads has no projections (and its weights file none)
            self.query = nn.Linear(hidden, heads * head_size)
            self.key = nn.Linear(hidden, heads * head_size)
            self.value = nn.Linear(hidden, heads * head_size)

    def forward(self, hidden: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        batch, length, _ = hidden.shape
        if self.heads == 0:  # nothing to attend with: the output dense adds only its bias
            return hidden.new_zeros(batch, length, 0)

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, length, self.heads, self.head_size).transpose(1, 2)

        q, k, v = split(self.query(hidden)), split(self.key(hidden)), split(self.value(hidden))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size) + additive_mask
        context = torch.softmax(scores, dim=-1) @ v
        return context.transpose(1, 2).reshape(batch, length, self.heads * self.head_size)


class DenseResidualNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)``: the output block after attention and after the FFN."""

    def __init__(self, inputs: int, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(inputs, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, config: PrunedEncoderConfig, heads: int):
        super().__init__()
        self.self = SelfAttention(config.hidden_size, heads, config.attention_head_size)
        with warnings.catch_warnings():  # torch warns that initialising a 0-wide weight (no heads) does nothing
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            self.output = DenseResidualNorm(
                heads * config.attention_head_size, config.hidden_size, config.layer_norm_eps
            )

    def forward(self, hidden: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden, additive_mask), hidden)


class Intermediate(nn.Module):
    def __init__(self, config: PrunedEncoderConfig, units: int):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, units)
        self.activation = ACT2FN[config.hidden_act]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden))


class Layer(nn.Module):
    def __init__(self, config: PrunedEncoderConfig, heads: int, units: int):
        super().__init__()
        self.attention = Attention(config, heads)
        with warnings.catch_warnings():  # as above, for a layer without FFN units
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            self.intermediate = Intermediate(config, units)
            self.output = DenseResidualNorm(units, config.hidden_size, config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        attended = self.attention(hidden, additive_mask)
        return self.output(self.intermediate(attended), attended)


class Encoder(nn.Module):
    def __init__(self, config: PrunedEncoderConfig):
        super().__init__()
        self.layer = nn.ModuleList(
            Layer(config, heads, units) for heads, units in zip(config.layer_heads, config.layer_units, strict=True)
        )

    def forward(self, hidden: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            hidden = layer(hidden, additive_mask)
        return hidden


class Pooler(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)

    def forward(self, first: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(first))


class Body(nn.Module):
    def __init__(self, config: PrunedEncoderConfig):
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.pooler = Pooler(config.hidden_size) if config.family == "bert" else None


class RobertaHead(nn.Module):
    def __init__(self, hidden: int, labels: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, labels)

    def forward(self, first: torch.Tensor) -> torch.Tensor:
        return self.out_proj(torch.tanh(self.dense(first)))


class PrunedEncoderForSequenceClassification(PreTrainedModel):
    config_class = PrunedEncoderConfig
    base_model_prefix = "body"

    def __init__(self, config: PrunedEncoderConfig):
        super().__init__(config)
        self.body = Body(config)
        if config.family == "bert":
            self.head = nn.Linear(config.hidden_size, config.num_labels)
        else:
            self.head = RobertaHead(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.body.embeddings(input_ids, token_type_ids)
        weights = attention_mask.to(hidden.dtype)
        # padding gets the dtype's lowest value before the softmax: no attention weight at all
        additive_mask = (1.0 - weights)[:, None, None, :] * torch.finfo(hidden.dtype).min
        hidden = self.body.encoder(hidden, additive_mask)
        if self.config.pooling == "mean":
            summed = (hidden * weights.unsqueeze(-1)).sum(dim=1)
            first = summed / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
        else:
            first = hidden[:, 0]
        if self.body.pooler is not None:
            first = self.body.pooler(first)
        logits = self.head(first)
        loss = None
        if labels is not None:
            if self.config.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)
