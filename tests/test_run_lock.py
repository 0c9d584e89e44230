"""One writer per run directory: advisory locks held for a whole command, stale ones taken over."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import ForkedCli
from prunebench.errors import PrunebenchError
from prunebench.rundir import LOCK_PREFIX, writer_lock

# A child that takes a lock and waits to be killed: its lock is what the tests run into.
HOLDER = """
import sys, time
from pathlib import Path
from prunebench.rundir import writer_lock
with writer_lock(Path(sys.argv[1]), stage=sys.argv[2] or None):
    print("held", flush=True)
    time.sleep(120)
"""


def _hold(folder: Path, stage: str | None = None) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), stage or ""], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "held"
    return child


def _cli(*args: str) -> ForkedCli:
    return ForkedCli(list(args), env={"COLUMNS": "200"}, text=True)


def _copy(run: Path, target: Path) -> Path:
    shutil.copytree(run, target, copy_function=os.link)  # new files and atomic renames never write through
    return target


def test_exclusive_and_stage_locks(tmp_path):
    run = tmp_path / "run"
    holder = _hold(run, "search-a")  # one search: the run shared, its own stage exclusively
    try:
        with writer_lock(run, stage="search-b"):  # another search of the same run may go on beside it
            pass
        with pytest.raises(PrunebenchError, match=r"\(search-a\) is being written by pid \d+ \(prunebench .*\)"):
            with writer_lock(run, stage="search-a"):
                pass
        with pytest.raises(PrunebenchError, match=rf"{run} is being written by pid {holder.pid}"):
            with writer_lock(run):  # training or a pipeline needs the whole run
                pass
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_is_reentrant_in_one_process_and_leaves_no_file(tmp_path):
    run = tmp_path / "run"
    with writer_lock(run):
        with writer_lock(Path(str(run) + "/"), stage="search-x"):  # the pipeline's stages, under its own lock
            assert {p.name for p in run.iterdir()} == {LOCK_PREFIX, f"{LOCK_PREFIX}-search-x"}
        (run / "result.json").write_text("{}")
    assert [p.name for p in run.iterdir()] == ["result.json"]  # the lock files went with the last holder


def test_a_command_that_wrote_nothing_leaves_no_folder(tmp_path):
    with writer_lock(tmp_path / "a" / "run"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_failed_command_removes_the_folder_it_made(tmp_path):
    with pytest.raises(PrunebenchError):
        with writer_lock(tmp_path / "a" / "b" / "run"):
            raise PrunebenchError("refused")
    assert list(tmp_path.iterdir()) == []


def test_a_dead_holders_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    holder = _hold(run)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (run / LOCK_PREFIX).is_file()  # the stale file stays, but the kernel dropped the lock
    with writer_lock(run):
        pass
    assert list(run.iterdir()) == []


def test_two_concurrent_searches_give_one_result_and_one_refusal(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path / "run")
    args = ("search", str(run), "--name", "ref", "--samples", "12", "--method", "random_search")
    first, second = _cli(*args), _cli(*args)
    results = [(p.wait(timeout=600), *p.communicate()) for p in (first, second)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refusal = next(err for code, _, err in results if code == 2).strip().splitlines()
    assert len(refusal) == 1 and "(search-ref) is being written by pid" in refusal[0], refusal
    assert "prunebench search" in refusal[0]  # names the holder's command
    search_dir = run / "search" / "ref"
    log = (search_dir / "log.jsonl").read_text().splitlines()
    assert len(log) == 12  # one search's evaluations, not two interleaved
    assert len(pd.read_parquet(search_dir / "candidates.parquet")) == 12
    assert not [p for p in run.iterdir() if p.name.startswith(LOCK_PREFIX)]
    assert not [p for p in search_dir.iterdir() if ".partial" in p.name]


def test_a_search_killed_holding_its_lock_can_be_resumed(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path / "run")
    search = _cli("search", str(run), "--name", "ref", "--samples", "400")
    log = run / "search" / "ref" / "log.jsonl"
    deadline = time.monotonic() + 300
    while not (log.is_file() and len(log.read_text().splitlines()) >= 3):
        assert search.poll() is None and time.monotonic() < deadline, search.communicate()
        time.sleep(0.2)
    search.send_signal(signal.SIGKILL)
    search.wait()
    resumed = _cli("search", str(run), "--name", "ref", "--samples", "5", "--resume")
    code, out, err = resumed.wait(timeout=600), *resumed.communicate()
    assert code == 0, out + err
    assert "resuming" in out
