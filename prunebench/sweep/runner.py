"""Run a grid's cells on Ray: each cell ``run_pipeline`` into its own run directory, as one Ray task.

    grid (checked) ─► SWEEP/sweep.json ─► cells not finished ─► Ray tasks (CPUs, a GPU of a type) ─► record ─► report

A cell whose run directory already holds a finished pipeline of the same settings
(``pipeline.pipeline_finished``) is skipped without starting anything; when every cell is finished,
Ray is not even started. Any other cell runs ``run_pipeline``, which resumes what the run holds.
A cell that fails (an error in the pipeline, a crashed worker, needs the cluster cannot meet) is
recorded in ``sweep.json`` with its error and the rest go on; ``SweepResult.failed`` counts them and
the command exits non-zero. A cell's output goes to ``SWEEP/logs/NAME.log``.

``sweep.json`` (written atomically after every change; this module is its one writer) holds the grid's
path, preset and axes, each cell's name, axis values, status (waiting, running, done, failed),
error, seconds and log, and one entry per session. One sweep at a time writes a sweep folder
(``writer_lock``); its cells' runs take their own locks as ``prunebench run`` does.
"""

from __future__ import annotations

import os
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prunebench.environment import clock
from prunebench.environment import console as make_console
from prunebench.errors import PrunebenchError
from prunebench.pipeline import pipeline_finished, run_pipeline
from prunebench.report.sweep import write_sweep_report
from prunebench.rundir import (
    SWEEP_KIND,
    SWEEP_VERSION,
    SweepDir,
    is_empty_dir,
    write_json_atomic,
    writer_lock,
)
from prunebench.sweep.cluster import connected, unmet_needs
from prunebench.sweep.grid import Cell, Grid

PLAIN_EVERY_S = 60.0  # piped output: a progress line at least this often (and at every finished cell)
WAIT_S = 1.0  # how long one wait for a finished cell lasts before the progress is redrawn


@dataclass
class SweepResult:
    out: Path
    cells: list[dict]  # the record's cells, in grid order
    ran: list[str] = field(default_factory=list)  # cells started in this session
    skipped: list[str] = field(default_factory=list)  # cells already finished, not started
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: Path | None = None  # the sweep's report.html


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    kind = "" if isinstance(error, PrunebenchError) else f"{type(error).__name__}: "
    return (kind + text)[:1000] or type(error).__name__


def run_cell(config, run_dir: str, log: str) -> dict:
    """One cell, in a Ray worker: the pipeline into ``run_dir``, its output appended to ``log``. Never raises: an
    error is returned as the cell's outcome, its traceback left in the log."""
    started = time.perf_counter()
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as stream, redirect_stdout(stream), redirect_stderr(stream):
        print(f"--- {_now()} pid {os.getpid()} on {os.uname().nodename}: prunebench pipeline into {run_dir}")
        try:
            run_pipeline(config, Path(run_dir), show_progress=True)
        except Exception as error:  # the cell fails, the sweep goes on
            traceback.print_exc()
            return {"status": "failed", "error": _one_line(error), "seconds": time.perf_counter() - started}
    return {"status": "done", "error": None, "seconds": time.perf_counter() - started}


def check_out(out: Path) -> None:
    """A sweep writes into a new or empty folder, or one of its own sweeps; never into a run or someone's files."""
    sweep = SweepDir(out)
    if out.exists() and not out.is_dir():
        raise PrunebenchError(f"--out {out} is a file; give a folder for the sweep")
    if sweep.is_sweep():
        sweep.read()  # damaged: one error now, before anything runs
    elif out.is_dir() and not is_empty_dir(out):
        raise PrunebenchError(
            f"--out {out} holds files and is not a sweep folder (no {sweep.record.name}); give a new or empty folder"
        )


