"""A model ready to use: the network, its tokenizer, its family adapter and, when pruned, its structure."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from prunebench.models.adapters import FamilyAdapter
from prunebench.models.dims import ModelDims, PrunedStructure
from prunebench.models.vocab import VocabTrim


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: FamilyAdapter
    source: str  # the --model argument it came from
    task_kind: str
    structure: PrunedStructure | None = None  # set for physically pruned models
    vocab: VocabTrim | None = None  # set for models with a trimmed vocabulary (``models.vocab``)
    fresh_head: bool = False  # the task head was initialised here, not loaded with the weights

    @property
    def dims(self) -> ModelDims:
        """Sizes of the un-pruned encoder; a pruned model reports the sizes it was cut from."""
        return self.structure.source_dims if self.structure else ModelDims.from_config(self.model.config)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' warnings and weight-loading progress bars for loads we expect."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
