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

Measured points of one (batch, sequence length) are timed in interleaved rounds together with the
reference, the un-pruned model in fp32 (A B C A B C ..., not A A A B B B), so that load from elsewhere
hits them alike; each row carries its ``latency_ratio`` to the reference with a bootstrap interval
(``store.RATIO_DEFINITION``). Memory is measured with one variant resident at a time. Points still
unstable at the end of a sweep are timed again, up to ``TimingConfig.remeasure_attempts`` times
(``remeasure_unstable=True`` does only that). The machine's load before and after each call is kept in
the folder (``hardware.machine``).

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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console

from prunebench.config import ProfileConfig, TimingConfig
from prunebench.environment import console as make_console
from prunebench.environment import cpu_model, git_revision, time_left
from prunebench.errors import PrunebenchError
from prunebench.hardware.corrections import Corrections
from prunebench.hardware.corrections import correct as correct_latency
from prunebench.hardware.corrections import from_pairs as correction_pairs
from prunebench.hardware.corrections import load as load_corrections
from prunebench.hardware.corrections import save as save_corrections
from prunebench.hardware.estimate import NotEstimable, estimate
from prunebench.hardware.machine import (
    append_machine_record,
    machine_identity,
    machine_state,
    read_machine_record,
    record_warning,
    session_record,
)
from prunebench.hardware.measure import (
    Measurement,
    PointOutOfMemory,
    build_or_out_of_memory,
    collecting_only_new_objects,
    latency_fields,
    measure_point,
    release_memory,
    time_interleaved,
)
from prunebench.hardware.profiles import Target, choose_target, resolve_target
from prunebench.hardware.store import ProfileRow, ProfileStore
from prunebench.hardware.subject import Subject, subject_from_loaded
from prunebench.hardware.timing import InterleavedTimes
from prunebench.hardware.variants import (
    VARIANTS,
    BuiltVariant,
    VariantSkipped,
    VariantSpec,
    compute_dtype,
    get_variant,
    int8_fallback_fields,
)
from prunebench.models import LoadedModel
from prunebench.profiling.scoring import score_variants
from prunebench.profiling.subjects import resolve_subjects, run_subjects
from prunebench.rundir import ProfileDir, RunDir, profile_request, remove_stale_temporaries, stage_lock, write_atomic

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
    remeasure_unstable: bool = False,
    show_progress: bool = False,
) -> pd.DataFrame:
    """Profile ``models`` on ``target`` into ``out_dir`` (see the module docstring); returns the whole table.

    ``remeasure_unstable``: measure no new point, only time the unstable ones again (``_Run.remeasure_unstable``).
    ``show_progress``: a line per measured point, with how many are left and the time left at the pace so far.
    """
    if threads < 1 or threads > (os.cpu_count() or 1) * 4:
        raise PrunebenchError(f"--threads {threads} is not sensible here ({os.cpu_count()} cores); use 1")
    specs = [get_variant(name) for name in (variants or list(VARIANTS))]
    where = resolve_target(target, estimate_only, calibrate)
    subjects = to_subjects(models)
    check_grid(subjects, batch_sizes, seq_lens)
    # one writer of the folder (for a run, RUN/profile/TARGET as a stage of it); cheap collections within
    with stage_lock(out_dir), collecting_only_new_objects():
        store = ProfileStore(out_dir)
        store.reconcile({s.label: (s.content_key, s.source) for s in subjects})
        console = make_console(highlight=False, markup=False, soft_wrap=True) if show_progress else None
        run = _Run(store, where, threads, timing, calibrate, on_row, _environment_fields(where), console)
        run.corrections = None if calibrate else load_corrections(where.profile)
        points = [(b, s) for b in batch_sizes for s in seq_lens]
        if where.mode == "estimated":
            for subject in subjects:
                for spec in specs:
                    run.estimate_all(subject, spec, points)
        else:
            before = machine_state()  # what else ran: the warning a report shows for a profile taken under load
            with torch_threads(threads):
                if not remeasure_unstable:
                    run.measure_grid(subjects, specs, points)
                still = run.remeasure_unstable(subjects, specs, explicit=remeasure_unstable)
            if run.rows_written:  # a call that timed nothing (all done) leaves no "profiled under load" session
                what = "re-measured unstable points" if remeasure_unstable else "profiled"
                identity = machine_identity(str(where.device))
                record = session_record(before, machine_state(), threads, what, identity) | {"unstable_points": still}
                append_machine_record(ProfileDir(out_dir).machine, record)
        frame = store.consolidate()
        if calibrate:
            write_calibration(frame, ProfileDir(out_dir).calibration, where)
        return frame


