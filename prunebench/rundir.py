"""The run directory: the one place every command reads from and writes to, and the one owner of its layout.

Layout (files appear as the stages that write them run); ``RunDir`` and the folder types below
name every path, so no other module spells a file name of it:

    RUN/
      run.json               what the run is: kind, version, resolved training config, task, status
      environment.json       package versions, device, thread count, git revision
      checkpoint/            the super-network (a Hugging Face model directory) + trainer state
                             (checkpoint.json, trainer_state.pt)
      training_log.parquet   validation metrics of largest/middle/smallest sub-networks per epoch
      order/                 --order-by-importance: the first fine-tune (checkpoint/, training_log.parquet) and
                             importance.parquet (+ .csv), each head's and unit's score and new position
      search/NAME/           one search (``SearchDir``): search.json, log.jsonl, test.jsonl, candidates,
                             pareto (with test-split metrics), hypervolume (.parquet + .csv)
      search/NAME/models/    the Pareto set extracted as pruned models (``ModelsDir``):
                             p00/, p01/, ... by increasing encoder size, index.parquet (+ .csv)
      profile/TARGET/        ``prunebench profile RUN`` (``ProfileDir``; TARGET = cpu or a GPU profile name):
                             profile.parquet (+ .csv, profile.parts/) latency and memory of every
                             model variant; scores.parquet (+ .csv, scores.parts/) their test-split
                             metric and error; calibration.json with --calibrate
      compare/TARGET/        ``prunebench compare`` (``CompareDir``): options, budgets (.parquet + .csv),
                             compare.json
      report/                ``prunebench run``'s report (``ReportDir``): report.html, report.md, figures/
      pipeline.json          ``prunebench run`` only: preset, each stage's status and seconds
      nas_settings.json, syne-tune/   a standard-NAS folder (``prunebench nas --out``) only

A sweep folder (``prunebench sweep --out``, ``SweepDir``) holds many runs:

    SWEEP/
      sweep.json             what the sweep is (grid, axes) and every cell's status, error and seconds
      grid.toml              the grid file the sweep last ran
      cells/NAME/            one ordinary run directory per cell
      logs/NAME.log          each cell's output
      report/                ``prunebench report SWEEP``: every cell in one table (report.html, summary.json)

A profile folder and a report folder may also stand alone (``prunebench profile --out``,
``prunebench report --out``): ``ProfileDir`` and ``ReportDir`` name their files wherever they are.

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
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prunebench.config import TrainConfig
from prunebench.errors import PrunebenchError

if TYPE_CHECKING:  # pandas loads where a table is read, so checking a run is quick (prunebench's fast start)
    import pandas as pd

# The layout's names: spelt here and nowhere else (the classes at the end give their paths).
RUN_FILE = "run.json"
ENVIRONMENT_FILE = "environment.json"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_META = "checkpoint.json"
CHECKPOINT_WEIGHTS = "model.safetensors"  # written by save_pretrained
TRAINER_STATE = "trainer_state.pt"
TRAINING_LOG = "training_log.parquet"
PIPELINE_FILE = "pipeline.json"
SEARCH_DIR = "search"
PROFILE_DIR = "profile"
ORDER_DIR = "order"  # an importance-ordered run's first fine-tune and its scores (supernet.ordering)
VOCAB_DIR = "vocab"  # the run's models with a trimmed vocabulary (extract.vocab.trim_run)
COMPARE_DIR = "compare"
REPORT_DIR = "report"
NAS_SETTINGS_FILE = "nas_settings.json"
SYNE_TUNE_DIR = "syne-tune"
SYNE_TUNE_LOG = "tuner.log"  # syne-tune's chatter, in its folder
RUN_KIND = "prunebench-run"
RUN_VERSION = 1
SEARCH_KIND = "prunebench-search"
SEARCH_VERSION = 1
SWEEP_FILE = "sweep.json"
SWEEP_GRID = "grid.toml"
SWEEP_CELLS = "cells"
SWEEP_LOGS = "logs"
SWEEP_KIND = "prunebench-sweep"
SWEEP_VERSION = 1
REPORT_KIND = "prunebench-report"
REPORT_VERSION = 1
# Marks a folder prunebench made, so that --overwrite may empty it; hidden, like the lock files.
OUTPUT_MARKER = ".prunebench-output"
# Where ``prunebench profile`` writes without --out and without a run: one folder per target, here.
DEFAULT_PROFILE_OUT = "prunebench-profile"
DEFAULT_PROFILE_MODEL = "minilm"  # the packaged all-MiniLM-L6-v2: what ``prunebench profile --gpu a10`` profiles
LOCK_PREFIX = ".prunebench-lock"
REPORT_MANIFEST = ".prunebench-report.json"
# A pruned model folder's own file (``models.pruned``): its format and version, spelt here for is_prunebench_output.
PRUNED_META = "prunebench.json"
PRUNED_FORMAT = "prunebench-pruned"
PRUNED_VERSION = 1
# An export folder's own files (``prunebench export``, the deploy room), beside a pruned model's.
EXPORT_FILE = "export.json"
EXPORT_README = "README.md"
EXPORT_ONNX_FILES = {"fp32": "model.onnx", "int8": "model-int8.onnx"}
EXPORT_MODELING_FILE = "modeling_pruned.py"


def staging_path(path: Path) -> Path:
    """A hidden sibling of ``path`` that no other process uses (pid + random part)."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}-{secrets.token_hex(3)}")


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(staging)`` to a hidden sibling, then rename it onto ``path``: readers see the old file or the new one."""
    staging = staging_path(Path(path))
    try:
        write(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


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
    import pandas as pd
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

OUTPUT_MARKER_FORMAT = "prunebench-output"
OUTPUT_MARKER_VERSION = 1
_OLD_MARKER_TEXT = "made by prunebench; --overwrite may empty this folder\n"  # what markers held before version 1
# Tokenizer files that ``save_pretrained`` writes into a model folder (pruned models, checkpoints).
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "chat_template.jinja",
)  # fmt: skip
# The top-level names prunebench writes into an output folder of any kind (a run, a standard-NAS folder, a report,
# a pruned model, a sweep). --overwrite removes these and prunebench's hidden temporaries, nothing else; any other
# entry makes it refuse. tests/test_nothing_lost.py checks that a whole tiny run writes no name outside them.
OWN_NAMES = frozenset(
    {
        OUTPUT_MARKER, RUN_FILE, ENVIRONMENT_FILE, CHECKPOINT_DIR, TRAINING_LOG, PIPELINE_FILE, SEARCH_DIR,
        PROFILE_DIR, VOCAB_DIR, ORDER_DIR, COMPARE_DIR, REPORT_DIR, NAS_SETTINGS_FILE, SYNE_TUNE_DIR,
        SWEEP_FILE, SWEEP_GRID, SWEEP_CELLS, SWEEP_LOGS,
        "report.html", "report.md", "summary.json", "figures", REPORT_MANIFEST,  # a report (ReportDir)
        PRUNED_META, "config.json", "model.safetensors", "trim.json", *TOKENIZER_FILES,  # a pruned model
        *EXPORT_ONNX_FILES.values(), EXPORT_FILE, EXPORT_README, EXPORT_MODELING_FILE,  # an export (deploy)
    }
)  # fmt: skip
_TEMPORARY = re.compile(r"^\..+\.(partial-\d+-[0-9a-f]+|old)$")  # names of staging_path and replace_dir_atomic


def _is_own_name(name: str) -> bool:
    return name in OWN_NAMES or name.startswith(LOCK_PREFIX) or bool(_TEMPORARY.match(name))


def _json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _marker_is_ours(marker: Path) -> bool:
    try:
        if marker.read_text(encoding="utf-8") == _OLD_MARKER_TEXT:
            return True
    except (OSError, UnicodeDecodeError):
        return False
    data = _json_object(marker)
    return data.get("format") == OUTPUT_MARKER_FORMAT and data.get("version") == OUTPUT_MARKER_VERSION


def is_prunebench_output(folder: Path) -> bool:
    """True when prunebench made ``folder``, judged by a file it wrote with a known format and version: the output
    marker, a run's run.json, a pruned model's prunebench.json, a report's manifest or a sweep's record. A file of
    one of those names with anything else in it does not count."""
    folder = Path(folder)
    known = {  # file: (key, value, version)
        RUN_FILE: ("kind", RUN_KIND, RUN_VERSION),
        PRUNED_META: ("format", PRUNED_FORMAT, PRUNED_VERSION),
        REPORT_MANIFEST: ("kind", REPORT_KIND, REPORT_VERSION),
        SWEEP_FILE: ("kind", SWEEP_KIND, SWEEP_VERSION),
    }
    if _marker_is_ours(folder / OUTPUT_MARKER):
        return True
    for name, (key, value, version) in known.items():
        data = _json_object(folder / name)
        if data.get(key) == value and data.get("version") == version:
            return True
    return False


def _entries(folder: Path) -> list[Path]:
    """What ``folder`` holds, less prunebench's own hidden lock files."""
    return [p for p in folder.iterdir() if not p.name.startswith(LOCK_PREFIX)]