def _record(grid: Grid, sweep: SweepDir, workers: int, address: str | None) -> dict:
    """The sweep's record for this grid: cells of an earlier session keep their status, error and seconds."""
    before = sweep.read() if sweep.is_sweep() else {}
    earlier = {c["name"]: c for c in before.get("cells", [])}
    sessions = before.get("sessions", [])
    cells = []
    for cell in grid.cells:
        kept = earlier.get(cell.name, {})
        cells.append({
            "name": cell.name, "axes": cell.axes, "status": kept.get("status", "waiting"), "error": kept.get("error"),
            "seconds": kept.get("seconds"), "finished": kept.get("finished"),
            "run_dir": str(sweep.cell(cell.name).path.relative_to(sweep.path)),
            "log": str(sweep.log(cell.name).relative_to(sweep.path)),
            "resources": {"cpus": cell.cpus, "gpus": cell.gpus, "accelerator_type": cell.accelerator_type},
        })  # fmt: skip
    return {
        "kind": SWEEP_KIND, "version": SWEEP_VERSION, "grid": str(grid.path), "preset": grid.preset,
        "axes": {axis: list(values) for axis, values in grid.axes.items()}, "cells": cells,
        "sessions": [*sessions, {"started": _now(), "address": address or "local", "workers": workers}],
    }  # fmt: skip