@dataclass
class ProfileResult:
    out_dir: Path  # the profile folder (``rundir.ProfileDir``)
    table: pd.DataFrame  # the whole profile table
    scores: pd.DataFrame | None = None  # a run's variants scored on its test split
    calibration: pd.DataFrame | None = None  # with ``calibrate``: how far the estimates were off
    notes: list[str] = field(default_factory=list)  # what the call decided for the user: estimates, defaults


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
    console = make_console(quiet=not show_progress, highlight=False, markup=False, soft_wrap=True)
    request, problems = profile_request(source, model, out, config.target, config.score)
    if problems:
        raise PrunebenchError("; ".join(problems))
    run_dir, out = request.run_dir, request.out
    for folder in (out, ProfileDir(out).parts):
        remove_stale_temporaries(folder)  # half-written files of a killed profile
    # an absent GPU is refused (--measure, --calibrate) or estimated, said in one line, before loading models
    where, notice = choose_target(config.target, config.estimate, config.measure, config.calibrate)
    if where.mode == "estimated" and not config.estimate:
        config = replace(config, estimate=True)
    notes = [notice] if notice else []
    notes += [f"default {what}" for what in request.defaults]
    for line in notes:
        console.print(line)
    if run_dir is not None:
        subjects = run_subjects(run_dir)
        if len(subjects) == 1:
            console.print(
                f"note: {run_dir} has no exported Pareto models yet, so only its fine-tuned model ('full') is "
                f"profiled; add them with 'prunebench extract-pareto {run_dir}' and run this again (finished "
                "points are kept)"
            )
    else:
        subjects = resolve_subjects(model=request.model, model_dir=request.source)
    table = profile_models(
        subjects, out, target=config.target, variants=config.variants, batch_sizes=config.batch_sizes,
        seq_lens=config.seq_lens, estimate_only=config.estimate, calibrate=config.calibrate, threads=config.threads,
        timing=config.timing, on_row=on_row, remeasure_unstable=config.remeasure_unstable, show_progress=show_progress,
    )  # fmt: skip
    calibration = calibration_summary(table) if config.calibrate else None
    result = ProfileResult(out, table, calibration=calibration, notes=notes)
    if not config.estimate:
        _print_measurement_warnings(console, out, run_dir or out)
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


def measurement_warnings(out_dir: Path) -> list[str]:
    """What makes a profile folder's latencies doubtful: the latest call's load warning, unstable points."""
    sessions = read_machine_record(ProfileDir(out_dir).machine)
    warning = record_warning(sessions[-1]) if sessions else None
    found = [warning] if warning else []
    unstable = sessions[-1].get("unstable_points") if sessions else None
    if unstable:
        found.append(f"{unstable} measured point(s) are still unstable after re-measuring (stable = false)")
    return found


def _print_measurement_warnings(console: Console, out_dir: Path, source: Path) -> None:
    warnings = measurement_warnings(out_dir)
    if warnings:
        advice = f"re-run 'prunebench profile {source} --remeasure-unstable' on a quieter machine"
        console.print(f"warning: {'; '.join(warnings)}; {advice}")


@dataclass
class _Pace:
    """Measured points written in this call, of those pending when it began: the "3/40, 1:20 left" of a line."""

    total: int
    done: int = 0
    started: float = field(default_factory=time.perf_counter)

    def tick(self) -> str:
        self.done += 1
        left = time_left(time.perf_counter() - self.started, self.done, self.total)
        return f" · {self.done}/{self.total}, {left} left" if left else f" · {self.done}/{self.total}"