def is_empty_dir(folder: Path) -> bool:
    return Path(folder).is_dir() and not _entries(Path(folder))


def foreign_entries(folder: Path) -> list[str]:
    """The names in ``folder`` that prunebench never writes there (sorted)."""
    return sorted(p.name for p in Path(folder).iterdir() if not _is_own_name(p.name))


def _listed(names: list[str], first: int = 3) -> str:
    shown = ", ".join(names[:first])
    return shown + (f" and {len(names) - first} more" if len(names) > first else "")


def check_replaceable(folder: Path, option: str = "--out", inputs: Sequence[Path] = ()) -> None:
    """Refuse to empty ``folder`` unless it is empty, or prunebench made it and it holds only prunebench's own
    entries; never through a symbolic link, and never while it holds one of the ``inputs`` being read. Nothing is
    removed here."""
    folder = Path(folder)
    if folder.is_symlink():
        raise PrunebenchError(
            f"{option} {folder} is a symbolic link to {folder.resolve()}; --overwrite does not empty a folder "
            f"through a link: give the folder's own path ({option} {folder.resolve()}) if it is the one to empty"
        )
    if not folder.exists():
        return
    if not folder.is_dir():
        raise PrunebenchError(f"{option} {folder} is a file, not a folder; give a folder path")
    if is_empty_dir(folder):
        return
    here = folder.resolve()
    inside = [Path(i) for i in inputs if here in Path(i).resolve().parents]
    if inside:
        raise PrunebenchError(
            f"{inside[0]} is an input of this command and lies inside {option} {folder}, which --overwrite would "
            "empty; move the file out of the folder first"
        )
    if not is_prunebench_output(folder):
        raise PrunebenchError(
            f"{option} {folder} holds files that prunebench did not write, so --overwrite will not delete them; "
            "give a new or empty folder"
        )
    foreign = foreign_entries(folder)
    if foreign:
        raise PrunebenchError(
            f"{option} {folder} is a prunebench output but also holds {_listed(foreign)}, which prunebench did "
            "not write; move them out, or give a new or empty folder"
        )


