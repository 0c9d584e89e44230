"""Quality of model variants: every (model, variant) scored on the run's task test split.

The quantized variants are scored on the same test split as the pruned sub-networks, so
they can stand on the same error axis: ``error = 1 - metric`` with the task's primary
metric (``prunebench.tasks.compute_metrics``). The task, its data protocol and the token
budget (``max_length``) come from the run's ``run.json``, exactly as training and search
used them, so the fp32 score of an exported Pareto model equals the test metric its
search recorded for it.

The split is tokenised and collated once (length-bucketed batches, as the search's
evaluator does) and reused for every model and variant. Each variant is built with
``variants.build_variant``; one that cannot be built on this device is a ``skipped`` row
with the reason, one that fails while predicting an ``error`` row.

Each row also keeps what the model said on every example (``example_predictions``: class ids, or
scores for regression) beside the gold labels (``example_labels``), in the split's order, so two
options can be compared on the same examples (``report.paired``: exact McNemar on per-example
correctness, a paired bootstrap of the metric for regression). ``PerExample`` reads them back
(``correct``: per-example correctness; ``errors``: per-example error for regression). Rows written
before these columns existed read with both None: ``PerExample.of`` gives None, and a paired test
asked of them names the command that re-scores.

Output, in the profile folder: ``scores.parquet`` (and ``scores.csv``), one row per model
and variant. Each finished row is written at once under ``scores.parts/``, so an interrupted
run resumes where it stopped; ``ok`` and ``skipped`` rows are final, ``error`` rows are tried
again on a rerun. Rows are identified by the model's content and label (``model_key``), as in
the profile table (``store.py``: a moved run keeps its scores, a reused label is scored again,
a damaged part is set aside and scored again).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prunebench.config import TrainConfig
from prunebench.environment import console as make_console
from prunebench.environment import time_left
from prunebench.errors import PrunebenchError
from prunebench.hardware.measure import build_or_out_of_memory, collecting_only_new_objects, release_memory
from prunebench.hardware.profiles import resolve_target
from prunebench.hardware.store import RowStore, arrow_schema
from prunebench.hardware.subject import Subject, structure_hash
from prunebench.hardware.variants import VariantSkipped, get_variant, quiet_bitsandbytes
from prunebench.profiling.subjects import run_subjects
from prunebench.rundir import ProfileDir, check_data_files, read_run, stage_lock
from prunebench.tasks import make_collator
from prunebench.tasks.registry import REGRESSION
from prunebench.tasks.rows import EvalSplit, load_run_task, predict, subset, tokenised_rows

SPLIT = "test"


@dataclass
class ScoreRow:
    model: str  # the subject's label: "full", "NAME/LABEL", ...
    variant: str
    split: str
    status: str  # "ok", "skipped" or "error"
    device: str  # "cpu", "cuda:0", ...
    threads: int
    examples: int  # test examples scored (or that would have been)
    max_examples: int | None = None  # the cap asked for (None: the whole split)
    metric_name: str | None = None  # the task's primary metric: accuracy, f1, matthews, spearman
    metric: float | None = None
    error: float | None = None  # 1 - metric
    chance_error: float | None = None  # the error of the majority class (the mean, for regression) on this split
    metrics: str | None = None  # JSON: every metric compute_metrics gives
    seconds: float | None = None  # predicting the split (after the variant is built)
    build_seconds: float | None = None
    reason: str | None = None
    model_source: str | None = None
    model_structure: str | None = None  # short hash of a pruned model's kept heads/units (None: un-pruned)
    model_key: str | None = None  # what the model is: structure, config and weights hashed (subjects.content_key)
    task: str | None = None
    timestamp: str | None = None
    # per example, in the split's order (JSON lists; None: scored before they were kept): see PerExample
    example_predictions: str | None = None  # class ids (classification) or predicted scores (regression)
    example_labels: str | None = None  # the gold labels of the same examples

    def key(self) -> str:
        """Identity: a rerun with the same model (content and label), variant, split, device and cap skips the row.

        Not the path: a moved or copied run keeps its scores (see ``ProfileRow.key`` for the label).
        """
        ident = [self.model_key, self.model, self.variant, self.split, self.device, self.max_examples]
        return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:24]


SCHEMA = arrow_schema(ScoreRow)
RESCORE = "prunebench profile {run} --device cpu --score"  # the command that (re)scores a run's variants


@dataclass(frozen=True)
class PerExample:
    """What one option said on every test example, beside the gold labels (module docstring)."""

    predictions: np.ndarray  # class ids, or scores for regression
    labels: np.ndarray
    regression: bool

    @classmethod
    def of(cls, row: dict | pd.Series) -> PerExample | None:
        """Read from a score row; None for a row scored before per-example predictions were kept."""
        predictions, labels = row.get("example_predictions"), row.get("example_labels")
        if not isinstance(predictions, str) or not isinstance(labels, str):
            return None
        predictions, labels = np.asarray(json.loads(predictions)), np.asarray(json.loads(labels))
        regression = np.issubdtype(predictions.dtype, np.floating)
        return cls(predictions, labels, bool(regression))

    @classmethod
    def from_logits(cls, logits: np.ndarray, labels: np.ndarray, regression: bool) -> PerExample:
        logits = np.asarray(logits)
        if regression:
            predictions = logits.reshape(len(labels), -1)[:, 0].astype("float64")
        else:
            predictions = logits.argmax(axis=1) if logits.ndim == 2 else logits.astype("int64")
        return cls(predictions, np.asarray(labels), regression)

    def encode(self) -> tuple[str, str]:
        """(predictions, labels) as the score row's JSON columns; scores to 6 significant digits."""
        if self.regression:
            return json.dumps([float(f"{x:.6g}") for x in self.predictions]), json.dumps(
                [float(f"{x:.6g}") for x in self.labels.astype("float64")]
            )
        return json.dumps(self.predictions.astype(int).tolist()), json.dumps(self.labels.astype(int).tolist())

    def correct(self) -> np.ndarray:
        """Per-example correctness (classification)."""
        return self.predictions == self.labels

    def errors(self) -> np.ndarray:
        """Per-example error: 1 - correct for classification, |prediction - label| for regression."""
        if self.regression:
            return np.abs(self.predictions.astype("float64") - self.labels.astype("float64"))
        return (~self.correct()).astype("float64")

    def accuracy_and_majority(self) -> tuple[float, float] | None:
        """(accuracy, the majority class's accuracy on the same labels); None for regression or no examples."""
        if self.regression or not len(self.labels):
            return None
        labels = self.labels.astype("int64")
        return float(np.mean(self.correct())), float(np.bincount(labels).max() / len(labels))

    def same_examples(self, other: PerExample) -> bool:
        """Whether both were scored on the same examples in the same order (what a paired test needs)."""
        return len(self.labels) == len(other.labels) and bool(np.array_equal(self.labels, other.labels))


