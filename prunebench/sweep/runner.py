"""Run a grid's cells on Ray: each cell ``run_pipeline`` into its own run directory, as one Ray task.

    grid (checked) ─► every cell placeable on some node? ─► SWEEP/sweep.json ─► Ray tasks ─► record ─► report

A cell whose run directory already holds a finished pipeline of the same settings
(``pipeline.pipeline_finished``) is skipped without starting anything; when every cell is finished,
Ray is not even started. Every other cell is handed to Ray at once, asking for its CPUs, its GPU (of a
type), its memory (``sweep.memory``) and, for a pinned profile stage, its resource: Ray's scheduler decides
where and when each runs. A cell no live node could ever hold refuses the whole sweep before anything runs
(unless an autoscaler may bring its node: then it waits ``autoscale_timeout`` seconds for one).

Failures are of two kinds:
- prunebench's own (bad data, a refused config, a package version that differs from the driver's): the
  cell is recorded ``failed`` with its error, not retried, and the others go on;
- the system's (its node died, its worker crashed or was killed for memory): Ray runs the cell again, up
  to ``retries`` times, and the new attempt resumes from the run directory (checkpoints, search logs,
  profile tables), so a retry costs little.

Each attempt appends a start and an end line to ``SWEEP/logs/NAME.attempts.jsonl`` from its node (node id,
host, CPU with its instruction-set flags, the carried environment, peak memory); the driver folds them into
``sweep.json``. An attempt with no end was lost: its end is when the driver saw its retry start, or the
task's final error. Only cells with an attempt open count as running; the others are queued.

``sweep.json`` (written atomically after every change; this module is its one writer) holds the grid's
path, preset and axes, each cell's name, axis values, status (waiting, running, done, failed), error,
seconds, log, resources, attempts and machine, and one entry per session. One sweep at a time writes a
sweep folder (``writer_lock``); its cells' runs take their own locks as ``prunebench run`` does.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import time
import traceback
from contextlib import ExitStack, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prunebench.environment import clock, cpu_model
from prunebench.environment import console as make_console
from prunebench.errors import PrunebenchError
from prunebench.pipeline import pipeline_finished, run_pipeline
from prunebench.report.sweep import write_sweep_report
from prunebench.rundir import (
    SWEEP_KIND,
    SWEEP_VERSION,
    SweepDir,
    describe_command,
    is_empty_dir,
    write_json_atomic,
    writer_lock,
)
from prunebench.sweep.cluster import (
    CARRIED,
    CARRIED_PREFIX,
    DRIVER_VERSIONS,
    Needs,
    check_options,
    connected,
    fits,
    live_nodes,
    unplaceable,
    version_mismatch,
    versions,
)
from prunebench.sweep.grid import Cell, Grid
from prunebench.sweep.memory import cell_memory

PLAIN_EVERY_S = 60.0  # piped output: a progress line at least this often (and at every finished cell)
WAIT_S = 1.0  # how long one wait for a finished cell lasts before the progress is redrawn
RETRIES = 2  # Ray runs a cell again this often after a system failure (node death, worker crash, OOM kill)
AUTOSCALE_TIMEOUT_S = 900.0  # with an autoscaler, how long a cell no node can hold waits for its node
NODES_EVERY_S = 10.0  # how often the driver looks at the live nodes while cells wait for one
# A retry finds the lost attempt's run lock held until the dead node's lock lease runs out (NFSv4: 90 s by
# default); it waits this long for it before failing.
LOCK_WAIT_S = 180.0
LOCK_POLL_S = 2.0
LOST = "lost: its node or worker died; Ray ran the cell again"
STOPPED = "stopped: the sweep was interrupted, or its driver died"
# The instruction-set features that decide int8 and bf16 speed on a CPU (issue 29 adds the CPU's identity to
# hardware/machine.py, which cpu_identity calls once merged; until then the sweep reads only these flags).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


@dataclass
class SweepResult:
    out: Path
    cells: list[dict]  # the record's cells, in grid order
    ran: list[str] = field(default_factory=list)  # cells started in this session
    skipped: list[str] = field(default_factory=list)  # cells already finished, not started
    failed: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)  # cells Ray ran again after a lost attempt, this session
    seconds: float = 0.0
    report: Path | None = None  # the sweep's report.html


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    kind = "" if isinstance(error, PrunebenchError) else f"{type(error).__name__}: "
    return (kind + text)[:1000] or type(error).__name__


def cpu_identity() -> dict:
    """The CPU's model name and the instruction-set flags that change int8/bf16 speed: from
    ``hardware.machine.cpu_identity`` (issue 29) where this checkout has it, else read minimally here."""
    from prunebench.hardware import machine

    described = getattr(machine, "cpu_identity", None)
    if described is not None:
        found = described()
        return {
            "model": found.get("model_name") or cpu_model(),
            "isa": list(found.get("speed_flags") or []),
            "vendor": found.get("vendor"),
            "family": found.get("family"),
            "model_number": found.get("model"),
        }
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return {"model": cpu_model(), "isa": [f for f in ISA_FLAGS if f in flags]}


def _where() -> dict:
    """Where this attempt runs: Ray's node id, the host, its address and CPU."""
    import ray

    return {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
            "ip": ray.util.get_node_ip_address(), "cpu": cpu_identity()}  # fmt: skip


