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
leaves either the old or the new version, never half a file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd

from prunebench.errors import PrunebenchError

RUN_FILE = "run.json"
ENVIRONMENT_FILE = "environment.json"
CHECKPOINT_DIR = "checkpoint"
TRAINING_LOG = "training_log.parquet"
RUN_KIND = "prunebench-run"
RUN_VERSION = 1


def write_json_atomic(path: Path, data: dict) -> None:
    staging = path.with_name(f".{path.name}.partial")
    staging.write_text(json.dumps(data, indent=2, default=str))
    os.replace(staging, path)


def write_parquet_atomic(path: Path, frame: pd.DataFrame) -> None:
    staging = path.with_name(f".{path.name}.partial")
    frame.to_parquet(staging, index=False)
    os.replace(staging, path)


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
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PrunebenchError(f"{path} is corrupt ({error.msg}); start the run again with --overwrite") from None
    if data.get("kind") != RUN_KIND:
        raise PrunebenchError(f"{path} is not a prunebench run file; point to a directory made by 'prunebench train'")
    return data