COLUMNS = [f.name for f in fields(ScoreRow)]


class ScoreStore(RowStore):
    """One small Parquet file per finished row in the profile folder's scores parts; ``consolidate`` gathers them."""

    schema = SCHEMA
    sort_by = ("timestamp", "model", "variant")

    def __init__(self, out_dir: Path):
        folder = ProfileDir(out_dir)
        super().__init__(folder.scores_parts, folder.scores)

    @staticmethod
    def _write_csv(frame: pd.DataFrame, path: Path) -> None:
        # the per-example lists stay in the Parquet table: thousands of numbers per cell help no one in a CSV
        frame.drop(columns=["example_predictions", "example_labels"], errors="ignore").to_csv(path, index=False)

    def done(self, row: ScoreRow) -> bool:
        """A final row exists for this key (``ok`` or ``skipped``; an ``error`` is tried again)."""
        path = self._part(row.key())
        table = self.read_part(path) if path.is_file() else None
        return table is not None and table.column("status")[0].as_py() != "error"


def read_scores(out_dir: Path) -> pd.DataFrame:
    """The scores under ``out_dir``: the parts as they are (also mid-run), in the stored schema."""
    return ScoreStore(out_dir).table()


def structure_id(subject: Subject) -> str | None:
    """A short hash of what a pruned model kept (None: un-pruned); ``model_key`` covers it and the weights."""
    return structure_hash(subject.loaded)


# --- the test split --------------------------------------------------------------------------


def _load_split(run_dir: Path, subject: Subject, batch_size: int, max_examples: int | None) -> EvalSplit | None:
    """The run's test split, tokenised with ``subject``'s tokenizer and collated once; None when it has no rows."""
    run = read_run(run_dir)
    check_data_files(run_dir, run)  # moved or changed data: one line with the way out
    train = TrainConfig.from_dict(run["train"])
    data = load_run_task(train)
    if len(data.test) == 0:
        return None
    rows = subset(tokenised_rows(data, subject.loaded, train.max_length)[SPLIT], max_examples, train.seed)
    return EvalSplit.of(data.spec, rows, make_collator(data.spec, subject.loaded.tokenizer), batch_size)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


# --- scoring ---------------------------------------------------------------------------------