def check_output(folder: Path, overwrite: bool, option: str = "--out", inputs: Sequence[Path] = ()) -> None:
    """Refuse an output folder that is a file, or holds something, unless --overwrite may replace it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise PrunebenchError(f"{option} {folder} is a file; give a folder path")
    if folder.exists() and not is_empty_dir(folder):
        if not overwrite:
            raise PrunebenchError(
                f"{folder} already exists and is not empty; pick another {option} or pass --overwrite"
            )
        check_replaceable(folder, option, inputs)


def clear_output(folder: Path, option: str = "--out", inputs: Sequence[Path] = ()) -> None:
    """Empty a folder prunebench made (keeping its lock files), after ``check_replaceable``."""
    folder = Path(folder)
    check_replaceable(folder, option, inputs)
    for entry in _entries(folder) if folder.is_dir() else []:
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def mark_output(folder: Path) -> None:
    """Create ``folder`` (if needed) as a prunebench output, so a later --overwrite may replace it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / OUTPUT_MARKER
    if not _marker_is_ours(marker):
        marker.write_text(json.dumps({"format": OUTPUT_MARKER_FORMAT, "version": OUTPUT_MARKER_VERSION}) + "\n")


def remove_stale_staging(target: Path) -> None:
    """Remove the staging copies of ``target`` (``staging_path``) that a killed writer left: those whose process
    is gone. A live writer's are kept (one writer per run makes that rare, but a report folder has no lock)."""
    target = Path(target)
    _remove_stale(target.parent, f".{target.name}.partial-*")


