"""A task's examples as model inputs, and the one prediction loop over them.

Everything that scores a model on task data goes through here, so each scores the same examples
the same way: training's validation after each epoch, the search's candidate evaluation and its
test scores of the Pareto set, standard-NAS trials, and the test-split scores of model variants.

- ``load_run_task``: the task data a training config names (registry, data folder, user files);
- ``tokenised_rows``: every split tokenised for one model, with only the inputs its family takes;
- ``subset``: a seeded subset of a split (order kept), e.g. the validation examples a run scores;
- ``EvalSplit``: a split collated once into length-sorted batches (a batch pads to about its own
  length), with its labels; ``predict`` runs a model over such batches and gives the logits in
  the split's order, ``EvalSplit.score`` the task's metrics.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prunebench.config import TrainConfig
from prunebench.errors import PrunebenchError
from prunebench.models.loaded import LoadedModel
from prunebench.tasks.loading import FilesTaskOptions, TaskData, load_task
from prunebench.tasks.metrics import chance_metrics, compute_metrics
from prunebench.tasks.registry import TaskSpec
from prunebench.tasks.tokenization import tokenize_task

EVAL_BATCH_SIZE = 64  # examples per evaluation batch unless a caller says otherwise


def load_run_task(config: TrainConfig, seed: int | None = None) -> TaskData:
    """The task data ``config`` trains on, split by the data protocol with ``config.seed`` (or ``seed``)."""
    files = None
    if config.task == "files":
        if not (config.train_file and config.test_file and config.text_columns and config.label_column):
            raise PrunebenchError("--task files needs --train, --test, --text-columns and --label-column")
        files = FilesTaskOptions(
            Path(config.train_file),
            Path(config.test_file),
            tuple(config.text_columns),
            config.label_column,
            task_kind=config.task_kind,
            encoding=config.encoding,
            keep_na_labels=config.keep_na_labels,
        )
    return load_task(
        config.task,
        data_dir=Path(config.data_dir) if config.data_dir else None,
        files=files,
        seed=config.seed if seed is None else seed,
        max_train_examples=config.max_train_examples,
    )


# Tokenised splits of the last few (data, tokenizer, length) this process saw: a pipeline's stages, a search and its
# baselines, profiling and scoring each read the same splits, and tokenising them is most of a small stage's time.
_TOKENISED: OrderedDict[tuple, dict[str, list[dict]]] = OrderedDict()
_TOKENISED_KEPT = 4


def tokenised_rows(data: TaskData, loaded: LoadedModel, max_length: int) -> dict[str, list[dict]]:
    """Each split as a list of tokenised examples, with only the inputs the model family takes.

    Kept for this process by the splits' content and the tokenizer's (a new list each call; treat rows as read-only).
    """
    tokenizer_key = _tokenizer_key(loaded.tokenizer)
    if tokenizer_key is None:  # a slow tokenizer: nothing short of its files identifies it, so nothing is kept
        return _tokenise(data, loaded, max_length)
    key = (_data_key(data), tokenizer_key, max_length, loaded.adapter.uses_token_type_ids)
    if key not in _TOKENISED:
        _TOKENISED[key] = _tokenise(data, loaded, max_length)
        while len(_TOKENISED) > _TOKENISED_KEPT:
            _TOKENISED.popitem(last=False)
    _TOKENISED.move_to_end(key)
    return {split: list(rows) for split, rows in _TOKENISED[key].items()}


def _tokenise(data: TaskData, loaded: LoadedModel, max_length: int) -> dict[str, list[dict]]:
    rows = {}
    for split, dataset in tokenize_task(data, loaded.tokenizer, max_length, progress=False).items():
        if not loaded.adapter.uses_token_type_ids and "token_type_ids" in dataset.column_names:
            dataset = dataset.remove_columns("token_type_ids")
        rows[split] = dataset.to_list()
    return rows


def _data_key(data: TaskData) -> str:
    """sha256 of the task's kind and every split's rows (Arrow IPC bytes: milliseconds even for SST-2's 67k)."""
    import pyarrow as pa

    digest = hashlib.sha256(repr((data.spec.name, data.spec.kind, data.spec.num_labels)).encode())
    for split, dataset in data.splits().items():
        table = dataset.with_format("arrow")[:]  # the rows the dataset shows (a selection's indices applied)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digest.update(split.encode())
        digest.update(sink.getvalue())
    return digest.hexdigest()


def _tokenizer_key(tokenizer) -> str | None:
    """A fast tokenizer's whole serialised pipeline (vocabulary, normaliser, special tokens) and the inputs it
    returns; None for a slow tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    pipeline = json.loads(backend.to_str())
    for setting in ("truncation", "padding"):  # what the last call set: each call passes its own
        pipeline.pop(setting, None)
    text = json.dumps([type(tokenizer).__name__, list(tokenizer.model_input_names), pipeline], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def subset(rows: list[dict], cap: int | None, seed: int) -> list[dict]:
    """At most ``cap`` of ``rows``, drawn with ``seed`` and kept in their order (all of them when ``cap`` is None)."""
    if cap is None or len(rows) <= cap:
        return rows
    keep = np.random.default_rng(seed).permutation(len(rows))[:cap]
    return [rows[i] for i in sorted(keep)]


def validation_rows(rows: dict[str, list[dict]], config: TrainConfig, cap: int | None = None) -> list[dict]:
    """The validation examples a run scores: its seeded subset of ``cap`` (default: ``max_eval_examples``)."""
    return subset(rows["validation"], config.max_eval_examples if cap is None else cap, config.seed)


@dataclass
class Batch:
    rows: np.ndarray  # positions in the split
    inputs: dict[str, torch.Tensor]  # collated model inputs (no labels)
    length: int  # padded sequence length


def _length(row: dict) -> int:
    ids = row["input_ids"]
    return max(len(choice) for choice in ids) if ids and isinstance(ids[0], list) else len(ids)


def make_batches(rows: list[dict], collator, batch_size: int = EVAL_BATCH_SIZE, bucketed: bool = True) -> list[Batch]:
    """Collate the split once: length-sorted buckets (or the split's order), each padded to its longest row."""
    order = list(range(len(rows)))
    if bucketed:
        order.sort(key=lambda i: _length(rows[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        inputs = collator([rows[i] for i in chunk])
        inputs.pop("labels", None)
        batches.append(Batch(np.array(chunk), dict(inputs), int(inputs["input_ids"].shape[-1])))
    return batches


def batch_logits(
    model: torch.nn.Module, batches: Iterable[Batch], device: torch.device
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(positions, logits) of each batch, the model in eval mode (its mode is restored afterwards)."""
    was_training = model.training
    model.eval()
    parts = []
    try:
        with torch.inference_mode():
            for batch in batches:
                inputs = {k: v.to(device) for k, v in batch.inputs.items()}
                parts.append((batch.rows, model(**inputs).logits.float().cpu().numpy()))
    finally:
        model.train(was_training)
    return parts


def in_row_order(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The logits of ``batch_logits`` parts (from any batches, any order) in the split's order."""
    if not parts:
        return np.zeros((0,))
    values = np.concatenate([v for _, v in parts])
    out = np.empty_like(values)
    out[np.concatenate([r for r, _ in parts])] = values
    return out


def predict(model: torch.nn.Module, batches: Sequence[Batch], device: torch.device) -> np.ndarray:
    """Logits for every row of the split the batches hold, in the split's order."""
    return in_row_order(batch_logits(model, batches, device))


@dataclass
class EvalSplit:
    """One split, tokenised and collated once into batches, with its labels: what every scorer runs over."""

    spec: TaskSpec
    labels: np.ndarray
    batches: list[Batch]

    @classmethod
    def of(
        cls, spec: TaskSpec, rows: list[dict], collator, batch_size: int = EVAL_BATCH_SIZE, bucketed: bool = True
    ) -> EvalSplit:
        labels = np.array([row["labels"] for row in rows])
        return cls(spec, labels, make_batches(rows, collator, batch_size, bucketed))

    def __len__(self) -> int:
        return len(self.labels)

    def metrics(self, logits: np.ndarray) -> dict[str, float]:
        """The task's metrics of ``logits`` (in the split's order), with ``metric`` and ``error``."""
        return compute_metrics(self.spec, logits, self.labels)

    def chance(self) -> dict[str, float]:
        """The metrics of the majority class (the mean, for regression) on this split."""
        return chance_metrics(self.spec, self.labels)

    def predict(self, model: torch.nn.Module, device: torch.device) -> np.ndarray:
        return predict(model, self.batches, device)

    def score(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        return self.metrics(self.predict(model, device))