@dataclass
class _Run:
    store: ProfileStore
    target: Target
    threads: int
    timing: TimingConfig
    calibrate: bool
    on_row: Callable[[ProfileRow], None] | None
    environment: dict
    console: Console | None = None  # progress lines, one per measured point
    pace: _Pace = field(default_factory=lambda: _Pace(0))
    corrections: Corrections | None = None  # measured corrections of the target's estimates (not when calibrating)
    rows_written: int = 0  # by this call: none, and the machine's state says nothing about the table

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
            vocab_kept=subject.loaded.vocab.kept if subject.loaded.vocab is not None else None,
            timestamp=datetime.now(UTC).isoformat(timespec="microseconds"),  # also the table's row order
            **self.environment,
            **values,
        )

    def _emit(self, row: ProfileRow) -> None:
        self.store.append(row)
        self.rows_written += 1
        if self.on_row is not None:
            self.on_row(row)
        if self.console is not None and row.mode == "measured":
            shown = f"{row.latency_s * 1e3:.2f} ms (p50)" if row.status == "ok" else f"{row.status}: {row.reason}"
            how_far = " · re-measured (was unstable)" if row.remeasured else self.pace.tick()
            where = f"{row.model} {row.variant} batch {row.batch_size} seq {row.seq_len}"
            self.console.print(f"  {where}: {shown}{how_far}", style="dim")

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
        if self.calibrate:  # the raw estimate, against the measurement: what a correction is made from
            return self._row(subject, spec, batch, seq_len, "estimated", "ok", **values, estimate_error=error)
        corrected = correct_latency(self.corrections, self.target.profile, spec.name, result.bound, result.latency_s)
        values |= {"est_error_note": corrected.note, "est_error_label": corrected.label}
        if corrected.factor is not None:
            latency = corrected.latency_s
            values |= {"latency_mean_s": latency, "latency_p50_s": latency, "throughput_seq_per_s": batch / latency,
                       "est_correction": corrected.factor}  # fmt: skip
        return self._row(subject, spec, batch, seq_len, "estimated", "ok", **values, estimate_error=error)

    def estimate_all(self, subject: Subject, spec, points) -> None:
        for batch, seq_len in self._pending(subject, spec, points, "estimated"):
            self._emit(self._estimate_row(subject, spec, batch, seq_len))

    # -- measurements ------------------------------------------------------------------------

    def measure_grid(self, subjects: Sequence[Subject], specs: Sequence[VariantSpec], points) -> None:
        """Measure every pending point, interleaved per (batch, sequence length) with the reference.

        Members (model, variant) are taken in groups of at most ``timing.group_max`` (the reference in every
        group, so every row gets its ratio). Per group: memory with one variant resident at a time
        (``measure_point``), then latency with the whole group resident, in interleaved rounds per point
        (``time_interleaved``). A group's rows are written when its point is timed: killed in between, the
        group is measured again, and finished points are kept.
        """
        reference = _reference_member(subjects)
        members = [(subject, spec) for subject in subjects for spec in specs]
        if self.calibrate:  # a point measured earlier without its estimate still gets one
            self._estimates_of_measured(members, points)
        pending = {_member_id(m): self._pending(m[0], m[1], points, "measured") for m in members}
        self.pace = _Pace(sum(len(found) for found in pending.values()))
        reference_id = _member_id(reference) if reference is not None else None
        others = [m for m in members if pending[_member_id(m)] and _member_id(m) != reference_id]
        reference_pending = pending.get(reference_id, [])
        if not others and not reference_pending:
            return
        size = self.timing.group_max - (reference is not None)
        chunks = [others[i : i + size] for i in range(0, len(others), size)] or [[]]
        for number, chunk in enumerate(chunks):
            work = {_member_id(m): pending[_member_id(m)] for m in chunk}
            if reference is not None:
                work[reference_id] = reference_pending if number == 0 else []
            self._measure_group(([reference] if reference is not None else []) + chunk, work, reference)

    def _estimates_of_measured(self, members, points) -> None:
        """Calibrating: the estimate of a point measured earlier (without ``--calibrate``), against its latency."""
        previous = None
        for subject, spec in members:
            for batch, seq_len in points:
                measured = self._row(subject, spec, batch, seq_len, "measured", "ok")
                estimated = self._row(subject, spec, batch, seq_len, "estimated", "ok")
                if not self.store.has(measured) or self.store.has(estimated):
                    continue
                previous = self.store.table() if previous is None else previous
                match = previous[previous["mode"].eq("measured") & _same_point(previous, measured)]
                latency = match["latency_s"].iloc[0] if len(match) else None
                ok = latency is not None and not pd.isna(latency)
                self._emit(self._estimate_row(subject, spec, batch, seq_len, float(latency) if ok else None))

    def _measure_group(self, group, work: dict, reference) -> None:
        device = self.target.device
        memory: dict[tuple, Measurement] = {}
        base: dict[tuple, dict] = {}
        for member in group:
            subject, spec = member
            todo = work[_member_id(member)]
            if not todo:
                continue
            built = self._build(member, todo)
            if built is None:
                continue
            base[_member_id(member)] = {"weight_bytes": built.weight_bytes, "notes": "; ".join(built.notes) or None}
            base[_member_id(member)] |= int8_fallback_fields(spec, built.plan)
            try:
                for batch, seq_len in todo:
                    found = self._memory_point(member, built, batch, seq_len)
                    if found is not None:
                        memory[(_member_id(member), (batch, seq_len))] = found
            finally:
                del built
                release_memory(device)
        if not memory:
            return
        timed = [m for m in group if m is reference or any(key[0] == _member_id(m) for key in memory)]
        resident = self._build_all(timed, memory)
        try:
            for point in sorted({key[1] for key in memory}):
                at_point = [m for m in timed if _member_id(m) in resident]
                at_point = [m for m in at_point if m is reference or (_member_id(m), point) in memory]
                if any((_member_id(m), point) in memory for m in at_point):
                    self._time_point(at_point, resident, point, reference, memory, base)
        finally:
            resident.clear()
            release_memory(device)

    def _build(self, member, todo) -> BuiltVariant | None:
        """The member's variant built on the device; None with its rows recorded when it cannot be."""
        subject, spec = member
        try:
            built, oom = build_or_out_of_memory(subject.loaded, spec, self.target.device)
        except VariantSkipped as reason:
            self._record_unmeasurable(subject, spec, todo, "skipped", str(reason))
            return None
        if built is None:
            self._record_unmeasurable(subject, spec, todo, "oom", f"out of memory loading the variant: {oom}")
        return built

    def _build_all(self, members, memory: dict) -> dict:
        """Every member built for interleaved timing; one that runs out of memory now gets ``oom`` rows."""
        resident = {}
        for member in members:
            todo = sorted(key[1] for key in memory if key[0] == _member_id(member))
            built = self._build(member, todo)
            if built is None:
                for point in todo:
                    memory.pop((_member_id(member), point))
                continue
            resident[_member_id(member)] = built
        return resident

    def _memory_point(self, member, built, batch: int, seq_len: int) -> Measurement | None:
        """The point's memory with only this variant resident; None with an oom or error row when it fails."""
        subject, spec = member
        measured = self._row(subject, spec, batch, seq_len, "measured", "ok")
        try:
            return measure_point(built, subject.loaded, batch, seq_len, MEMORY_TIMING)
        except PointOutOfMemory as reason:
            self._emit(replace(measured, status="oom", reason=str(reason)))
        except (RuntimeError, AssertionError, NotImplementedError, ValueError) as error:
            self._emit(replace(measured, status="error", reason=_error_text(error)))
        return None

    def _time_point(self, members, resident: dict, point, reference, memory: dict, base: dict) -> None:
        batch, seq_len = point
        owed = [m for m in members if (_member_id(m), point) in memory]
        try:
            times = self._interleave(members, resident, point, reference)
        except PointOutOfMemory as reason:
            for subject, spec in owed:
                self._emit(self._row(subject, spec, batch, seq_len, "measured", "oom", reason=str(reason)))
            return
        except (RuntimeError, AssertionError, NotImplementedError, ValueError) as error:
            for subject, spec in owed:
                self._emit(self._row(subject, spec, batch, seq_len, "measured", "error", reason=_error_text(error)))
            return
        for index, member in enumerate(members):
            if (_member_id(member), point) not in memory:
                continue
            subject, spec = member
            values = memory[(_member_id(member), point)].row_fields(batch) | base[_member_id(member)]
            values |= latency_fields(times.stats(index), batch) | _ratio_fields(times, index, members, reference)
            row = self._row(subject, spec, batch, seq_len, "measured", "ok", **values)
            self._emit(row)
            if self.calibrate:
                self._emit(self._estimate_row(subject, spec, batch, seq_len, row.latency_s))

    def _interleave(self, members, resident: dict, point, reference) -> InterleavedTimes:
        pairs = [(resident[_member_id(m)], m[0].loaded) for m in members]
        ids = [_member_id(m) for m in members]
        index = ids.index(_member_id(reference)) if reference is not None and _member_id(reference) in ids else None
        return time_interleaved(pairs, point[0], point[1], self.timing, reference=index)

    def _record_unmeasurable(self, subject: Subject, spec, pending, status: str, reason: str) -> None:
        """Rows for points of a variant that could not be built here (and, calibrating, their estimates)."""
        for batch, seq_len in pending:
            row = self._row(subject, spec, batch, seq_len, "measured", status, reason=reason)
            if not self.store.has(row):
                self._emit(row)
            estimated = self._estimate_row(subject, spec, batch, seq_len) if self.calibrate else None
            if estimated is not None and not self.store.has(estimated):
                self._emit(estimated)

    # -- unstable points, again ---------------------------------------------------------------------

    def remeasure_unstable(self, subjects: Sequence[Subject], specs: Sequence[VariantSpec], explicit: bool) -> int:
        """Time the unstable measured points again with the reference, up to ``timing.remeasure_attempts`` times.

        At the end of a sweep a point is re-measured until it has been ``remeasure_attempts`` times in all;
        asked for (``explicit``, ``--remeasure-unstable``), every unstable point gets that many attempts more.
        Memory is kept; latency, stability and ratio are replaced, and ``remeasured`` counts the attempts.
        Returns how many points are still unstable.
        """
        members = {(s.label, spec.name): (s, spec) for s in subjects for spec in specs}
        reference = _reference_member(subjects)
        attempts = self.timing.remeasure_attempts
        # how many attempts each point may have had in all when this call ends
        limit = {
            row.key(): (row.remeasured or 0) + attempts if explicit else attempts
            for row in self._unstable_rows(members)
        }
        for _ in range(attempts):
            due = [
                row for row in self._unstable_rows(members) if (row.remeasured or 0) < limit.get(row.key(), attempts)
            ]
            if not due:
                break
            size = self.timing.group_max - (reference is not None)
            for point in sorted({(row.batch_size, row.seq_len) for row in due}):
                rows = [row for row in due if (row.batch_size, row.seq_len) == point]
                for start in range(0, len(rows), size):
                    self._remeasure_rows(rows[start : start + size], members, reference, point)
        return len(self._unstable_rows(members))

    def _unstable_rows(self, members: dict) -> list[ProfileRow]:
        table = self.store.table()
        flagged = table[table["mode"].eq("measured") & table["status"].eq("ok") & table["stable"].eq(False)]
        rows = [ProfileRow.from_record(record) for record in flagged.to_dict("records")]
        here = (self.target.profile.name, self.target.device_name, self.threads)
        return [
            row
            for row in rows
            if (row.model, row.variant) in members
            and row.model_key == members[(row.model, row.variant)][0].content_key
            and (row.target, row.device, row.threads) == here
        ]

    def _remeasure_rows(self, rows: list[ProfileRow], members: dict, reference, point) -> None:
        group = [members[(row.model, row.variant)] for row in rows]
        ids = [_member_id(m) for m in group]
        timed = ([reference] if reference is not None and _member_id(reference) not in ids else []) + group
        resident = {}
        try:
            for member in timed:
                built, _ = build_or_out_of_memory(member[0].loaded, member[1], self.target.device)
                if built is None:
                    return  # the rows stay as they are, still flagged unstable
                resident[_member_id(member)] = built
            times = self._interleave(timed, resident, point, reference)
        except (PointOutOfMemory, VariantSkipped, RuntimeError, AssertionError, NotImplementedError, ValueError):
            return  # as above: nothing better was measured, the earlier rows stand
        finally:
            resident.clear()
            release_memory(self.target.device)
        for row, member in zip(rows, group, strict=True):
            index = [_member_id(m) for m in timed].index(_member_id(member))
            values = latency_fields(times.stats(index), row.batch_size) | _ratio_fields(times, index, timed, reference)
            stamp = datetime.now(UTC).isoformat(timespec="microseconds")
            again = replace(row, **values, remeasured=(row.remeasured or 0) + 1, timestamp=stamp)
            self._emit(again)
            if self.calibrate:  # the estimate's error is against the latency now measured
                self._emit(self._estimate_row(member[0], member[1], row.batch_size, row.seq_len, again.latency_s))