def remove_stale_temporaries(folder: Path) -> None:
    """Every staging file or folder directly in ``folder`` whose writer is gone (see ``remove_stale_staging``)."""
    _remove_stale(Path(folder), ".*.partial-*")


def _remove_stale(folder: Path, pattern: str) -> None:
    if not folder.is_dir():
        return
    for stale in folder.glob(pattern):
        pid = stale.name.rsplit(".partial-", 1)[-1].split("-", 1)[0]
        if pid.isdigit() and (int(pid) == os.getpid() or _alive(int(pid))):
            continue
        _remove(stale)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- one writer per run --------------------------------------------------------------------------

_held: dict[Path, list] = {}  # lock file -> [file descriptor, exclusive, depth]: re-entrant within a process
_command: str | None = None  # what holds the locks, where this process's argv does not say (a Ray worker's)


def describe_command(text: str | None) -> None:
    """Name what this process runs in the locks it takes (None: its command line). A sweep's cell runs in a Ray
    worker, whose argv ('prunebench --node-ip-address=...') would tell a refused user nothing."""
    global _command
    _command = text


def _lock_file(folder: Path, stage: str | None) -> Path:
    return folder / (f"{LOCK_PREFIX}-{stage}" if stage else LOCK_PREFIX)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        host = f"on {info['host']}, " if info.get("host") else ""
        return f"pid {info['pid']} ({info['command']}, {host}since {info['since']})"
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
        command = _command or " ".join(["prunebench", *sys.argv[1:]])
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command[:200],
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


def real_path(path: Path) -> Path:
    """``path``, or the folder a symbolic link there points to: writers that swap a whole folder (a checkpoint, a
    report, a pruned model) write through a link into its target, and stage beside the target (same disk)."""
    path = Path(path)
    return path.resolve() if path.is_symlink() else path


def _remove(path: Path) -> None:
    """Remove a file, a link or a folder; nothing when absent."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def replace_dir_atomic(staging: Path, target: Path) -> None:
    """Move a fully written ``staging`` directory to ``target``, replacing any old one. ``target`` is the real
    folder (``real_path``), so a link is never replaced by a folder."""
    retired = target.with_name(f".{target.name}.old")
    _remove(retired)  # a stale one, of whatever kind (an old link too)
    if target.exists() or target.is_symlink():
        target.rename(retired)
    staging.rename(target)
    _remove(retired)


def recover_dir(target: Path) -> Path:
    """After a kill between the two renames of ``replace_dir_atomic``, the old version is the valid one."""
    retired = target.with_name(f".{target.name}.old")
    if not target.exists() and not target.is_symlink() and retired.is_dir():
        retired.rename(target)
    elif retired.is_symlink() or retired.is_file():
        _remove(retired)  # not a folder a writer retired: a leftover, never the valid version
    return target


def read_run(run_dir: Path) -> dict:
    """The run's ``run.json``; a clear error when RUN is not a run directory."""
    path = Path(run_dir) / RUN_FILE
    if not Path(run_dir).exists():
        raise PrunebenchError(
            f"{run_dir} is not a prunebench run (it does not exist); create one with 'prunebench train'"
        )
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


# --- the run's own data files (``--task files``, ``--data-dir``) -------------------------------------------

DATA_ROLES = {"train": "train_file", "test": "test_file"}  # option name -> TrainConfig field


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_files_record(train: dict) -> dict:
    """``run.json``'s ``data_files``: each data file of the training config ``train`` (a ``TrainConfig`` as a
    dict) by its option, with its resolved path and sha256, so later stages find it from any folder and know it
    is the same file."""
    record = {}
    for role, field in DATA_ROLES.items():
        if train.get(field):
            path = Path(train[field]).resolve()
            record[role] = {"path": str(path), "sha256": file_sha256(path)}
    return record


def check_data_files(run_dir: Path, run: dict | None = None) -> None:
    """Refuse, in one line naming the file and the way out, a run whose data file is gone or changed."""
    run = run if run is not None else read_run(run_dir)
    for role, entry in (run.get("data_files") or {}).items():
        path = Path(entry["path"])
        fix = f"point the run at its new place with 'prunebench relocate {run_dir} --{role} NEW_PATH'"
        if not path.is_file():
            raise PrunebenchError(f"the {role} file {path} of {run_dir} is gone (moved or deleted); {fix}")
        if file_sha256(path) != entry["sha256"]:
            raise PrunebenchError(
                f"the {role} file {path} of {run_dir} changed since the run was trained (its sha256 differs); "
                f"restore it, or {fix} with the original file"
            )


