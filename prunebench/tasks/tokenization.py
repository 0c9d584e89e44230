"""Tokenisation of normalised task data, and collators that pad per batch.

Nothing is padded when tokenising: padding each batch to its own longest row
(dynamic padding) is what makes short-sentence tasks cheap, and latency
measurements then reflect the real sequence lengths.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from transformers import DataCollatorWithPadding
from transformers.data.data_collator import pad_without_fast_tokenizer_warning

from prunebench.errors import PrunebenchError
from prunebench.tasks.loading import TaskData
from prunebench.tasks.registry import TaskSpec

if TYPE_CHECKING:  # datasets is imported where it is used: importing prunebench.tasks does not need it
    import datasets

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def tokenize_task(data: TaskData, tokenizer: Any, max_length: int = 128, progress: bool = True) -> datasets.DatasetDict:
    """Splits train/validation/test as model inputs plus ``labels`` (unpadded).

    Multiple choice: one row per example, each input a list with one
    token list per choice (the context paired with each ending). ``progress=False`` turns off the
    datasets library's progress bars (a per-split "Map" bar is noise next to a training display).
    """
    import datasets

    if not progress:
        datasets.disable_progress_bars()
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8:
        raise PrunebenchError(f"max_length must be an integer >= 8, got {max_length!r}; pass e.g. --max-length 128")
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and max_length > model_max:
        raise PrunebenchError(
            f"max_length {max_length} exceeds the model's limit of {model_max} tokens; "
            f"pass --max-length {model_max} or less"
        )
    return datasets.DatasetDict(
        {split: _tokenize_split(data.spec, ds, tokenizer, max_length) for split, ds in data.splits().items()}
    )


def _tokenize_split(spec: TaskSpec, ds: datasets.Dataset, tokenizer: Any, max_length: int) -> datasets.Dataset:
    if spec.is_multiple_choice:

        def encode(batch: Mapping[str, list]) -> dict[str, list]:
            return _encode_choices(batch, tokenizer, max_length, spec.num_labels)
    else:

        def encode(batch: Mapping[str, list]) -> dict[str, list]:
            second = batch.get("text_b")
            # "longest_first" truncation trims the longer text of a pair first.
            return dict(tokenizer(batch["text_a"], second, truncation=True, max_length=max_length))

    encoded = ds.map(
        encode,
        batched=True,
        remove_columns=[col for col in ds.column_names if col != "label"],
        # The data is in memory (never cached on disk), so a fresh fingerprint
        # is safe and avoids hashing the tokenizer on every call.
        new_fingerprint=uuid.uuid4().hex,
    )
    return encoded.rename_column("label", "labels")


def _encode_choices(batch: Mapping[str, list], tokenizer: Any, max_length: int, num_choices: int) -> dict[str, list]:
    for endings in batch["endings"]:
        if len(endings) != num_choices:
            raise PrunebenchError(
                f"a multiple-choice example has {len(endings)} endings, the task expects {num_choices}; "
                "fix the data so every example has the same number of choices"
            )
    first = [context for context in batch["context"] for _ in range(num_choices)]
    second = [ending for endings in batch["endings"] for ending in endings]
    flat = tokenizer(first, second, truncation=True, max_length=max_length)
    return {
        key: [values[i : i + num_choices] for i in range(0, len(values), num_choices)] for key, values in flat.items()
    }


def _as_list(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


@dataclass
class PaddingCollator:
    """Dynamic padding for classification/regression; labels long or float32."""

    tokenizer: Any
    regression: bool = False
    _pad: DataCollatorWithPadding = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pad = DataCollatorWithPadding(self.tokenizer, return_tensors="pt")

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = dict(self._pad([dict(f) for f in features]))
        if "labels" in batch:
            batch["labels"] = batch["labels"].to(torch.float32 if self.regression else torch.long)
        return batch


@dataclass
class MultipleChoiceCollator:
    """Pads every choice of every example to one length: tensors (B, num_choices, T)."""

    tokenizer: Any
    num_choices: int

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        keys = [key for key in MODEL_INPUTS if key in features[0]]
        flat = []
        for feature in features:
            choices = [_as_list(feature[key]) for key in keys]
            if any(len(c) != self.num_choices for c in choices):
                raise PrunebenchError(
                    f"a multiple-choice example has {len(choices[0])} choices, expected {self.num_choices}; "
                    "tokenise the data with tokenize_task"
                )
            flat.extend({key: choices[k][i] for k, key in enumerate(keys)} for i in range(self.num_choices))
        padded = pad_without_fast_tokenizer_warning(self.tokenizer, flat, padding=True, return_tensors="pt")
        size = len(features)
        batch = {key: padded[key].view(size, self.num_choices, -1) for key in keys}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([int(_as_list(f["labels"])) for f in features], dtype=torch.long)
        return batch


def make_collator(spec: TaskSpec, tokenizer: Any) -> PaddingCollator | MultipleChoiceCollator:
    """The batch collator for ``spec``: dynamic padding, labels in the loss's dtype."""
    if spec.is_multiple_choice:
        return MultipleChoiceCollator(tokenizer, spec.num_labels)
    return PaddingCollator(tokenizer, regression=spec.is_regression)