def _append(path: Path, line: dict) -> None:
    """One JSON line, appended in one write (the cell's only writer at a time: Ray runs one attempt at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(line) + "\n")


def read_attempt_lines(path: Path) -> list[dict]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            found.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a node that died while writing it
    return found


def attempts(lines: list[dict], final_error: str | None = None, live: bool = False) -> list[dict]:
    """The attempts of a cell from its start and end lines: each with node, host, CPU, start, end and why it
    ended. An attempt without an end line was lost when a later attempt of its session and part started (its end:
    the retry's start, the latest it can have ended), ended with ``final_error`` when it is the last and the task
    failed, was stopped when its session is over (or not ``live``: no driver is waiting for it), or is still
    running (end None)."""
    starts = [dict(line) for line in lines if line.get("event") == "start"]
    ends = {(line.get("session"), line.get("part"), line.get("attempt")): line for line in lines
            if line.get("event") == "end"}  # fmt: skip
    sessions = max((a.get("session") or 0 for a in starts), default=0)
    out = []
    for i, start in enumerate(starts):
        key = (start.get("session"), start.get("part"), start.get("attempt"))
        attempt = {k: v for k, v in start.items() if k != "event"}
        end = ends.get(key)
        later = next((a for a in starts[i + 1 :] if (a.get("session"), a.get("part")) == key[:2]), None)
        if end is not None:
            attempt.update({k: v for k, v in end.items() if k not in ("event", "session", "part", "attempt")})
        elif later is not None:
            attempt.update(end=later.get("start"), why=LOST)  # at the latest: the node's clock, not the driver's
        elif final_error is not None:
            attempt.update(end=_now(), why=final_error)
        elif (start.get("session") or 0) < sessions or not live:
            attempt.update(end=None, why=STOPPED)
        else:
            attempt.update(end=None, why=None)  # running
        out.append(attempt)
    return out


def _take_run_lock(stack: ExitStack, run_dir: Path, wait: float) -> None:
    """The run's writer lock, waited for up to ``wait`` seconds (a lost attempt's lock outlives its node until
    the shared storage's lease runs out)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            stack.enter_context(writer_lock(run_dir))
            return
        except PrunebenchError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(LOCK_POLL_S)


def run_cell(config, run_dir: str, log: str, attempts_file: str, session: int, name: str,
             until: str | None = None, before: dict | None = None) -> dict:  # fmt: skip
    """One attempt at a cell, in a Ray worker: the pipeline into ``run_dir`` (up to the stage ``until``; after
    ``before``, the outcome of the cell's part that ran first), its output appended to ``log``, its start and end
    to ``attempts_file``. prunebench's own errors are the cell's outcome (failed, not retried), with the
    traceback in the log; anything that kills the process is Ray's to retry."""
    if before is not None and before.get("status") != "done":
        return before  # the stages before the pinned profile failed: nothing to profile
    started = time.perf_counter()
    path, part = Path(attempts_file), "first" if until else ("profile" if before is not None else None)
    earlier = [a for a in read_attempt_lines(path) if a.get("session") == session and a.get("part") == part]
    number = sum(a.get("event") == "start" for a in earlier) + 1
    retry = number > 1  # an earlier attempt of this session was lost: its lock may outlive its node
    where = _where()
    carried = {k: v for k, v in os.environ.items() if (k in CARRIED or k.startswith(CARRIED_PREFIX))
               and k != DRIVER_VERSIONS}  # fmt: skip
    key = {"session": session, "part": part, "attempt": number}
    _append(path, {"event": "start", **key, "start": _now(), **where, "pid": os.getpid(), "env": carried})
    describe_command(f"prunebench sweep, cell {name} (attempt {number}, Ray worker pid {os.getpid()})")
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as stream, redirect_stdout(stream), redirect_stderr(stream):
        print(f"--- {_now()} attempt {number} pid {os.getpid()} on {where['host']} (node {where['node'][:12]}): "
              f"prunebench pipeline into {run_dir}" + (f", until {until}" if until else ""))  # fmt: skip
        try:
            mismatch = version_mismatch(json.loads(os.environ.get(DRIVER_VERSIONS) or "{}") or versions(),
                                        versions(), where["host"])  # fmt: skip
            if mismatch:
                raise PrunebenchError(mismatch)
            with ExitStack() as stack:
                _take_run_lock(stack, Path(run_dir), LOCK_WAIT_S if retry else 0.0)
                run_pipeline(config, Path(run_dir), show_progress=True, until=until)
            outcome = {"status": "done", "error": None}
        except Exception as error:  # the cell fails, the sweep goes on; Ray does not retry it (retry_exceptions off)
            traceback.print_exc()
            outcome = {"status": "failed", "error": _one_line(error)}
    seconds = time.perf_counter() - started + float((before or {}).get("seconds") or 0.0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; the worker's, reused by Ray
    why = "done" if outcome["status"] == "done" else f"failed: {outcome['error']}"
    _append(path, {"event": "end", **key, "end": _now(), "why": why, "peak_rss_mib": round(peak)})
    return {**outcome, "seconds": seconds}


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


def cell_needs(cell: Cell) -> tuple[Needs, Needs | None]:
    """What a cell's task asks Ray for, and what its pinned profile task does (None: not pinned)."""
    memory = int(cell.memory_gib * 2**30) if cell.memory_gib else cell_memory(cell.config)
    main = Needs(cell.cpus, cell.gpus, cell.accelerator_type, memory)
    pinned = Needs(cell.cpus, 0.0, None, memory, cell.profile_on) if cell.profile_on else None
    return main, pinned


def _record(grid: Grid, sweep: SweepDir, session: dict, needs: dict) -> dict:
    """The sweep's record for this grid: cells of an earlier session keep their status, error, seconds, attempts."""
    before = sweep.read() if sweep.is_sweep() else {}
    earlier = {c["name"]: c for c in before.get("cells", [])}
    sessions = before.get("sessions", [])
    cells = []
    for cell in grid.cells:
        kept = earlier.get(cell.name, {})
        main, pinned = needs.get(cell.name, (None, None))
        cells.append({
            "name": cell.name, "axes": cell.axes, "status": kept.get("status", "waiting"), "error": kept.get("error"),
            "seconds": kept.get("seconds"), "finished": kept.get("finished"),
            "run_dir": str(sweep.cell(cell.name).path.relative_to(sweep.path)),
            "log": str(sweep.log(cell.name).relative_to(sweep.path)),
            "resources": {"cpus": cell.cpus, "gpus": cell.gpus, "accelerator_type": cell.accelerator_type,
                          "memory_gib": round(main.memory / 2**30, 2) if main else kept.get("resources", {}).get(
                              "memory_gib"), "profile_on": cell.profile_on},
            "attempts": kept.get("attempts", []), "machine": kept.get("machine"),
        })  # fmt: skip
    return {
        "kind": SWEEP_KIND, "version": SWEEP_VERSION, "grid": str(grid.path), "preset": grid.preset,
        "axes": {axis: list(values) for axis, values in grid.axes.items()}, "cells": cells,
        "sessions": [*sessions, session],
    }  # fmt: skip


class _Progress:
    """Cells done, running, queued and failed with an ETA: a rich bar on a terminal, a plain line now and then in a
    log. A cell runs once an attempt of it has started on a node; before that it is queued in Ray."""

    def __init__(self, total: int, slots: int, show: bool):
        self.console = make_console(quiet=not show, highlight=False, markup=False)
        self.total, self.slots, self.started = total, max(1, slots), time.perf_counter()
        self.counts = {"done": 0, "running": 0, "failed": 0, "skipped": 0}
        self.durations: list[float] = []
        self.running_since: dict[str, float] = {}  # cell -> when its current attempt started
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
        queued = self.total - c["done"] - c["failed"] - c["running"] - c["skipped"]
        elapsed = time.perf_counter() - self.started
        text = f"{c['done']} done, {c['running']} running, {queued} queued, {c['failed']} failed"
        text += (f", {c['skipped']} finished before" if c["skipped"] else "") + f" · {clock(elapsed)} elapsed"
        if self.durations and (queued or c["running"]):
            mean = sum(self.durations) / len(self.durations)
            now = time.perf_counter()
            # a running cell past the mean still has time left: never count it as finished (the ETA read 0:00
            # with 20 s to go)
            left = sum(max(mean - (now - since), 0.1 * mean) for since in self.running_since.values())
            work = left + mean * (queued + c["running"] - len(self.running_since))
            eta = work / min(self.slots, max(1, queued + c["running"]))
            text += f" · ETA {clock(max(eta, 1.0))}"
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


def _slots(nodes: list, widest: Needs) -> int:
    """How many of the widest cell the live nodes hold at once: the ETA's parallelism."""
    found = 0
    for node in nodes:
        r = node.resources
        counts = [r.get("CPU", 0) / widest.cpus if widest.cpus else 1e9]
        if widest.memory:
            counts.append(r.get("memory", 0) / widest.memory)
        found += int(min(counts))
    return max(1, found)


def _placement(pending: list[Cell], needs: dict, nodes: list, autoscale: bool) -> dict[str, str]:
    """The cells no live node can hold, with why. Without an autoscaler they refuse the sweep in one line."""
    unplaced = {}
    for cell in pending:
        for task in needs[cell.name]:
            why = task and unplaceable(task, nodes)
            if why:
                unplaced[cell.name] = why
                break
    if unplaced and not autoscale:
        first, why = next(iter(unplaced.items()))
        count = f"{len(unplaced)} of {len(pending)} cells" if len(unplaced) > 1 else "a cell"
        raise PrunebenchError(
            f"{count} can never run here: {first} {why}; ask for less in the grid's [resources], add a node "
            "that can hold it, or pass --autoscale if an autoscaler brings such nodes"
        )
    return unplaced


def _run_on_ray(pending: list[Cell], sweep: SweepDir, record: dict, retries: int, autoscale_timeout: float,
                progress: _Progress, result: SweepResult, needs: dict, unplaced: dict[str, str]) -> None:  # fmt: skip
    import ray

    entries = {c["name"]: c for c in record["cells"]}
    session = len(record["sessions"])
    remote = ray.remote(run_cell)
    noted: set[tuple] = set()  # lost attempts already told on the terminal
    last_lines: dict[str, str] = {}

    def fold(cell: Cell, final_error: str | None = None) -> list[dict]:
        """The cell's attempts of this session into its entry; earlier sessions' stay as recorded."""
        lines = [a for a in read_attempt_lines(sweep.attempts(cell.name)) if a.get("session") == session]
        found = attempts(lines, final_error, live=True)
        kept = [a for a in entries[cell.name]["attempts"] if a.get("session") != session]
        entries[cell.name]["attempts"] = kept + found
        return found

    def finish(cell: Cell, outcome: dict) -> None:
        entry = entries[cell.name]
        found = fold(cell, None if outcome["status"] == "done" or outcome.get("ran") else outcome.get("error"))
        lost = sum(a["why"] == LOST for a in found)
        if lost:
            result.retried.append(cell.name)
        last = next((a for a in reversed(found) if a.get("why") == "done"), None)
        if last is not None:  # the machine that ran its last stages: the profile's, for the report's grouping
            entry["machine"] = {k: last.get(k) for k in ("node", "host", "ip", "cpu")}
        entry.update(status=outcome["status"], error=outcome.get("error"), finished=_now())
        entry["seconds"] = round(float(outcome.get("seconds") or 0.0), 1)
        progress.counts["running"] -= cell.name in progress.running_since
        progress.running_since.pop(cell.name, None)
        progress.counts[outcome["status"]] += 1
        if outcome["status"] == "failed":
            result.failed.append(cell.name)
            progress.note(f"failed: {cell.name}: {entry['error']} (log: {sweep.log(cell.name)})")
        else:
            progress.durations.append(entry["seconds"])
        write_json_atomic(sweep.record, record)
        progress.update(force=True)

    def watch(cell: Cell) -> None:
        """Running or queued, from the cell's attempt lines; a lost attempt is noted once."""
        found = fold(cell)
        key = str([(a.get("part"), a.get("attempt"), a["why"]) for a in found])
        open_ = [a for a in found if a["why"] is None]
        for attempt in found:
            if attempt["why"] == LOST:
                marker = (cell.name, attempt.get("session"), attempt.get("part"), attempt.get("attempt"))
                if marker not in noted:
                    noted.add(marker)
                    progress.note(f"retrying: {cell.name}: attempt {attempt.get('attempt')} on {attempt.get('host')} "
                                  f"was lost (its node or worker died); Ray runs it again")  # fmt: skip
        running = bool(open_)
        if running and cell.name not in progress.running_since:
            progress.running_since[cell.name] = time.perf_counter()
            progress.counts["running"] += 1
        elif not running and cell.name in progress.running_since:
            progress.running_since.pop(cell.name)
            progress.counts["running"] -= 1
        status = "running" if running else "waiting"
        if entries[cell.name]["status"] != status or last_lines.get(cell.name) != key:
            entries[cell.name]["status"] = status
            last_lines[cell.name] = key
            write_json_atomic(sweep.record, record)

    in_flight: dict = {}
    firsts: dict = {}  # cell -> the task of its stages before a pinned profile (cancelled with the cell)
    submitted: dict[str, float] = {}

    def cancel(ref, cell: Cell) -> None:
        for task in (ref, firsts.get(cell.name)):
            if task is not None:
                ray.cancel(task, force=True)

    for cell in pending:
        main, pinned = needs[cell.name]
        args = (
            cell.config,
            str(sweep.cell(cell.name).path.resolve()),
            str(sweep.log(cell.name).resolve()),
            str(sweep.attempts(cell.name).resolve()),
            session,
            cell.name,
        )  # absolute: a worker has its own cwd
        # retry_exceptions off: Ray runs a cell again only when its process or node died, never for an error
        task = {"max_retries": retries, "retry_exceptions": False, "name": f"prunebench-cell {cell.name}"}
        ref = remote.options(**task, **main.options()).remote(*args, until="profile" if pinned else None)
        if pinned:  # Ray starts it once the first part is done, where the pinned resource is
            firsts[cell.name] = ref
            ref = remote.options(**task, **pinned.options()).remote(*args, before=ref)
        in_flight[ref] = cell
        submitted[cell.name] = time.monotonic()
        entries[cell.name].update(status="waiting", error=None)
        result.ran.append(cell.name)
    write_json_atomic(sweep.record, record)
    progress.update(force=True)
    nodes_seen = time.monotonic()
    try:
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=WAIT_S)
            for ref in ready:
                cell = in_flight.pop(ref)
                try:
                    outcome = ray.get(ref)
                    outcome["ran"] = True
                except ray.exceptions.RayError as error:  # retries used up, or cancelled: the system's failure
                    outcome = {"status": "failed", "error": _one_line(error).split(" Traceback")[0][:500]}
                finish(cell, outcome)
            for cell in in_flight.values():
                watch(cell)
            if unplaced and time.monotonic() - nodes_seen >= min(NODES_EVERY_S, autoscale_timeout / 4):
                nodes_seen = time.monotonic()
                nodes = live_nodes()
                for ref, cell in list(in_flight.items()):
                    if cell.name not in unplaced:
                        continue
                    if all(any(fits(node, task) for node in nodes) for task in needs[cell.name] if task):
                        del unplaced[cell.name]  # its node came up: Ray schedules it
                    elif time.monotonic() - submitted[cell.name] > autoscale_timeout:
                        cancel(ref, cell)
                        del in_flight[ref]
                        reason = (f"not run: no node could hold it within {autoscale_timeout:g} s of "
                                  f"waiting for the autoscaler: {unplaced.pop(cell.name)}")  # fmt: skip
                        finish(cell, {"status": "failed", "error": reason, "seconds": 0.0})
            progress.update()
    finally:  # interrupted: the running cells go back to waiting (their runs resume next time)
        for ref, cell in in_flight.items():
            cancel(ref, cell)
            entries[cell.name].update(status="waiting")
            for attempt in entries[cell.name]["attempts"]:
                if attempt.get("session") == session and attempt.get("why") is None:
                    attempt["why"] = STOPPED
        if in_flight:
            write_json_atomic(sweep.record, record)


def run_sweep(
    grid: Grid, out: Path, *, address: str | None = None, workers: int | None = None, retries: int = RETRIES,
    autoscale: bool = False, autoscale_timeout: float = AUTOSCALE_TIMEOUT_S, show_progress: bool = True,
) -> SweepResult:  # fmt: skip
    """Run every cell of ``grid`` not yet finished into ``out`` on Ray (see the module docstring), then write the
    sweep's report into ``out/report``. ``workers``: a local Ray's CPUs in cells of the widest cell (default:
    this machine's CPUs); on a cluster Ray's scheduler decides, so it is refused there. ``retries``: how often
    Ray runs a cell again after a system failure. ``autoscale``: cells no live node can hold wait up to
    ``autoscale_timeout`` seconds for one (also when an autoscaler is detected) instead of refusing the sweep."""
    out = Path(out)
    sweep = SweepDir(out)
    check_options(address, workers, retries, autoscale_timeout)
    check_out(out)
    started = time.perf_counter()
    with writer_lock(out):  # one sweep writes this folder; each cell's run takes its own lock as well
        result = _sweep(grid, sweep, address, workers, retries, autoscale, autoscale_timeout, show_progress, started)
        result.report = write_sweep_report(out).html
    return result


def _sweep(grid: Grid, sweep: SweepDir, address: str | None, workers: int | None, retries: int, autoscale: bool,
           autoscale_timeout: float, show_progress: bool, started: float) -> SweepResult:  # fmt: skip
    out = sweep.path
    with ExitStack() as stack:  # Ray, when there is anything to run; shut down (a local one) on leaving
        pending = [c for c in grid.cells if not pipeline_finished(c.config, sweep.cell(c.name).path)]
        needs = {c.name: cell_needs(c) for c in pending}
        session = {"started": _now(), "address": address or "local", "retries": retries}
        cluster, unplaced = None, {}
        if pending:
            widest = max(c.cpus for c in pending)
            cpus = workers * widest if workers is not None else max(os.cpu_count() or 1, widest)
            if address is None:
                session.update(cpus=cpus, workers=workers)
            cluster = stack.enter_context(connected(address, cpus, sweep.ray_log))
            unplaced = _placement(pending, needs, cluster.nodes, autoscale or cluster.autoscaler)
            session["nodes"] = [{"node": n.node_id, "host": n.host, "resources": n.describe()} for n in cluster.nodes]
        record = _record(grid, sweep, session, needs)
        result = SweepResult(out, record["cells"])
        widest_needs = max((needs[c.name][0] for c in pending), key=lambda n: (n.cpus, n.memory), default=None)
        slots = _slots(cluster.nodes, widest_needs) if cluster else 1
        progress = _Progress(len(grid.cells), slots, show_progress)
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
        where = "a local Ray" if address is None else address
        progress.note(
            f"sweep {out}: {len(grid.cells)} cells, {len(result.skipped)} finished before, {len(pending)} to run"
            + (f" on {where} ({len(cluster.nodes)} node{'s' * (len(cluster.nodes) != 1)}, {slots} cell"
               f"{'s' * (slots != 1)} at a time)" if pending else "")
            + (f"; {len(unplaced)} wait for a node from the autoscaler" if unplaced else "")
        )  # fmt: skip
        try:
            if pending:
                _run_on_ray(pending, sweep, record, retries, autoscale_timeout, progress, result, needs, unplaced)
        finally:
            progress.close()
            result.seconds = time.perf_counter() - started
            session.update(seconds=round(result.seconds, 1), ran=len(result.ran), skipped=len(result.skipped),
                           failed=len(result.failed), retried=len(result.retried))  # fmt: skip
            write_json_atomic(sweep.record, record)
    return result


def earlier_durations(record: dict, pending: set[str]) -> list[float]:
    """Seconds of the cells earlier sessions finished: a resumed sweep's ETA from its first minute, not after its
    first cell of this session (about 20 minutes for the findings grid)."""
    return [float(c["seconds"]) for c in record["cells"] if c["name"] not in pending and (c.get("seconds") or 0) > 0]


def exit_code(result: SweepResult) -> int:
    """The command's exit status: 0 when every cell is done, 1 when any failed."""
    return 1 if result.failed else 0