def relocate(run_dir: Path, new_paths: dict[str, Path]) -> dict[str, str]:
    """Point the run's data files (by option: train, test) at their new places, after checking each new file has
    the recorded sha256. Returns the new resolved paths."""
    run_dir = Path(run_dir)
    with writer_lock(run_dir):
        run = read_run(run_dir)
        record = run.get("data_files") or {}
        if not record:
            raise PrunebenchError(f"{run_dir} reads no data files of its own (not --task files); nothing to relocate")
        unknown = [role for role in new_paths if role not in record]
        if unknown:
            raise PrunebenchError(f"{run_dir} has no --{unknown[0]} file; it has --{' --'.join(record)}")
        moved = {}
        for role, new in new_paths.items():
            new = Path(new).resolve()
            if not new.is_file():
                raise PrunebenchError(f"--{role} {new} does not exist; give the file's new path")
            if file_sha256(new) != record[role]["sha256"]:
                raise PrunebenchError(
                    f"--{role} {new} is not the file the run was trained on (its sha256 differs from "
                    f"{record[role]['path']}'s); give the original file"
                )
            moved[role] = str(new)
        for role, new in moved.items():
            record[role]["path"] = new
            run["train"][DATA_ROLES[role]] = new
        write_json_atomic(run_dir / RUN_FILE, {**run, "data_files": record})
        return moved


# --- the layout as types --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileRequest:
    """What a ``prunebench profile`` call reads and where it writes, its defaults applied (no torch needed)."""

    run_dir: Path | None  # the run whose models are profiled, when the source is one
    source: Path | None  # a model directory, a pruned model or a folder of them (not a run)
    model: str | None  # the un-pruned model by name or folder
    out: Path  # the profile folder
    defaults: tuple[str, ...]  # what was taken by default, to say so: "model minilm", "folder prunebench-profile/a10"


def profile_request(source: Path | None, model: str | None, out: Path | None, target: str, score: bool | None):
    """``(ProfileRequest, problems)`` for ``prunebench profile [SOURCE] [--model M] [--out OUT]``.

    Nothing given: the packaged MiniLM (``DEFAULT_PROFILE_MODEL``) into ``prunebench-profile/TARGET`` here. A run
    brings its models and its folder (``RUN/profile/TARGET``). Every conflict is a problem (a list, empty when none).
    """
    run_dir = Path(source) if source is not None and RunDir(source).is_run() else None
    problems, defaults = [], []
    if run_dir is not None and model is not None:
        problems.append(f"{run_dir} is a run: it brings its fine-tuned model (profiled as 'full'); drop --model")
    if score and run_dir is None:
        problems.append("--score scores a run's models on its task's test split; give a run directory or drop --score")
    if source is None and model is None:
        model = DEFAULT_PROFILE_MODEL
        defaults.append(f"model {model} (the packaged all-MiniLM-L6-v2; --model or MODEL_DIR to choose)")
    if out is None:
        if run_dir is not None:
            out = RunDir(run_dir).profile_dir(target).path
        else:
            out = Path(DEFAULT_PROFILE_OUT) / target
            defaults.append(f"folder {out} (--out to choose)")
    plain_source = None if run_dir is not None or source is None else Path(source)
    return ProfileRequest(run_dir, plain_source, model, Path(out), tuple(defaults)), problems


def _subdirs(folder: Path) -> list[str]:
    """Names of the folders in ``folder``; hidden ones are the atomic writers' staging or retired copies."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def write_table_atomic(parquet: Path, frame: pd.DataFrame) -> None:
    """A table as Parquet and, beside it, as CSV for people (both atomic)."""
    write_parquet_atomic(parquet, frame)
    write_csv_atomic(parquet.with_suffix(".csv"), frame)


# The columns of a models folder's index (``prunebench.search.extract_pareto`` writes it).
EXPORT_INDEX_COLUMNS = [
    "label", "config", "encoder_fraction", "total_fraction", "encoder_parameters", "parameters", "macs", "error",
    "metric", "test_error", "test_metric", "path", "max_abs_diff",
]  # fmt: skip


class ModelsDir:
    """``RUN/search/NAME/models``: a search's Pareto set as pruned models ``p00/``, ... and their index."""

    INDEX = "index.parquet"

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def index(self) -> Path:
        return self.path / self.INDEX

    def member(self, label: str) -> Path:
        return self.path / label

    def read_index(self, fix: str) -> pd.DataFrame | None:
        """The index (validated), or None when the folder has none; ``fix`` says how to write it again."""
        recover_dir(self.path)
        return read_table(self.index, fix, columns=EXPORT_INDEX_COLUMNS) if self.index.is_file() else None

    def write_index(self, frame: pd.DataFrame) -> None:
        write_table_atomic(self.index, frame)


