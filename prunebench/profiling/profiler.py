"""``profile_run`` and ``profile_models``: latency and memory of model variants on a target, into a resumable table.

``profile_run(source, ProfileConfig(...))`` is ``prunebench profile``: the models of a run (its
fine-tuned model and exported Pareto models, into ``RUN/profile/TARGET``, then each variant's
test-split score) or of model folders / names (into ``--out``). ``profile_models`` is the loop.

For every model (un-pruned or pruned), variant (fp32, fp16, bf16, int8, nf4, fp4,
dynamic-int8) and point of the batch-size x sequence-length grid, one row is written as
soon as it is finished (``hardware.store``); a rerun into the same folder skips finished points.

- ``target="cpu"``: measured here at a fixed thread count (recorded in every row);
- ``target=<GPU profile name>``: measured when that GPU is here (matched by the name NVML
  reports), a clear error naming what was found when it is not;
- ``estimate=True``: nothing runs; every row is a roofline estimate from the profile
  (``estimate.py``) with ``mode == "estimated"``;
- ``calibrate=True``: each measured point also gets the estimate for the same point, with
  ``estimate_error`` = estimated / measured latency - 1; ``calibration.json`` summarises it.

Unsupported combinations become ``skipped`` rows with the reason; running out of memory
becomes an ``oom`` row and the loop goes on; a variant that fails on this device becomes
``error`` rows with the error's first line.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console

from prunebench.config import ProfileConfig, TimingConfig
from prunebench.environment import cpu_model, git_revision
from prunebench.errors import PrunebenchError
from prunebench.hardware.estimate import NotEstimable, estimate
from prunebench.hardware.measure import PointOutOfMemory, build_or_out_of_memory, measure_point, release_memory
from prunebench.hardware.profiles import Target, resolve_target
from prunebench.hardware.store import ProfileRow, ProfileStore
from prunebench.hardware.subject import Subject, subject_from_loaded
from prunebench.hardware.variants import VARIANTS, VariantSkipped, compute_dtype, get_variant, int8_fallback_fields
from prunebench.models import LoadedModel
from prunebench.profiling.scoring import score_variants
from prunebench.profiling.subjects import is_run_dir, resolve_subjects, run_subjects
from prunebench.rundir import ProfileDir, RunDir, stage_lock, write_atomic

ModelsArg = Sequence[Subject | LoadedModel | str | Path] | Mapping[str, LoadedModel | str | Path]


def to_subjects(models: ModelsArg) -> list[Subject]:
    """Subjects from names, directories, loaded models or ready subjects (a mapping gives the labels)."""
    items = list(models.items()) if isinstance(models, Mapping) else [(None, m) for m in models]
    subjects: list[Subject] = []
    for index, (label, item) in enumerate(items):
        if isinstance(item, Subject):
            found = [item]
        elif isinstance(item, LoadedModel):
            found = [subject_from_loaded(label or _default_label(item, index), item)]
        elif isinstance(item, Path) or (isinstance(item, str) and Path(item).is_dir()):
            found = resolve_subjects(model_dir=Path(item))
        else:
            found = resolve_subjects(model=str(item))
        if label is not None and len(found) == 1:
            found[0].label = label
        subjects += found
    labels = [s.label for s in subjects]
    if len(set(labels)) != len(labels):
        raise PrunebenchError(f"models need distinct labels, got {labels}; pass a mapping {{label: model}}")
    return subjects


def _default_label(loaded: LoadedModel, index: int) -> str:
    return f"pruned-{index}" if loaded.structure is not None else "full"


def check_grid(subjects: Sequence[Subject], batch_sizes: Sequence[int], seq_lens: Sequence[int]) -> None:
    """Refuse sizes a model cannot take before anything runs."""
    if not batch_sizes or not seq_lens:
        raise PrunebenchError("give at least one batch size and one sequence length")
    bad_batch = [b for b in batch_sizes if b < 1]
    if bad_batch:
        raise PrunebenchError(f"batch size {bad_batch[0]} is not positive; use sizes >= 1")
    for subject in subjects:
        longest = subject.loaded.adapter.max_sequence_length(subject.loaded.model.config)
        bad = [s for s in seq_lens if not 1 <= s <= longest]
        if bad:
            raise PrunebenchError(
                f"sequence length {bad[0]} does not fit {subject.label} ({subject.source}), "
                f"which takes 1 to {longest} tokens; pick --seq-lens within that"
            )


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _environment_fields(target: Target) -> dict:
    return {
        "driver_version": target.driver_version,
        "cuda_version": torch.version.cuda if target.device is not None and target.device.type == "cuda" else None,
        "torch_version": torch.__version__,
        "transformers_version": _version("transformers"),
        "bitsandbytes_version": _version("bitsandbytes"),
        "prunebench_version": _version("prunebench"),
        "python_version": platform.python_version(),
        "cpu_model": cpu_model(),
        "git_revision": git_revision(),
    }


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def profile_models(
    models: ModelsArg,
    out_dir: Path,
    *,
    target: str = ProfileConfig.target,
    variants: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = ProfileConfig.batch_sizes,
    seq_lens: Sequence[int] = ProfileConfig.seq_lens,
    estimate_only: bool = False,
    calibrate: bool = False,
    threads: int = 1,
    timing: TimingConfig = ProfileConfig.timing,
    on_row: Callable[[ProfileRow], None] | None = None,
) -> pd.DataFrame:
    """Profile ``models`` on ``target`` into ``out_dir`` (see the module docstring); returns the whole table."""
    if threads < 1 or threads > (os.cpu_count() or 1) * 4:
        raise PrunebenchError(f"--threads {threads} is not sensible here ({os.cpu_count()} cores); use 1")
    specs = [get_variant(name) for name in (variants or list(VARIANTS))]
    where = resolve_target(target, estimate_only, calibrate)
    subjects = to_subjects(models)
    check_grid(subjects, batch_sizes, seq_lens)
    with stage_lock(out_dir):  # one writer of the folder; for a run, RUN/profile/TARGET as a stage of it
        store = ProfileStore(out_dir)
        store.reconcile({s.label: (s.content_key, s.source) for s in subjects})
        run = _Run(store, where, threads, timing, calibrate, on_row, _environment_fields(where))
        with torch_threads(threads):
            for subject in subjects:
                for spec in specs:
                    points = [(b, s) for b in batch_sizes for s in seq_lens]
                    if where.mode == "estimated":
                        run.estimate_all(subject, spec, points)
                    else:
                        run.measure_all(subject, spec, points)
        frame = store.consolidate()
        if calibrate:
            write_calibration(frame, ProfileDir(out_dir).calibration)
        return frame


@dataclass
class ProfileResult:
    out_dir: Path  # the profile folder (``rundir.ProfileDir``)
    table: pd.DataFrame  # the whole profile table
    scores: pd.DataFrame | None = None  # a run's variants scored on its test split
    calibration: pd.DataFrame | None = None  # with ``calibrate``: how far the estimates were off


def profile_run(
    source: Path | None,
    config: ProfileConfig,
    *,
    model: str | None = None,
    out: Path | None = None,
    on_row: Callable[[ProfileRow], None] | None = None,
    show_progress: bool = True,
) -> ProfileResult:
    """``prunebench profile [SOURCE] [--model M]``: profile, and for a run score, as ``config`` says.

    ``source`` a run directory: its fine-tuned model ('full') and every Pareto model exported into it,
    into ``RUN/profile/TARGET`` unless ``out`` says otherwise, then each variant's test-split score
    (``config.score``; not with ``estimate`` unless asked, since nothing ran here). Otherwise a model
    directory, a pruned model or a folder of them, and/or ``model``, into ``out``.
    """
    console = Console(quiet=not show_progress, highlight=False, markup=False, soft_wrap=True)
    run_dir = source if source is not None and is_run_dir(source) else None
    problems = []
    if source is None and model is None:
        problems.append("give a model directory or --model (minilm, shape:NAME or a directory)")
    if run_dir is not None and model is not None:
        problems.append(f"{run_dir} is a run: it brings its fine-tuned model (profiled as 'full'); drop --model")
    if config.score and run_dir is None:
        problems.append("--score scores a run's models on its task's test split; give a run directory or drop --score")
    if out is None and run_dir is None:
        problems.append("give --out FOLDER for the profile table (only a run has a default, RUN/profile/TARGET)")
    if problems:
        raise PrunebenchError("; ".join(problems))
    out = Path(out) if out is not None else RunDir(run_dir).profile_dir(config.target).path
    resolve_target(config.target, config.estimate, config.calibrate)  # an absent GPU is refused before loading models
    if run_dir is not None:
        subjects = run_subjects(run_dir)
        if len(subjects) == 1:
            console.print(
                f"note: {run_dir} has no exported Pareto models yet, so only its fine-tuned model ('full') is "
                f"profiled; add them with 'prunebench extract-pareto {run_dir}' and run this again (finished "
                "points are kept)"
            )
    else:
        subjects = resolve_subjects(model=model, model_dir=source)
    table = profile_models(
        subjects, out, target=config.target, variants=config.variants, batch_sizes=config.batch_sizes,
        seq_lens=config.seq_lens, estimate_only=config.estimate, calibrate=config.calibrate, threads=config.threads,
        timing=config.timing, on_row=on_row,
    )  # fmt: skip
    result = ProfileResult(out, table, calibration=calibration_summary(table) if config.calibrate else None)
    if run_dir is None or config.score is False:
        return result
    variants = list(config.variants or VARIANTS)
    if config.estimate and config.score is None:
        # An estimated target's answer needs every variant's error; the variants no other target of the
        # run has scored (on a GPU target: fp16 and bf16, what everyone deploys there) are scored here.
        variants = _unscored_variants(run_dir, config.target, variants, subjects)
        if not variants:
            return result
        console.print(
            f"note: {config.target} is estimated, so {', '.join(variants)} are scored on this CPU, where the run "
            "was trained (--no-score skips it); GPU numerics differ slightly"
        )
    elif config.estimate:
        console.print("note: scoring on this CPU (--estimate measured nothing on a GPU)")
    where = "cpu" if config.estimate else config.target
    result.scores = score_variants(
        run_dir, subjects, variants, out, device=where, threads=config.threads,
        max_examples=config.score_max_examples, show_progress=show_progress,
    )  # fmt: skip
    return result


def _unscored_variants(run_dir: Path, target: str, variants: list[str], subjects: list[Subject]) -> list[str]:
    """The variants some of the run's models have no test-split score for on any other target of the run."""
    run = RunDir(run_dir)
    keys = {s.content_key for s in subjects}
    scored: dict[str, set] = {}
    for name in run.profiled_targets():
        if name == target:
            continue
        fix = f"score its variants again with 'prunebench profile {run_dir} --score' for {name}"
        frame = run.profile_dir(name).read_scores(fix, columns=["model_key", "variant", "status"])
        if frame is not None:
            for row in frame[frame["status"] == "ok"].itertuples():
                scored.setdefault(row.variant, set()).add(row.model_key)
    return [v for v in variants if not keys <= scored.get(v, set())]


