"""Tasks: registry, loading (hub, local GLUE TSVs, packaged data, user files), the train/validation/test
protocol, metrics, tokenisation, and a task's examples as model inputs (``rows``: the seeded subsets, the
length-bucketed evaluation batches of a split, and the one prediction loop over them).

Importing it needs neither the datasets library nor a model: datasets is imported where data is loaded."""

from prunebench.tasks.loading import FilesTaskOptions, TaskData, guess_kind, infer_kind, load_task
from prunebench.tasks.metrics import compute_metrics
from prunebench.tasks.registry import (
    CLASSIFICATION,
    MULTIPLE_CHOICE,
    REGRESSION,
    GlueLayout,
    TaskSpec,
    get_task,
    list_tasks,
    task_names,
)
from prunebench.tasks.rows import EvalSplit, load_run_task, predict, subset, tokenised_rows, validation_rows
from prunebench.tasks.splits import VALIDATION_FRACTION
from prunebench.tasks.tokenization import (
    MultipleChoiceCollator,
    PaddingCollator,
    make_collator,
    tokenize_task,
)

__all__ = [
    "CLASSIFICATION",
    "EvalSplit",
    "MULTIPLE_CHOICE",
    "REGRESSION",
    "VALIDATION_FRACTION",
    "FilesTaskOptions",
    "GlueLayout",
    "MultipleChoiceCollator",
    "PaddingCollator",
    "TaskData",
    "TaskSpec",
    "compute_metrics",
    "get_task",
    "guess_kind",
    "infer_kind",
    "list_tasks",
    "load_run_task",
    "load_task",
    "make_collator",
    "predict",
    "subset",
    "task_names",
    "tokenize_task",
    "tokenised_rows",
    "validation_rows",
]