class SearchDir:
    """``RUN/search/NAME``: one search's record, log and tables (``prunebench.search.runner``)."""

    META = "search.json"
    LOG = "log.jsonl"
    TEST_LOG = "test.jsonl"
    MODELS = "models"
    TABLES = ("candidates", "pareto", "hypervolume")

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = self.path.name

    @property
    def meta(self) -> Path:
        return self.path / self.META

    @property
    def log(self) -> Path:
        return self.path / self.LOG

    @property
    def test_log(self) -> Path:
        return self.path / self.TEST_LOG

    def table(self, name: str) -> Path:
        """``candidates``, ``pareto`` or ``hypervolume`` as its Parquet file."""
        if name not in self.TABLES:
            raise ValueError(f"no search table {name!r}")
        return self.path / f"{name}.parquet"

    @property
    def candidates(self) -> Path:
        return self.table("candidates")

    @property
    def pareto(self) -> Path:
        return self.table("pareto")

    @property
    def hypervolume(self) -> Path:
        return self.table("hypervolume")

    @property
    def models(self) -> ModelsDir:
        return ModelsDir(self.path / self.MODELS)

    def read_meta(self, fix: str) -> dict:
        return read_json(self.meta, fix)

    def read_table(self, name: str, fix: str, columns: list[str] | None = None) -> pd.DataFrame:
        return read_table(self.table(name), fix, columns)

    def write_table(self, name: str, frame: pd.DataFrame) -> None:
        write_table_atomic(self.table(name), frame)


class ProfileDir:
    """A profile folder (``RUN/profile/TARGET`` or any ``prunebench profile --out``): the profile table, the
    variants' test-split scores and the calibration summary, each table with its resumable parts folder."""

    TABLE = "profile.parquet"
    TABLE_CSV = "profile.csv"  # beside the table, for people
    PARTS = "profile.parts"
    SCORES = "scores.parquet"
    SCORES_PARTS = "scores.parts"
    CALIBRATION = "calibration.json"
    MACHINE = "machine.json"  # the machine's state (load, busy processes) before and after each profile call

    def __init__(self, path: Path):
        self.path = Path(path)
        self.target = self.path.name

    @property
    def table(self) -> Path:
        return self.path / self.TABLE

    @property
    def parts(self) -> Path:
        return self.path / self.PARTS

    @property
    def scores(self) -> Path:
        return self.path / self.SCORES

    @property
    def scores_parts(self) -> Path:
        return self.path / self.SCORES_PARTS

    @property
    def calibration(self) -> Path:
        return self.path / self.CALIBRATION

    @property
    def machine(self) -> Path:
        return self.path / self.MACHINE

    def read_table(self, fix: str, columns: list[str] | None = None) -> pd.DataFrame:
        return read_table(self.table, fix, columns)

    def read_scores(self, fix: str, columns: list[str] | None = None) -> pd.DataFrame | None:
        return read_table(self.scores, fix, columns) if self.scores.is_file() else None


class CompareDir:
    """``RUN/compare/TARGET``: pruning vs quantization options, the budget answers and their summary."""

    TABLES = ("options", "budgets")
    SUMMARY = "compare.json"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.target = self.path.name

    def table(self, name: str) -> Path:
        if name not in self.TABLES:
            raise ValueError(f"no comparison table {name!r}")
        return self.path / f"{name}.parquet"

    @property
    def options(self) -> Path:
        return self.table("options")

    @property
    def budgets(self) -> Path:
        return self.table("budgets")

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    def write_table(self, name: str, frame: pd.DataFrame) -> None:
        write_table_atomic(self.table(name), frame)


