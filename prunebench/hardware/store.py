"""The profile table: one row per (model, variant, device, batch, sequence length, mode), on disk.

Each finished point is written at once as its own small Parquet file in the profile folder's
parts folder (``rundir.ProfileDir``; write to a temporary name, then rename), so an interrupted
run loses nothing and a rerun skips the points already there. ``consolidate`` gathers the
parts into the folder's table (Parquet, and CSV for people). Every part is written with the
same explicit schema, so the table reads back with stable column types.

A point is identified by the model's content (``model_key``: structure, config and weights
hashed, ``subjects.content_key``) and its label, never by the path it was loaded from: a moved
or copied run keeps its points, and a label that now names another model is measured again.
``reconcile`` keeps a folder coherent before a call adds to it: rows of an earlier model under a
label now given to another are moved to ``superseded/``, a part that cannot be read to
``damaged/`` (with a warning; its point is measured again), both inside the parts folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prunebench.rundir import ProfileDir, write_atomic

MODES = ("measured", "estimated")
STATUSES = ("ok", "skipped", "oom", "error")
DAMAGED_DIR = "damaged"  # inside the parts folder: parts that could not be read
SUPERSEDED_DIR = "superseded"  # inside the parts folder: rows of a model its label no longer names


# The one definition of each number, of the row's ``latency_s`` and ``memory_bytes``: every reader (CLI, compare,
# report, search objectives) takes those columns as they are.
LATENCY_DEFINITION = (
    "the median (p50) time of one forward pass of the batch (stored in seconds, shown in ms; mean, p90, p99, "
    "min and max kept beside it); for an estimate, the roofline's one figure"
)
RATIO_DEFINITION = (
    "latency_ratio: the point's median pass over the reference's (the un-pruned fp32 model at the same batch and "
    "sequence length), both timed in the same interleaved rounds, so load from elsewhere slows both alike; "
    "latency_ratio_low/high: a 95% percentile bootstrap interval over the rounds (resampled in pairs); "
    "ratio_clock 'thread_cpu' (one CPU thread): both on the timing thread's CPU time per pass, which time-slicing "
    "with other processes does not stretch, 'wall': on wall time"
)
MEMORY_DEFINITION = (
    "peak memory on the device (stored in bytes, shown in MiB) while running the batch: on a GPU, torch's peak "
    "allocated bytes (weights, inputs and activations); on a CPU, the exact weight bytes plus the peak RSS "
    "growth during the timed passes (after one warm-up pass, with freed heap handed back first), the same for "
    "every variant: ONNX Runtime runs without its CPU arena, so its working memory is freed between passes and "
    "counted as torch's is; for an estimate, the roofline's weights plus largest live activations"
)


@dataclass
class ProfileRow:
    """One point. For ``mode == "estimated"`` every number is a roofline prediction (``estimate.py``).

    ``latency_s`` and ``memory_bytes`` are the point's latency and memory (``LATENCY_DEFINITION``,
    ``MEMORY_DEFINITION``), derived from the measured (or estimated) fields whenever a row is made;
    a row that is not ``ok`` has neither.
    """

    # what
    model: str
    model_source: str
    pruned: bool
    variant: str
    quantization: str | None
    compute_dtype: str | None
    target: str  # the hardware profile name: "cpu", "a10", ...
    device: str  # the device measured on (or the profile described, for estimates)
    batch_size: int
    seq_len: int
    threads: int
    mode: str  # "measured" or "estimated"
    estimated: bool
    status: str  # "ok", "skipped", "oom" or "error"
    reason: str | None = None
    notes: str | None = None
    device_index: int | None = None
    model_key: str | None = None  # what the model is (subjects.content_key); ``model`` is its label here
    # exact counts
    parameters: int | None = None
    relative_parameters: float | None = None  # all parameters / the source model's (embeddings included)
    encoder_parameters: int | None = None
    encoder_fraction: float | None = None  # encoder parameters / the source model's encoder (what pruning removes)
    macs_per_sequence: int | None = None
    weight_bytes: int | None = None
    vocab_kept: int | None = None  # rows of a trimmed vocabulary's embedding table (None: not trimmed)
    # THE latency and memory of the point (derived, see the class docstring)
    latency_s: float | None = None
    memory_bytes: int | None = None
    # latency (seconds per forward pass of one batch)
    latency_mean_s: float | None = None
    latency_p50_s: float | None = None
    latency_p90_s: float | None = None
    latency_p99_s: float | None = None
    latency_min_s: float | None = None
    latency_max_s: float | None = None
    latency_std_s: float | None = None
    latency_cv: float | None = None
    repeats: int | None = None
    warmup: int | None = None
    stable: bool | None = None  # the mean met the stability rule; False after the end-of-sweep re-measurements too
    # relative latency: this point and the reference timed in the same interleaved rounds (RATIO_DEFINITION)
    latency_ratio: float | None = None
    latency_ratio_low: float | None = None  # bootstrap interval over the rounds (hardware.timing.CONFIDENCE)
    latency_ratio_high: float | None = None
    ratio_reference: str | None = None  # "MODEL VARIANT" the ratio is to (the un-pruned fp32 model)
    ratio_clock: str | None = None  # what the ratio was taken on: "thread_cpu" (one CPU thread) or "wall"
    cpu_p50_s: float | None = None  # median CPU time of the timing thread per pass (one CPU thread)
    waited_share: float | None = None  # share of the passes' wall time the thread was not running (time-sliced)
    interleaved_with: int | None = None  # points timed in the same rounds, this one included
    remeasured: int | None = None  # times re-measured at the end of a sweep for being unstable
    throughput_seq_per_s: float | None = None
    timer: str | None = None
    # memory
    rss_bytes: int | None = None  # process RSS with the variant loaded (CPU)
    peak_rss_growth_bytes: int | None = None  # peak RSS during the passes minus RSS before (CPU)
    memory_method: str | None = None
    torch_peak_allocated_bytes: int | None = None  # CUDA
    torch_peak_reserved_bytes: int | None = None  # CUDA
    nvml_used_bytes: int | None = None  # CUDA, the whole device
    peak_memory_growth_bytes: int | None = None  # measured: what the passes added on top of what was resident
    peak_memory_total_bytes: int | None = None  # measured on CUDA: everything live at the peak (weights included)
    est_peak_memory_bytes: int | None = None
    # LLM.int8 linears whose input width is not a multiple of 4: an fp32 matmul on CUDA (int8 variants only)
    int8_fp32_fallback_linears: int | None = None
    int8_fallback_weight_share: float | None = None  # their share of the quantized weights
    # roofline terms (estimates only)
    est_compute_s: float | None = None
    est_memory_s: float | None = None
    est_overhead_s: float | None = None
    est_bound: str | None = None
    est_flops: float | None = None
    est_bytes: float | None = None
    est_matmul_dtype: str | None = None
    estimate_error: float | None = None  # with --calibrate: estimated / measured latency - 1
    est_correction: float | None = None  # the measured correction the latency was multiplied by (corrections.py)
    est_error_note: str | None = None  # what the estimate was corrected with, or that no measurement checked it
    est_error_label: str | None = None  # est_error_note in a few words, beside the figure in reports
    # environment
    driver_version: str | None = None
    cuda_version: str | None = None
    torch_version: str | None = None
    transformers_version: str | None = None
    bitsandbytes_version: str | None = None
    prunebench_version: str | None = None
    python_version: str | None = None
    cpu_model: str | None = None
    git_revision: str | None = None
    timestamp: str | None = None

    def __post_init__(self) -> None:
        self.latency_s, self.memory_bytes = _point_latency(self), _point_memory(self)

    @classmethod
    def from_record(cls, record: dict) -> ProfileRow:
        """A row from a table's record: unknown columns dropped, missing ones None, the definitions derived."""
        return cls(**{f.name: _plain(record.get(f.name)) for f in fields(cls)})

    def key(self) -> str:
        """Identity of the point: a rerun with the same key is skipped.

        The model counts by content and label, not by ``model_source``: the label stays in, as the
        tables are read by label and two labels may name the same model (two searches exporting the
        same sub-network): each keeps its own rows.
        """
        ident = [self.model_key, self.model, self.variant, self.target, self.device]
        ident += [self.batch_size, self.seq_len, self.threads, self.mode]
        return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:24]