MEMORY_TIMING = TimingConfig(warmup=1, min_repeats=2, max_repeats=3, round_size=1, max_seconds=1.0)
REFERENCE_LABEL = "full"  # the label profiling gives the un-pruned fine-tuned model
REFERENCE_VARIANT = "fp32"


def _reference_member(subjects: Sequence[Subject]) -> tuple[Subject, VariantSpec] | None:
    """What every ratio is to: the un-pruned model (labelled 'full' where there is one) in fp32; None without one."""
    unpruned = [s for s in subjects if not s.pruned]
    named = [s for s in unpruned if s.label == REFERENCE_LABEL]
    found = (named or unpruned or [None])[0]
    return (found, get_variant(REFERENCE_VARIANT)) if found is not None else None


def _member_id(member: tuple[Subject, VariantSpec]) -> tuple[str, str]:
    return member[0].label, member[1].name


def _ratio_fields(times: InterleavedTimes, index: int, members, reference) -> dict:
    """The ratio of member ``index`` to the reference timed in the same rounds (None fields without a reference)."""
    ids = [_member_id(m) for m in members]
    clock = {"cpu_p50_s": times.cpu_median(index), "waited_share": times.waited_share(index)}
    if reference is None or _member_id(reference) not in ids:
        return clock | {"interleaved_with": len(members)}
    found = times.ratio(index, ids.index(_member_id(reference)))
    return clock | {
        "latency_ratio": found.ratio,
        "latency_ratio_low": found.low,
        "latency_ratio_high": found.high,
        "ratio_reference": f"{reference[0].label} {reference[1].name}",
        "ratio_clock": times.ratio_clock,
        "interleaved_with": len(members),
    }