class ReportDir:
    """A report folder (``RUN/report`` or any ``prunebench report --out``)."""

    HTML = "report.html"
    MARKDOWN = "report.md"
    SUMMARY = "summary.json"  # the answer for scripts and CI gates (``report.answer``; schema in docs/report.md)
    FIGURES = "figures"
    MANIFEST = REPORT_MANIFEST

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def html(self) -> Path:
        return self.path / self.HTML

    @property
    def markdown(self) -> Path:
        return self.path / self.MARKDOWN

    @property
    def figures(self) -> Path:
        return self.path / self.FIGURES

    @property
    def manifest(self) -> Path:
        return self.path / self.MANIFEST


class RunDir:
    """A run directory: every path of its layout, and its checked reads (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --- files and folders -------------------------------------------------------------------------
    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def environment_file(self) -> Path:
        return self.path / ENVIRONMENT_FILE

    @property
    def checkpoint(self) -> Path:
        """The checkpoint folder (as it is: ``recovered_checkpoint`` first repairs an interrupted replacement)."""
        return self.path / CHECKPOINT_DIR

    def recovered_checkpoint(self) -> Path:
        return recover_dir(self.checkpoint)

    @property
    def checkpoint_meta(self) -> Path:
        return self.checkpoint / CHECKPOINT_META

    @property
    def checkpoint_weights(self) -> Path:
        return self.checkpoint / CHECKPOINT_WEIGHTS

    @property
    def trainer_state(self) -> Path:
        return self.checkpoint / TRAINER_STATE

    @property
    def training_log(self) -> Path:
        return self.path / TRAINING_LOG

    @property
    def order_dir(self) -> Path:
        """RUN/order/: an importance-ordered run's first stages (``TrainConfig.order_by_importance``)."""
        return self.path / ORDER_DIR

    @property
    def order_checkpoint(self) -> Path:
        """RUN/order/checkpoint/: the short standard fine-tune the order is taken on (un-reordered; a model
        directory with trainer state, like ``checkpoint``)."""
        return self.order_dir / CHECKPOINT_DIR

    @property
    def order_log(self) -> Path:
        """RUN/order/training_log.parquet: that fine-tune's validation metric per epoch."""
        return self.order_dir / TRAINING_LOG

    @property
    def order_importance(self) -> Path:
        """RUN/order/importance.parquet (+ .csv): every head's and unit's score and its position after
        reordering (layer, part, index, score, position): the scores and the permutation."""
        return self.order_dir / "importance.parquet"

    @property
    def pipeline_file(self) -> Path:
        return self.path / PIPELINE_FILE

    @property
    def report_dir(self) -> ReportDir:
        return ReportDir(self.path / REPORT_DIR)

    @property
    def nas_settings(self) -> Path:
        return self.path / NAS_SETTINGS_FILE

    @property
    def syne_tune_dir(self) -> Path:
        return self.path / SYNE_TUNE_DIR

    @property
    def syne_tune_log(self) -> Path:
        return self.syne_tune_dir / SYNE_TUNE_LOG

    # --- stages --------------------------------------------------------------------------------------
    @property
    def search_root(self) -> Path:
        return self.path / SEARCH_DIR

    def search_dir(self, name: str) -> SearchDir:
        return SearchDir(self.search_root / name)

    @property
    def vocab_root(self) -> Path:
        """RUN/vocab/: the fine-tuned and exported models again, each with a trimmed vocabulary."""
        return self.path / VOCAB_DIR

    def search_names(self) -> list[str]:
        """Every search folder under RUN/search/, finished or not."""
        return _subdirs(self.search_root)

    def profile_dir(self, target: str) -> ProfileDir:
        return ProfileDir(self.path / PROFILE_DIR / target)

    def profile_targets(self) -> list[str]:
        """Targets with a profile folder; ``profiled_targets`` only those with a consolidated table."""
        return _subdirs(self.path / PROFILE_DIR)

    def profiled_targets(self) -> list[str]:
        return [t for t in self.profile_targets() if self.profile_dir(t).table.is_file()]

    def compare_dir(self, target: str) -> CompareDir:
        return CompareDir(self.path / COMPARE_DIR / target)

    def compare_targets(self) -> list[str]:
        return _subdirs(self.path / COMPARE_DIR)

    # --- reads ---------------------------------------------------------------------------------------
    def is_run(self) -> bool:
        return self.run_file.is_file()

    def read(self) -> dict:
        """``run.json``, checked (``read_run``)."""
        return read_run(self.path)

    def has_checkpoint(self) -> bool:
        """True when the checkpoint's weights are there (after repairing an interrupted replacement)."""
        self.recovered_checkpoint()
        return self.checkpoint_weights.is_file()

    def exports(self) -> dict[str, pd.DataFrame]:
        """Each search's exported Pareto models (``models/index.parquet``) by search name; none: left out."""
        found = {}
        for name in self.search_names():
            fix = f"export again with 'prunebench extract-pareto {self.path} --search {name} --overwrite'"
            index = self.search_dir(name).models.read_index(fix)
            if index is not None and len(index):
                found[name] = index
        return found