def score_variants(
    run_dir: Path,
    subjects: Sequence[Subject] | None,
    variant_names: Sequence[str],
    out_dir: Path,
    device: str = "cpu",
    threads: int = 1,
    batch_size: int = 64,
    max_examples: int | None = None,
    show_progress: bool = True,
    on_row: Callable[[ScoreRow], None] | None = None,
) -> pd.DataFrame:
    """Score every (subject, variant) on the run's test split into ``out_dir/scores.parquet`` (module docstring).

    ``subjects`` None: the run's own (``run_subjects``). ``device``: ``cpu``, ``cuda[:N]`` or a GPU
    profile name (as ``profile_models`` takes it). Returns the whole table; an empty one, with
    nothing written, when the task has no test split.
    """
    run_dir = Path(run_dir)
    console = make_console(quiet=not show_progress, highlight=False, markup=False)
    if batch_size < 1:
        raise PrunebenchError(f"the scoring batch size must be at least 1, got {batch_size}")
    if max_examples is not None and max_examples < 1:
        raise PrunebenchError(f"--score-max-examples must be at least 1 when given, got {max_examples}")
    if threads < 1:
        raise PrunebenchError(f"--threads must be at least 1, got {threads}")
    run = read_run(run_dir)
    if "train" not in run:
        raise PrunebenchError(f"{run_dir} is not a super-network run; scoring needs the task it was trained on")
    specs = [get_variant(name) for name in variant_names]
    subjects = list(subjects) if subjects is not None else run_subjects(run_dir)
    if not subjects:
        return SCHEMA.empty_table().to_pandas()
    torch_device = scoring_device(device)
    device_name = str(torch_device)
    task = run.get("task", {}).get("name")
    # one writer of the folder (for a run, RUN/profile/TARGET as a stage of it); cheap collections within
    with stage_lock(out_dir), collecting_only_new_objects():
        store = ScoreStore(out_dir)
        store.reconcile({s.label: (s.content_key, s.source) for s in subjects})

        chance_error: float | None = None  # known once the split is loaded

        def base(subject: Subject, spec, examples: int) -> ScoreRow:
            return ScoreRow(
                model=subject.label,
                variant=spec.name,
                split=SPLIT,
                status="ok",
                device=device_name,
                threads=threads,
                examples=examples,
                max_examples=max_examples,
                chance_error=chance_error,
                model_source=subject.source,
                model_structure=structure_id(subject),
                task=task,
                model_key=subject.content_key,
            )

        pending = [(s, v) for s in subjects for v in specs if not store.done(base(s, v, 0))]
        if not pending:
            return store.consolidate()
        split = _load_split(run_dir, subjects[0], batch_size, max_examples)
        if split is None:
            console.print(f"note: task {task!r} has no test split here; the variants are not scored (nothing written)")
            return SCHEMA.empty_table().to_pandas()
        examples = len(split.labels)
        chance_error = split.chance()["error"]
        console.print(f"scoring {len(pending)} model variant(s) on the test split ({examples} examples, {device_name})")
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            started = time.perf_counter()
            for done, (subject, spec) in enumerate(pending, start=1):
                row = _score_one(base(subject, spec, examples), subject, spec, split, torch_device)
                row.timestamp = datetime.now(UTC).isoformat(timespec="microseconds")
                store.append(row)
                if on_row is not None:
                    on_row(row)
                if row.status == "ok":
                    shown = f"{row.metric_name} {row.metric:.4f} ({row.seconds:.1f} s)"
                else:
                    shown = f"{row.status}: {row.reason}"
                left = time_left(time.perf_counter() - started, done, len(pending))
                eta = f" · {done}/{len(pending)}, {left} left" if left else ""
                console.print(f"  {row.model} {row.variant}: {shown}{eta}", style="dim")
        finally:
            torch.set_num_threads(previous)
        return store.consolidate()


def scoring_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` / ``cuda:N``, or a GPU profile name (``a10``, ...) that must be on this machine."""
    name = str(device).strip().lower()
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PrunebenchError(f"scoring on {device!r} needs CUDA, which is not available here; score on cpu")
        try:
            return torch.device(name)
        except RuntimeError:
            raise PrunebenchError(f"unknown device {device!r}; use cpu, cuda, cuda:N or a GPU profile name") from None
    return resolve_target(name).device  # the profile's GPU, found by its NVML name


def _score_one(row: ScoreRow, subject: Subject, spec, split: EvalSplit, device: torch.device) -> ScoreRow:
    started = time.perf_counter()
    try:
        built, oom = build_or_out_of_memory(subject.loaded, spec, device)
    except VariantSkipped as reason:
        row.status, row.reason = "skipped", str(reason)
        return row
    if built is None:
        row.status, row.reason = "error", f"out of memory building the variant: {oom}"
        return row
    row.build_seconds = time.perf_counter() - started
    try:
        started = time.perf_counter()
        with quiet_bitsandbytes():
            logits = predict(built.model, split.batches, device)
        row.seconds = time.perf_counter() - started
    except (RuntimeError, AssertionError, NotImplementedError, ValueError) as error:
        row.status, row.reason = "error", _first_line(error)
        return row
    finally:
        del built
        release_memory(device)
    metrics = {k: float(v) for k, v in split.metrics(logits).items()}
    row.metric_name = split.spec.metric
    row.metric, row.error = metrics["metric"], metrics["error"]
    row.metrics = json.dumps(metrics, sort_keys=True)
    per_example = PerExample.from_logits(logits, split.labels, split.spec.kind == REGRESSION)
    row.example_predictions, row.example_labels = per_example.encode()
    return row