class _Progress:
    """Cells done, running and failed with an ETA: a rich bar on a terminal, a plain line now and then in a log."""

    def __init__(self, total: int, workers: int, show: bool):
        self.console = make_console(quiet=not show, highlight=False, markup=False)
        self.total, self.workers, self.started = total, workers, time.perf_counter()
        self.counts = {"done": 0, "running": 0, "failed": 0, "skipped": 0}
        self.durations: list[float] = []
        self.running_since: dict[str, float] = {}  # cell -> when it started
        self.live = None
        self.last_line = 0.0
        if show and self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            columns = (TextColumn("cells"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"))
            self.live = Progress(*columns, console=self.console, transient=False)
            self.task = self.live.add_task("", total=total)
            self.live.start()

    def line(self) -> str:
        c = self.counts
        waiting = self.total - c["done"] - c["failed"] - c["running"] - c["skipped"]
        elapsed = time.perf_counter() - self.started
        text = f"{c['done']} done, {c['running']} running, {c['failed']} failed, {waiting} waiting"
        text += (f", {c['skipped']} finished before" if c["skipped"] else "") + f" · {clock(elapsed)} elapsed"
        if self.durations and (waiting or c["running"]):
            mean = sum(self.durations) / len(self.durations)
            now = time.perf_counter()
            spent = sum(min(now - since, mean) for since in self.running_since.values())  # of the running cells
            eta = max(0.0, mean * (waiting + c["running"]) - spent) / max(1, min(self.workers, waiting + c["running"]))
            text += f" · ETA {clock(eta)}"
        return text

    def update(self, force: bool = False) -> None:
        finished = self.counts["done"] + self.counts["failed"] + self.counts["skipped"]
        if self.live is not None:
            self.live.update(self.task, completed=finished, description=self.line())
        elif force or time.perf_counter() - self.last_line >= PLAIN_EVERY_S:
            self.console.print(f"cells {finished}/{self.total}: {self.line()}")
            self.last_line = time.perf_counter()

    def note(self, text: str) -> None:
        self.console.print(text)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def _run_on_ray(pending: list[Cell], sweep: SweepDir, record: dict, address: str | None, workers: int,
                progress: _Progress, result: SweepResult) -> None:  # fmt: skip
    entries = {c["name"]: c for c in record["cells"]}
    num_cpus = workers * max(cell.cpus for cell in pending)

    def finish(cell: Cell, outcome: dict, was_running: bool = True) -> None:
        entry = entries[cell.name]
        entry.update(status=outcome["status"], error=outcome.get("error"), finished=_now())
        entry["seconds"] = round(float(outcome.get("seconds") or 0.0), 1)
        progress.counts["running"] -= was_running
        progress.running_since.pop(cell.name, None)
        progress.counts[outcome["status"]] += 1
        if outcome["status"] == "failed":
            result.failed.append(cell.name)
            progress.note(f"failed: {cell.name}: {entry['error']} (log: {sweep.log(cell.name)})")
        else:
            progress.durations.append(entry["seconds"])
        write_json_atomic(sweep.record, record)
        progress.update(force=True)

    with connected(address, num_cpus) as cluster:
        import ray

        remote = ray.remote(run_cell)
        queue: list[Cell] = []
        for cell in pending:
            unmet = unmet_needs(cluster.resources, cell.cpus, cell.gpus, cell.accelerator_type)
            if unmet is None:
                queue.append(cell)
            else:
                finish(cell, {"status": "failed", "error": f"not run: {unmet}", "seconds": 0.0}, was_running=False)
        in_flight: dict = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < workers:
                    cell = queue.pop(0)
                    needs = {"num_cpus": cell.cpus, "num_gpus": cell.gpus, "max_retries": 0}
                    if cell.accelerator_type:
                        needs["accelerator_type"] = cell.accelerator_type
                    ref = remote.options(**needs).remote(  # absolute paths: a worker has a working directory of its own
                        cell.config, str(sweep.cell(cell.name).path.resolve()), str(sweep.log(cell.name).resolve())
                    )
                    in_flight[ref] = cell
                    entries[cell.name].update(status="running", error=None)
                    result.ran.append(cell.name)
                    progress.counts["running"] += 1
                    progress.running_since[cell.name] = time.perf_counter()
                    write_json_atomic(sweep.record, record)
                    progress.update(force=True)
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=WAIT_S)
                for ref in ready:
                    cell = in_flight.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as error:  # the worker died (memory, a crash), or was cancelled
                        outcome = {"status": "failed", "error": _one_line(error).split(" Traceback")[0]}
                    finish(cell, outcome)
                progress.update()
        finally:  # interrupted: the running cells go back to waiting (their runs resume next time)
            for ref, cell in in_flight.items():
                ray.cancel(ref, force=True)
                entries[cell.name].update(status="waiting")
            if in_flight:
                write_json_atomic(sweep.record, record)


def run_sweep(
    grid: Grid, out: Path, *, address: str | None = None, workers: int | None = None, show_progress: bool = True
) -> SweepResult:
    """Run every cell of ``grid`` not yet finished into ``out`` on Ray (see the module docstring), then write the
    sweep's report into ``out/report``. ``workers``: cells at once (default: a local Ray's CPUs over a cell's,
    or every cell on a cluster)."""
    out = Path(out)
    sweep = SweepDir(out)
    if workers is not None and workers < 1:
        raise PrunebenchError(f"--workers must be at least 1, got {workers}")
    check_out(out)
    started = time.perf_counter()
    with writer_lock(out):  # one sweep writes this folder; each cell's run takes its own lock as well
        pending = [c for c in grid.cells if not pipeline_finished(c.config, sweep.cell(c.name).path)]
        if workers is None:
            widest = max((c.cpus for c in pending), default=1.0)
            workers = max(1, int((os.cpu_count() or 1) // widest)) if address is None else max(1, len(pending))
        record = _record(grid, sweep, workers, address)
        result = SweepResult(out, record["cells"])
        progress = _Progress(len(grid.cells), workers, show_progress)
        pending_names = {c.name for c in pending}
        progress.durations.extend(earlier_durations(record, pending_names))
        for entry in record["cells"]:
            if entry["name"] not in pending_names:
                entry.update(status="done", error=None)
                result.skipped.append(entry["name"])
                progress.counts["skipped"] += 1
            elif entry["status"] in ("running", "done"):  # a session that was killed, or a changed grid setting
                entry["status"] = "waiting"
        sweep.grid.write_text(grid.text, encoding="utf-8")
        write_json_atomic(sweep.record, record)
        progress.note(
            f"sweep {out}: {len(grid.cells)} cells, {len(result.skipped)} finished before, {len(pending)} to run"
            + (f" on {address or 'a local Ray'} with {workers} at a time" if pending else "")
        )
        try:
            if pending:
                _run_on_ray(pending, sweep, record, address, workers, progress, result)
        finally:
            progress.close()
            session = record["sessions"][-1]
            result.seconds = time.perf_counter() - started
            session.update(seconds=round(result.seconds, 1), ran=len(result.ran), skipped=len(result.skipped),
                           failed=len(result.failed))  # fmt: skip
            write_json_atomic(sweep.record, record)
        result.report = write_sweep_report(out).html
    return result


def earlier_durations(record: dict, pending: set[str]) -> list[float]:
    """Seconds of the cells earlier sessions finished: a resumed sweep's ETA from its first minute, not after its
    first cell of this session (about 20 minutes for the findings grid)."""
    return [float(c["seconds"]) for c in record["cells"] if c["name"] not in pending and (c.get("seconds") or 0) > 0]


def exit_code(result: SweepResult) -> int:
    """The command's exit status: 0 when every cell is done, 1 when any failed."""
    return 1 if result.failed else 0