# A run's results without its bulk: no checkpoint, extracted models, vocabulary copies, resumable parts and
# search logs (the consolidated tables hold the same rows), CSV twins of Parquet tables, reports (their HTML
# embeds the figures) or locks. What a sweep's findings commit keeps of each cell (``copy_results``).
BULK_DIRS = (CHECKPOINT_DIR, VOCAB_DIR, REPORT_DIR, SYNE_TUNE_DIR)
BULK_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".parts", ".jsonl")


def result_files(run: Path) -> list[Path]:
    """The files of the run directory ``run`` that hold its results (see ``BULK_DIRS``), relative to it."""
    run = Path(run)
    found = []
    for path in sorted(run.rglob("*")):
        relative = path.relative_to(run)
        in_model = SearchDir.MODELS in relative.parts[:-2]  # search/NAME/models/p00/...: a model's own files
        skipped = (
            in_model
            or relative.parts[0] in BULK_DIRS
            or any(part.endswith(BULK_SUFFIXES) or part.startswith((LOCK_PREFIX, ".")) for part in relative.parts)
        )
        twin = path.suffix == ".csv" and path.with_suffix(".parquet").is_file()
        if path.is_file() and not skipped and not twin:
            found.append(relative)
    return found


def copy_results(run: Path, to: Path) -> list[Path]:
    """Copy the results of the run directory ``run`` into ``to`` (replacing what it held): a run that reads as
    finished (``pipeline.json``) and reports, but cannot train or extract further."""
    files = result_files(run)
    staging = staging_path(Path(to))
    try:
        staging.mkdir(parents=True)
        for relative in files:
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(run) / relative, staging / relative)
        if Path(to).exists():
            shutil.rmtree(to)
        Path(to).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, to)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return files


class SweepDir:
    """A sweep folder (``prunebench sweep --out``): the record, the grid, one run directory per cell, logs."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def record(self) -> Path:
        return self.path / SWEEP_FILE

    @property
    def grid(self) -> Path:
        return self.path / SWEEP_GRID

    @property
    def cells(self) -> Path:
        return self.path / SWEEP_CELLS

    def cell(self, name: str) -> RunDir:
        return RunDir(self.cells / name)

    def log(self, name: str) -> Path:
        return self.path / SWEEP_LOGS / f"{name}.log"

    def attempts(self, name: str) -> Path:
        """The cell's attempts, one JSON line per start and per end, appended by the cell on its node."""
        return self.path / SWEEP_LOGS / f"{name}.attempts.jsonl"

    @property
    def ray_log(self) -> Path:
        """What Ray told the driver (a dead node's raylet lines): kept here, not printed on the terminal."""
        return self.path / SWEEP_LOGS / "ray.log"

    @property
    def report_dir(self) -> ReportDir:
        return ReportDir(self.path / REPORT_DIR)

    def is_sweep(self) -> bool:
        return self.record.is_file()

    def read(self) -> dict:
        """``sweep.json``, checked: its kind, and a list of cells each with a name and a status."""
        fix = f"run the sweep again ('prunebench sweep GRID --out {self.path}') to write it anew"
        data = read_json(self.record, fix)
        if data.get("kind") != SWEEP_KIND:
            raise PrunebenchError(f"{self.record} is not a prunebench sweep record; {fix}")
        cells = data.get("cells")
        if not isinstance(cells, list) or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("status"), str) for c in cells
        ):
            raise PrunebenchError(f"{self.record} is damaged ('cells' is not a list of named cells); {fix}")
        return data