def _point_latency(row: ProfileRow) -> float | None:
    """``LATENCY_DEFINITION``: the median of the timed passes; an estimate's one figure."""
    if row.status != "ok":
        return None
    return row.latency_mean_s if row.estimated else row.latency_p50_s


def _point_memory(row: ProfileRow) -> int | None:
    """``MEMORY_DEFINITION``: the peak on the device while running (CPU: weights + peak RSS growth)."""
    if row.status != "ok":
        return None
    if row.estimated:
        return row.est_peak_memory_bytes
    if row.torch_peak_allocated_bytes is not None:
        return row.torch_peak_allocated_bytes
    if row.weight_bytes is None:
        return None
    return row.weight_bytes + (row.peak_rss_growth_bytes or 0)


def _plain(value):
    """A table value as a Python one: None for a missing number (NaN), plain ints, floats and bools."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


def profile_frame(rows: list[ProfileRow]) -> pd.DataFrame:
    """Rows as a table in the stored schema (stable column types)."""
    return pa.Table.from_pylist([asdict(row) for row in rows], schema=SCHEMA).to_pandas()


def with_definitions(frame: pd.DataFrame) -> pd.DataFrame:
    """A profile table with every column of the row and ``latency_s`` / ``memory_bytes`` derived as the row
    defines them: tables written before those columns existed read like new ones."""
    return profile_frame([ProfileRow.from_record(record) for record in frame.to_dict("records")])


def read_profile(folder: Path, fix: str) -> pd.DataFrame:
    """The consolidated profile table of a profile folder (``rundir.ProfileDir``), checked and with its definitions."""
    return with_definitions(ProfileDir(folder).read_table(fix, columns=["model", "variant", "status", "estimated"]))


def _arrow_type(row_type: type, name: str) -> pa.DataType:
    hint = typing.get_type_hints(row_type)[name]
    if isinstance(hint, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}[hint]


def arrow_schema(row_type: type) -> pa.Schema:
    """The explicit schema of a row dataclass (every part is written with it, so types stay stable)."""
    return pa.schema([pa.field(f.name, _arrow_type(row_type, f.name)) for f in fields(row_type)])


SCHEMA = arrow_schema(ProfileRow)
COLUMNS = [f.name for f in fields(ProfileRow)]


class RowStore:
    """A resumable table: one small Parquet file per finished row (named by ``row.key()``) in the ``parts``
    folder, written atomically; ``consolidate`` gathers them into the ``table`` file (and a CSV beside it).
    Subclasses name the row type, the files (from ``rundir.ProfileDir``) and the sort order. Rows have
    ``model`` (the label), ``model_key`` (the content) and ``model_source`` columns (module docstring)."""

    schema: pa.Schema
    sort_by: tuple[str, ...]

    def __init__(self, parts: Path, table: Path):
        self.parts, self.table_path = Path(parts), Path(table)

    def _part(self, key: str) -> Path:
        return self.parts / f"{key}.parquet"

    def has(self, row) -> bool:
        return self._part(row.key()).is_file()

    def append(self, row) -> None:
        self.parts.mkdir(parents=True, exist_ok=True)
        self._write_part(self._part(row.key()), pa.Table.from_pylist([asdict(row)], schema=self.schema))

    def _write_part(self, target: Path, table: pa.Table) -> None:
        write_atomic(target, lambda staging: pq.write_table(table, staging))

    def _files(self) -> list[Path]:
        return sorted(self.parts.glob("*.parquet")) if self.parts.is_dir() else []

    def read_part(self, path: Path) -> pa.Table | None:
        """One part in the stored schema; None when it is gone, or damaged (then moved to ``damaged/``)."""
        try:
            table = pq.read_table(path, schema=self.schema)
        except FileNotFoundError:
            return None  # moved aside meanwhile
        except (pa.ArrowException, OSError) as error:
            self._set_aside(path, DAMAGED_DIR, f"{type(error).__name__}: {str(error).strip().splitlines()[0]}")
            return None
        if table.num_rows != 1:
            self._set_aside(path, DAMAGED_DIR, f"{table.num_rows} rows instead of one")
            return None
        return table

    def _set_aside(self, path: Path, folder: str, damage: str | None = None) -> Path | None:
        """Move a part into ``folder`` under the parts folder (never over an earlier one); warn when damaged."""
        aside = self.parts / folder
        aside.mkdir(exist_ok=True)
        target = aside / path.name
        if target.exists():
            target = aside / f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return None  # another reader moved it first
        if damage is not None:
            print(f"warning: damaged part {path} ({damage}); moved to {target}, its row is redone", file=sys.stderr)
        return target

    def reconcile(self, models: Mapping[str, tuple[str, str]]) -> int:
        """Make the parts fit the models about to be added: ``models`` maps each label to (content key, source).

        Reads every part: a damaged one is moved to ``damaged/``; a row whose label now names another
        model (another content key, or none: written before content keys) is moved to ``superseded/``;
        a row of the same model found at another path (a moved or copied folder) gets the new
        ``model_source``. Returns how many rows were superseded.
        """
        superseded = 0
        for path in self._files():
            table = self.read_part(path)
            if table is None:
                continue
            row = table.to_pylist()[0]
            if row["model"] not in models:
                continue
            key, source = models[row["model"]]
            if row["model_key"] != key:
                superseded += self._set_aside(path, SUPERSEDED_DIR) is not None
            elif row["model_source"] != source:
                row["model_source"] = source
                self._write_part(path, pa.Table.from_pylist([row], schema=self.schema))
        if superseded:
            print(
                f"note: {superseded} row(s) of models whose labels now name other models were moved to "
                f"{self.parts / SUPERSEDED_DIR}",
                file=sys.stderr,
            )
        return superseded

    def table(self) -> pd.DataFrame:
        tables = [t for t in (self.read_part(f) for f in self._files()) if t is not None]
        if not tables:
            return self.schema.empty_table().to_pandas()
        frame = pa.concat_tables(tables).to_pandas()
        return frame.sort_values(list(self.sort_by), kind="stable").reset_index(drop=True)

    def consolidate(self) -> pd.DataFrame:
        """Write the whole table to its Parquet and CSV files (atomically) and return it."""
        frame = self.table()
        self.table_path.parent.mkdir(parents=True, exist_ok=True)
        for path, write in ((self.table_path, self._write_parquet), (self.csv_path, self._write_csv)):
            write_atomic(path, lambda staging, write=write: write(frame, staging))
        return frame

    @property
    def csv_path(self) -> Path:
        return self.table_path.with_suffix(".csv")

    def _write_parquet(self, frame: pd.DataFrame, path: Path) -> None:
        pq.write_table(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False), path)

    @staticmethod
    def _write_csv(frame: pd.DataFrame, path: Path) -> None:
        frame.to_csv(path, index=False)


class ProfileStore(RowStore):
    schema = SCHEMA
    sort_by = ("timestamp", "model", "variant", "batch_size", "seq_len", "mode")

    def __init__(self, out_dir: Path):
        folder = ProfileDir(out_dir)
        super().__init__(folder.parts, folder.table)

    def table(self) -> pd.DataFrame:
        return with_definitions(super().table())  # parts written before a column existed read like new ones


def read_profile_table(out_dir: Path) -> pd.DataFrame:
    """The table under ``out_dir``: the parts as they are (also mid-run), in the stored schema."""
    return ProfileStore(out_dir).table()
