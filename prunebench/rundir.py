"""The run directory: the one place every command reads from and writes to.

Layout (files appear as the stages that write them run):

    RUN/
      run.json               what the run is: kind, version, resolved training config, task, status
      environment.json       package versions, device, thread count, git revision
      checkpoint/            the super-network (a Hugging Face model directory) + trainer state
      training_log.parquet   validation metrics of largest/middle/smallest sub-networks per epoch
      search/NAME/           one search (prunebench.search.runner): search.json, log.jsonl, candidates,
                             pareto (with test-split metrics), hypervolume
      search/NAME/models/    the Pareto set extracted as pruned models (prunebench.search.export):
                             p00/, p01/, ... by increasing params, index.parquet (+ .csv)
      profile/TARGET/        `prunebench profile RUN` (TARGET = cpu or a GPU profile name):
                             profile.parquet (+ .csv, profile.parts/) latency and memory of every
                             model variant; scores.parquet (+ .csv, scores.parts/) their test-split
                             metric and error (prunebench.profiling.scoring)

Writes are atomic (write to a sibling, then rename), so a kill -9 at any moment
leaves either the old or the new version, never half a file. Staging names carry the
process id and a random part, so two processes never share one.

One writer per run: every command that writes holds an advisory lock (``fcntl.flock`` on a
hidden ``.prunebench-lock*`` file) for its whole duration, ``writer_lock``. Training and the
pipeline hold the run's lock exclusively; a stage (one search, one profile target) holds the
run's lock shared and its own exclusively, so two searches of different names may run side
by side but never two of one name. The kernel drops a dead process's lock, so a stale lock
file is taken over; the last holder removes the file. Readers (``compare``, ``report``) take
no lock.

Every read of a run file goes through ``read_json`` / ``read_table``: a damaged file is one
``PrunebenchError`` naming the file, what is wrong and the way out, never a traceback.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from prunebench.config import TrainConfig
from prunebench.errors import PrunebenchError

RUN_FILE = "run.json"
ENVIRONMENT_FILE = "environment.json"
CHECKPOINT_DIR = "checkpoint"
TRAINING_LOG = "training_log.parquet"
RUN_KIND = "prunebench-run"
RUN_VERSION = 1
# Marks a folder prunebench made, so that --overwrite may empty it; hidden, like the lock files.
OUTPUT_MARKER = ".prunebench-output"
LOCK_PREFIX = ".prunebench-lock"


def staging_path(path: Path) -> Path:
    """A hidden sibling of ``path`` that no other process uses (pid + random part)."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}-{secrets.token_hex(3)}")


def write_json_atomic(path: Path, data: dict) -> None:
    staging = staging_path(path)
    staging.write_text(json.dumps(data, indent=2, default=str))
    os.replace(staging, path)


def write_parquet_atomic(path: Path, frame: pd.DataFrame) -> None:
    staging = staging_path(path)
    frame.to_parquet(staging, index=False)
    os.replace(staging, path)


def write_csv_atomic(path: Path, frame: pd.DataFrame) -> None:
    staging = staging_path(path)
    frame.to_csv(staging, index=False)
    os.replace(staging, path)


# --- validated reads -----------------------------------------------------------------------------