def _error_text(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"{type(error).__name__}: {text}"


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


def write_calibration(frame: pd.DataFrame, path: Path, target: Target | None = None) -> dict:
    """``calibration.json``: the estimate error per variant and, measured on ``target``, the corrections later
    estimates for it use (``hardware.corrections``), also kept as the target's record beside the profiles."""
    summary = calibration_summary(frame)
    record = {
        "what": f"estimate_error = estimated / measured latency - 1, per measured point ({ProfileDir.TABLE} rows)",
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "unix_time": time.time(),
        "by_variant": summary.to_dict(orient="records"),
    }
    if target is not None and target.mode == "measured":
        rows = frame[frame["mode"].eq("estimated") & frame["estimate_error"].notna() & frame["est_bound"].notna()]
        rows = rows[rows["target"].eq(target.profile.name)]
        pairs = list(zip(rows["variant"], rows["est_bound"], rows["estimate_error"].astype(float), strict=True))
        if pairs:
            corrections = correction_pairs(target.profile.name, target.device_name, pairs)
            record["corrections"] = corrections.to_dict()
            saved = save_corrections(corrections) if target.profile.kind == "gpu" else None
            record["corrections_file"] = str(saved) if saved is not None else None
    write_atomic(path, lambda staging: staging.write_text(json.dumps(record, indent=2)))
    return record
