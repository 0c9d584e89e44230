"""A trimmed vocabulary: the word-embedding table keeps only some rows; the tokenizer stays as it is.

``TrimmedEmbedding`` replaces the family's word-embedding module. It holds the kept rows and a lookup
buffer ``vocab_map`` (int32, one entry per tokenizer id) that maps every token id to its row; an id whose
row was dropped maps to the unknown token's row. The tokenizer is untouched, so the same input ids work
for WordPiece (BERT) and BPE (RoBERTa) vocabularies alike, and the model config keeps the tokenizer's
``vocab_size`` (the id space inputs are drawn from).

What was trimmed is recorded as ``VocabTrim`` on the loaded model and, on disk, under ``"vocab"`` in a
pruned model's ``prunebench.json`` (``models.pruned``), so ``load_model`` rebuilds the table at its size.
Choosing the rows to keep from task data is ``extract.vocab``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

MAP_DTYPE = torch.int32  # 4 bytes per tokenizer id: 122 KB for BERT's 30,522 ids


@dataclass(frozen=True)
class VocabTrim:
    """What a trimmed model kept of its tokenizer's vocabulary."""

    source_vocab_size: int  # tokenizer ids (rows of the untrimmed table)
    kept: int  # rows of the trimmed table
    unknown_id: int  # the tokenizer id whose row unseen ids use
    source: str  # what the kept tokens were counted on: a run's training split or a data file
    top_k: int | None = None  # at most this many of the most frequent tokens kept (special tokens besides)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> VocabTrim:
        return cls(**{key: data[key] for key in ("source_vocab_size", "kept", "unknown_id", "source", "top_k")})


class TrimmedEmbedding(nn.Module):
    """The kept rows of a word-embedding table; ``vocab_map[id]`` is the row of tokenizer id ``id``."""

    def __init__(self, kept: int, hidden_size: int, source_vocab_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(kept, hidden_size))
        self.register_buffer("vocab_map", torch.zeros(source_vocab_size, dtype=MAP_DTYPE))

    @property
    def num_embeddings(self) -> int:
        return self.weight.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.weight.shape[1]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(self.vocab_map[input_ids], self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings} kept rows of {self.vocab_map.numel()}, dim {self.embedding_dim}"


def trim_embeddings(model: nn.Module, keep_ids: list[int], unknown_id: int) -> TrimmedEmbedding:
    """Replace ``model``'s word embeddings (in place) by their ``keep_ids`` rows; the rest read ``unknown_id``'s.

    ``keep_ids`` must hold ``unknown_id``; the rows keep the order of ``keep_ids`` sorted.
    """
    table = model.get_input_embeddings()
    if isinstance(table, TrimmedEmbedding):
        raise ValueError("the vocabulary is already trimmed")
    ids = sorted(set(keep_ids))
    if unknown_id not in ids:
        raise ValueError("the unknown token must be kept")
    weight = table.weight.detach()
    trimmed = TrimmedEmbedding(len(ids), weight.shape[1], weight.shape[0])
    index = torch.tensor(ids, dtype=torch.long)
    with torch.no_grad():
        trimmed.weight.copy_(weight[index])
        rows = torch.full((weight.shape[0],), ids.index(unknown_id), dtype=MAP_DTYPE)
        rows[index] = torch.arange(len(ids), dtype=MAP_DTYPE)
        trimmed.vocab_map.copy_(rows)
    trimmed.weight.requires_grad_(table.weight.requires_grad)
    model.set_input_embeddings(trimmed)
    return trimmed


def empty_trimmed_table(model: nn.Module, trim: VocabTrim) -> None:
    """Give ``model`` (built from its config) a trimmed table of ``trim``'s size, to load saved weights into."""
    hidden = model.get_input_embeddings().weight.shape[1]
    model.set_input_embeddings(TrimmedEmbedding(trim.kept, hidden, trim.source_vocab_size))