@dataclass
class _Run:
    store: ProfileStore
    target: Target
    threads: int
    timing: TimingConfig
    calibrate: bool
    on_row: Callable[[ProfileRow], None] | None
    environment: dict

    def _row(self, subject: Subject, spec, batch: int, seq_len: int, mode: str, status: str, **values) -> ProfileRow:
        kind = self.target.device.type if self.target.device is not None else self.target.profile.kind
        device_kind = "cuda" if kind in ("cuda", "gpu") else "cpu"
        measured = mode == "measured"
        return ProfileRow(
            model=subject.label,
            model_source=subject.source,
            model_key=subject.content_key,
            pruned=subject.pruned,
            variant=spec.name,
            quantization=spec.quantization,
            compute_dtype=str(compute_dtype(spec, device_kind)).removeprefix("torch."),
            target=self.target.profile.name,
            device=self.target.device_name if measured else self.target.profile.description,
            device_index=self.target.device_index if measured else None,
            batch_size=batch,
            seq_len=seq_len,
            threads=self.threads,
            mode=mode,
            estimated=not measured,
            status=status,
            parameters=subject.parameters,
            relative_parameters=subject.relative_parameters,
            encoder_parameters=subject.encoder_parameters,
            encoder_fraction=subject.encoder_fraction,
            macs_per_sequence=subject.macs(seq_len),
            timestamp=datetime.now(UTC).isoformat(timespec="microseconds"),  # also the table's row order
            **self.environment,
            **values,
        )

    def _emit(self, row: ProfileRow) -> None:
        self.store.append(row)
        if self.on_row is not None:
            self.on_row(row)

    def _pending(self, subject: Subject, spec, points, mode: str) -> list[tuple[int, int]]:
        return [(b, s) for b, s in points if not self.store.has(self._row(subject, spec, b, s, mode, "ok"))]

    # -- estimates ---------------------------------------------------------------------------

    def _estimate_row(self, subject: Subject, spec, batch: int, seq_len: int, measured_s: float | None = None):
        try:
            result = estimate(subject, spec, self.target.profile, batch, seq_len, self.threads)
        except NotEstimable as reason:
            return self._row(subject, spec, batch, seq_len, "estimated", "skipped", reason=str(reason))
        error = None if measured_s is None else result.latency_s / measured_s - 1.0
        values = result.row_fields(batch)
        return self._row(subject, spec, batch, seq_len, "estimated", "ok", **values, estimate_error=error)

    def estimate_all(self, subject: Subject, spec, points) -> None:
        for batch, seq_len in self._pending(subject, spec, points, "estimated"):
            self._emit(self._estimate_row(subject, spec, batch, seq_len))

    # -- measurements ------------------------------------------------------------------------

    def measure_all(self, subject: Subject, spec, points) -> None:
        pending = self._pending(subject, spec, points, "measured")
        if self.calibrate:  # a point measured earlier without its estimate still gets one
            pending = sorted(set(pending) | set(self._pending(subject, spec, points, "estimated")))
        if not pending:
            return
        device = self.target.device
        try:
            built, oom = build_or_out_of_memory(subject.loaded, spec, device)
        except VariantSkipped as reason:
            self._record_unmeasurable(subject, spec, pending, "skipped", str(reason))
            return
        if built is None:
            self._record_unmeasurable(subject, spec, pending, "oom", f"out of memory loading the variant: {oom}")
            return
        try:
            for batch, seq_len in pending:
                self._measure_one(subject, spec, built, batch, seq_len)
        finally:
            del built
            release_memory(device)

    def _record_unmeasurable(self, subject: Subject, spec, pending, status: str, reason: str) -> None:
        """Rows for points of a variant that could not be built here (and, calibrating, their estimates)."""
        for batch, seq_len in pending:
            row = self._row(subject, spec, batch, seq_len, "measured", status, reason=reason)
            if not self.store.has(row):
                self._emit(row)
            estimated = self._estimate_row(subject, spec, batch, seq_len) if self.calibrate else None
            if estimated is not None and not self.store.has(estimated):
                self._emit(estimated)

    def _measure_one(self, subject: Subject, spec, built, batch: int, seq_len: int) -> None:
        base = {"weight_bytes": built.weight_bytes, "notes": "; ".join(built.notes) or None}
        base |= int8_fallback_fields(spec, built.plan)
        measured = self._row(subject, spec, batch, seq_len, "measured", "ok", **base)
        if self.store.has(measured):  # only its estimate was missing
            if self.calibrate:
                previous = self.store.table()
                match = previous[previous["mode"].eq("measured") & _same_point(previous, measured)]
                latency = match["latency_s"].iloc[0] if len(match) else None
                ok = latency is not None and not pd.isna(latency)
                self._emit(self._estimate_row(subject, spec, batch, seq_len, float(latency) if ok else None))
            return
        try:
            result = measure_point(built, subject.loaded, batch, seq_len, self.timing)
        except PointOutOfMemory as reason:
            self._emit(replace(measured, status="oom", reason=str(reason)))
            return
        except (RuntimeError, AssertionError, NotImplementedError, ValueError) as error:
            text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            self._emit(replace(measured, status="error", reason=f"{type(error).__name__}: {text}"))
            return
        row = replace(measured, **result.row_fields(batch))
        self._emit(row)
        if self.calibrate:
            self._emit(self._estimate_row(subject, spec, batch, seq_len, row.latency_s))


