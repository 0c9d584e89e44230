"""Tasks: registry, loading (hub, local GLUE TSVs, packaged data, user files),
the train/validation/test protocol, metrics and tokenisation."""

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
from prunebench.tasks.splits import VALIDATION_FRACTION
from prunebench.tasks.tokenization import (
    MultipleChoiceCollator,
    PaddingCollator,
    make_collator,
    tokenize_task,
)

__all__ = [
    "CLASSIFICATION",
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
    "load_task",
    "make_collator",
    "task_names",
    "tokenize_task",
]