def read_json(path: Path, fix: str) -> dict:
    """A JSON object from ``path``; a damaged file is one error naming it, what is wrong, and ``fix``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PrunebenchError(f"{path} is damaged (not valid JSON: {error.msg} at char {error.pos}); {fix}") from None
    except UnicodeDecodeError:
        raise PrunebenchError(f"{path} is damaged (not UTF-8 text); {fix}") from None
    except OSError as error:
        raise PrunebenchError(f"cannot read {path} ({error.strerror or error}); {fix}") from None
    if not isinstance(data, dict):
        raise PrunebenchError(f"{path} is damaged (holds a JSON {type(data).__name__}, not an object); {fix}")
    return data


def read_table(path: Path, fix: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A Parquet table from ``path``; a damaged file or missing columns is one error naming it and ``fix``."""
    import pyarrow  # pandas reads Parquet through it; its errors are what a damaged file raises

    path = Path(path)
    try:
        frame = pd.read_parquet(path)
    except (pyarrow.ArrowException, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PrunebenchError(f"{path} is damaged (not a readable Parquet table: {reason}); {fix}") from None
    missing = [c for c in columns or [] if c not in frame.columns]
    if missing:
        raise PrunebenchError(f"{path} is damaged (missing column(s) {', '.join(missing)}); {fix}")
    return frame


# --- output folders: what --overwrite may remove ---------------------------------------------------


def is_prunebench_output(folder: Path) -> bool:
    """True when prunebench made ``folder``: it carries the marker, or is a run, pruned model or report."""
    folder = Path(folder)
    if (folder / OUTPUT_MARKER).is_file() or (folder / "prunebench.json").is_file():
        return True
    try:
        return json.loads((folder / RUN_FILE).read_text()).get("kind") == RUN_KIND
    except (OSError, ValueError, AttributeError):
        return False


def _entries(folder: Path) -> list[Path]:
    """What ``folder`` holds, less prunebench's own hidden lock files."""
    return [p for p in folder.iterdir() if not p.name.startswith(LOCK_PREFIX)]


def is_empty_dir(folder: Path) -> bool:
    return Path(folder).is_dir() and not _entries(Path(folder))


def check_replaceable(folder: Path, option: str = "--out") -> None:
    """Refuse to empty ``folder`` unless it is empty or prunebench made it (nothing is removed here)."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise PrunebenchError(f"{option} {folder} is a file, not a folder; give a folder path")
    if not is_empty_dir(folder) and not is_prunebench_output(folder):
        raise PrunebenchError(
            f"{option} {folder} holds files that prunebench did not write, so --overwrite will not delete them; "
            "give a new or empty folder"
        )


def clear_output(folder: Path, option: str = "--out") -> None:
    """Empty a folder prunebench made (keeping its lock files), after ``check_replaceable``."""
    folder = Path(folder)
    check_replaceable(folder, option)
    for entry in _entries(folder) if folder.is_dir() else []:
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def mark_output(folder: Path) -> None:
    """Create ``folder`` (if needed) as a prunebench output, so a later --overwrite may replace it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / OUTPUT_MARKER
    if not marker.exists():
        marker.write_text("made by prunebench; --overwrite may empty this folder\n")


# --- one writer per run --------------------------------------------------------------------------

_held: dict[Path, list] = {}  # lock file -> [file descriptor, exclusive, depth]: re-entrant within a process


def _lock_file(folder: Path, stage: str | None) -> Path:
    return folder / (f"{LOCK_PREFIX}-{stage}" if stage else LOCK_PREFIX)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} ({info['command']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _open_locked(path: Path, exclusive: bool) -> int | None:
    """A descriptor of ``path`` holding the flock, or None when another process holds it.

    The file is removed when its last holder lets go, so after locking we check that the path still
    names the file we locked; if it was removed meanwhile, we lock the new one instead.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _acquire(path: Path, exclusive: bool, what: str) -> None:
    if path in _held:
        held = _held[path]
        if exclusive and not held[1]:
            raise RuntimeError(f"{path}: an exclusive lock asked for under a shared one of the same process")
        held[2] += 1
        return
    fd = _open_locked(path, exclusive)
    if fd is None:
        raise PrunebenchError(
            f"{what} is being written by {_holder(path)}; wait for it to finish, or stop it and run this again"
        )
    if exclusive or os.fstat(fd).st_size == 0:
        info = {"pid": os.getpid(), "command": " ".join(["prunebench", *sys.argv[1:]])[:200],
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
    _held[path] = [fd, exclusive, 1]


def _release(path: Path) -> None:
    held = _held[path]
    held[2] -= 1
    if held[2] == 0:
        del _held[path]
        fd = held[0]
        try:  # the last holder removes the file, so a finished command leaves no lock file behind
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)
        except BlockingIOError:
            pass  # others still hold it shared
        os.close(fd)  # closing drops the flock


@contextmanager
def writer_lock(folder: Path, stage: str | None = None) -> Iterator[None]:
    """Hold ``folder`` for writing: exclusively, or with ``stage`` shared plus the stage's own lock exclusively.

    ``folder`` is created if needed, and removed again when the lock files are all it holds at the end,
    so a refused command leaves nothing behind.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise PrunebenchError(f"{folder} is a file, not a folder; give a folder path")
    top_created = next((p for p in [folder, *folder.parents][::-1] if not p.exists()), None)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PrunebenchError(f"cannot create {folder} ({error.strerror or error}); give a writable path") from None
    here = folder.resolve()  # one key per folder however it is spelt: flock conflicts across descriptors
    locks = [(_lock_file(here, None), stage is None)] + ([(_lock_file(here, stage), True)] if stage else [])
    taken: list[Path] = []
    try:
        for path, exclusive in locks:
            _acquire(path, exclusive, str(folder) + (f" ({stage})" if stage else ""))
            taken.append(path)
        yield
    finally:
        for path in reversed(taken):
            _release(path)
        # a command that was refused, or wrote nothing, leaves no folder behind
        if top_created is not None and is_empty_dir(folder) and not any(p.parent == here for p in _held):
            shutil.rmtree(top_created, ignore_errors=True)


def stage_lock(out_dir: Path) -> contextlib.AbstractContextManager[None]:
    """The writer's lock for ``out_dir``: a run's stage folder (RUN/search/NAME, RUN/profile/TARGET) locks as
    that stage of the run (``writer_lock(RUN, "search-NAME")``); any other folder locks itself."""
    out_dir = Path(out_dir)
    run = out_dir.parent.parent
    if (run / RUN_FILE).is_file():
        return writer_lock(run, stage=f"{out_dir.parent.name}-{out_dir.name}")
    return writer_lock(out_dir)


def replace_dir_atomic(staging: Path, target: Path) -> None:
    """Move a fully written ``staging`` directory to ``target``, replacing any old one."""
    retired = target.with_name(f".{target.name}.old")
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def recover_dir(target: Path) -> Path:
    """After a kill between the two renames of ``replace_dir_atomic``, the old version is the valid one."""
    retired = target.with_name(f".{target.name}.old")
    if not target.exists() and retired.is_dir():
        retired.rename(target)
    return target


def read_run(run_dir: Path) -> dict:
    """The run's ``run.json``; a clear error when RUN is not a run directory."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise PrunebenchError(f"{run_dir} is not a prunebench run (no {RUN_FILE}); create one with 'prunebench train'")
    fix = "repair it, or start the run again with 'prunebench train --overwrite'"
    data = read_json(path, fix)
    if data.get("kind") != RUN_KIND:
        raise PrunebenchError(f"{path} is not a prunebench run file; point to a directory made by 'prunebench train'")
    if "train" in data:  # every reader of the run gets a config whose fields have their types
        if not isinstance(data["train"], dict):
            raise PrunebenchError(f"{path} is damaged ('train' is not an object); {fix}")
        try:
            TrainConfig.from_dict(data["train"])
        except PrunebenchError as error:
            raise PrunebenchError(f"{path} is damaged ({error}); {fix}") from None
    task = data.get("task", {})  # a standard-NAS folder has none
    if not isinstance(task, dict) or not all(
        isinstance(task[key], str) for key in ("name", "kind", "metric") if key in task
    ):
        raise PrunebenchError(f"{path} is damaged ('task' or its name, kind or metric is not text); {fix}")
    return data