def _same_point(frame: pd.DataFrame, row: ProfileRow) -> pd.Series:
    return (
        frame["model"].eq(row.model)
        & frame["model_key"].eq(row.model_key)
        & frame["variant"].eq(row.variant)
        & frame["target"].eq(row.target)
        & frame["batch_size"].eq(row.batch_size)
        & frame["seq_len"].eq(row.seq_len)
        & frame["threads"].eq(row.threads)
    )


def calibration_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per target and variant: how far estimated latencies were from measured ones."""
    rows = frame[frame["mode"].eq("estimated") & frame["estimate_error"].notna()]
    if rows.empty:
        columns = ["target", "variant", "points", "median_error", "median_abs_error", "max_abs_error"]
        return pd.DataFrame(columns=columns)
    grouped = rows.groupby(["target", "variant"], sort=True)["estimate_error"]
    return grouped.agg(
        points="count",
        median_error="median",
        median_abs_error=lambda e: e.abs().median(),
        max_abs_error=lambda e: e.abs().max(),
    ).reset_index()


def write_calibration(frame: pd.DataFrame, path: Path) -> dict:
    summary = calibration_summary(frame)
    record = {
        "what": f"estimate_error = estimated / measured latency - 1, per measured point ({ProfileDir.TABLE} rows)",
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "unix_time": time.time(),
        "by_variant": summary.to_dict(orient="records"),
    }
    write_atomic(path, lambda staging: staging.write_text(json.dumps(record, indent=2)))
    return record
