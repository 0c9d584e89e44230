"""Nothing of the user's is ever lost: --overwrite, symbolic links, full disks, SIGTERM, moved data.

Each test asserts the refusal is one line without a traceback, that every file outside prunebench's own output keeps
its hash, and that the command works once the cause is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import TINY_TRAIN, ForkedCli, run_cli
from prunebench.config import TrainConfig
from prunebench.errors import PrunebenchError
from prunebench.rundir import (
    OUTPUT_MARKER,
    clear_output,
    foreign_entries,
    mark_output,
    recover_dir,
    remove_stale_staging,
    staging_path,
)
from prunebench.supernet.training import train_supernet

ROWS = [("a gripping and moving film", "pos"), ("dull and far too long", "neg")] * 24
FILES_TRAIN = [
    *("--model", "shape:bert-tiny", "--task", "files", "--text-columns", "text", "--label-column", "label"),
    *("--space", "small", "--strategy", "standard", "--epochs", "1", "--batch-size", "8", "--max-length", "16"),
]


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _one_line(code: int, out: str, err: str, pattern: str) -> str:
    assert code == 2, out + err
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert pattern in lines[0], lines[0]
    return lines[0]


def _csv(path: Path, rows=ROWS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text,label\n" + "".join(f"{text},{label}\n" for text, label in rows))
    return path


# --- --overwrite empties only what prunebench made -------------------------------------------------------------


def test_a_prunebench_json_of_the_users_is_not_a_marker(tiny_run, tmp_path, monkeypatch, capsys):
    project = tmp_path / "proj"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print(1)\n")
    (project / "prunebench.json").write_text('{"threshold": 0.5}')
    before = _hashes(project)
    code, out, err = run_cli(["report", str(tiny_run), "--out", str(project), "--overwrite"], monkeypatch, capsys)
    _one_line(code, out, err, "did not write")
    assert _hashes(project) == before


def test_overwrite_refuses_a_marked_folder_holding_foreign_files_and_then_replaces_it(tmp_path):
    folder = tmp_path / "out"
    mark_output(folder)
    (folder / "run.json").write_text("{}")
    (folder / "checkpoint").mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "data").mkdir()
    with pytest.raises(PrunebenchError, match=r"also holds data, notes\.txt"):
        clear_output(folder)
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "checkpoint").is_dir()
    (folder / "notes.txt").unlink()
    (folder / "data").rmdir()
    clear_output(folder)
    assert list(folder.iterdir()) == []


def test_an_old_or_forged_marker(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / OUTPUT_MARKER).write_text("made by prunebench; --overwrite may empty this folder\n")  # earlier versions
    (old / "run.json").write_text("{}")
    clear_output(old)
    assert list(old.iterdir()) == []
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / OUTPUT_MARKER).write_text("anything")
    (forged / "run.json").write_text("{}")
    with pytest.raises(PrunebenchError, match="did not write"):
        clear_output(forged)
    assert (forged / "run.json").is_file()


def test_overwrite_never_empties_a_folder_through_a_link(tmp_path, monkeypatch, capsys):
    real = tmp_path / "elsewhere"
    mark_output(real)
    (real / "run.json").write_text("{}")
    link = tmp_path / "runs" / "link"
    link.parent.mkdir()
    link.symlink_to(real)
    before = _hashes(real)
    args = ["train", *FILES_TRAIN[:2], "--out", str(link), "--overwrite"]
    line = _one_line(*run_cli(args, monkeypatch, capsys), "symbolic link")
    assert str(real) in line
    assert _hashes(real) == before and link.is_symlink()


def test_overwrite_never_deletes_the_inputs_it_reads(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "IN"
    train, test = _csv(folder / "train.csv"), _csv(folder / "test.csv")
    mark_output(folder)
    before = _hashes(folder)
    args = ["train", *FILES_TRAIN, "--train", str(train), "--test", str(test), "--out", str(folder), "--overwrite"]
    _one_line(*run_cli(args, monkeypatch, capsys), "is an input of this command")
    assert _hashes(folder) == before


def test_a_whole_tiny_run_writes_only_names_overwrite_may_remove(tiny_run):
    assert foreign_entries(tiny_run) == []


# --- symbolic links to stage folders are written through ----------------------------------------------------------


def test_a_linked_checkpoint_and_report_are_written_through(tiny_run, tmp_path, monkeypatch, capsys):
    config = TrainConfig(**TINY_TRAIN, checkpoint_every=1)
    run = tmp_path / "run"
    train_supernet(config, run, show_progress=False, stop_after_steps=3)
    other_disk = tmp_path / "other-disk"
    other_disk.mkdir()
    shutil.move(run / "checkpoint", other_disk / "ckpt")
    (run / "checkpoint").symlink_to(other_disk / "ckpt")
    (run / ".checkpoint.old").symlink_to(tmp_path / "nowhere")  # a stale leftover that is not a folder
    result = train_supernet(config, run, resume=True, show_progress=False)
    assert result.finished
    assert (run / "checkpoint").is_symlink() and not (run / ".checkpoint.old").is_symlink()
    assert json.loads((other_disk / "ckpt" / "checkpoint.json").read_text())["step"] == result.total_steps
    assert not list(run.glob(".checkpoint.*")) and not list(other_disk.glob(".ckpt.*"))

    report = tmp_path / "report"
    report.symlink_to(other_disk)
    other_disk.joinpath("ckpt").rename(tmp_path / "ckpt-kept")  # the report's target must be empty or a report
    for _ in range(2):  # the second write replaces the first, through the link
        code, out, err = run_cli(["report", str(tiny_run), "--out", str(report)], monkeypatch, capsys)
        assert code == 0, out + err
    assert report.is_symlink() and (other_disk / "report.html").is_file()
    assert not list(tmp_path.glob(".report.*")) and not list(tmp_path.glob(".other-disk.*"))


def test_staging_left_by_a_killed_writer_is_removed_and_a_live_ones_kept(tmp_path):
    target = tmp_path / "models"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = target.with_name(f".models.partial-{dead.pid}-abc123")
    stale.mkdir()
    (stale / "weights").write_bytes(b"x" * 100)
    live = staging_path(target)  # this process's own: in use
    live.mkdir()
    remove_stale_staging(target)
    assert not stale.exists() and live.exists()


def test_recover_dir_keeps_a_retired_folder_and_drops_a_stale_link(tmp_path):
    target = tmp_path / "checkpoint"
    retired = tmp_path / ".checkpoint.old"
    retired.mkdir()
    recover_dir(target)
    assert target.is_dir() and not retired.exists()
    retired.symlink_to(tmp_path / "nowhere")
    recover_dir(target)
    assert not retired.is_symlink() and target.is_dir()


# --- operating-system errors are one line -----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip() or 'not permitted'})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_line_and_the_rerun_resumes(small_disk, monkeypatch, capsys):
    args = ["train", *[f"--{k.replace('_', '-')}={v}" for k, v in TINY_TRAIN.items()], "--out", str(small_disk / "r")]
    line = _one_line(*run_cli(args, monkeypatch, capsys), "No space left on device")
    assert "free space" in line
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    code, out, err = run_cli([*args, "--resume"], monkeypatch, capsys)
    assert code == 0, out + err
    assert json.loads((small_disk / "r" / "run.json").read_text())["status"] == "finished"


# --- SIGTERM is handled like Ctrl-C ------------------------------------------------------------------------------


def _until(condition, process, seconds=120.0) -> None:
    deadline = time.time() + seconds
    while not condition() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, process.stderr.read().decode()


def test_sigterm_during_training_checkpoints_and_the_resume_is_exact(tmp_path):
    base = {**TINY_TRAIN, "epochs": 3, "max_train_examples": 160}
    config = TrainConfig(**base)
    train_supernet(config, tmp_path / "straight", show_progress=False)
    run = tmp_path / "stopped"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in base.items()]
    process = ForkedCli(["train", *args, f"--out={run}"], env={"COLUMNS": "200"})
    _until(lambda: (run / "run.json").is_file(), process)
    time.sleep(1.0)  # into the first epoch: checkpoints are written only at its end
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err.decode()
    assert "Traceback" not in err.decode() and "SIGTERM" in err.decode()
    step = json.loads((run / "checkpoint" / "checkpoint.json").read_text())["step"]
    assert 0 < step
    result = train_supernet(config, run, resume=True, show_progress=False)
    assert result.finished
    straight, again = (
        load_file(tmp_path / "straight" / "checkpoint" / "model.safetensors"),
        load_file(run / "checkpoint" / "model.safetensors"),
    )
    assert all(torch.equal(straight[k], again[k]) for k in straight)


def test_sigterm_during_a_search_keeps_every_finished_evaluation(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, copy_function=os.link)
    log = run / "search" / "t" / "log.jsonl"
    args = ["search", str(run), "--name", "t", "--method", "random_search", "--samples", "400", "--workers", "2"]
    process = ForkedCli(args)
    _until(lambda: log.is_file() and log.read_text().count("\n") >= 3, process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err.decode()
    assert "Traceback" not in err.decode() and "leaked" not in err.decode()
    text = log.read_text()
    assert text.endswith("\n") and text.count("\n") >= 3  # whole lines only
    done = text.count("\n")
    resumed = ForkedCli([*args[:-2], "--samples", str(done + 2), "--resume"])
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode()
    assert log.read_text().startswith(text) and log.read_text().count("\n") == done + 2


# --- a run knows its data ----------------------------------------------------------------------------------------


def test_a_run_on_relative_files_works_from_any_folder_and_after_a_move(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    _csv(project / "data" / "train.csv")
    _csv(project / "data" / "test.csv", ROWS[:8])
    monkeypatch.chdir(project)
    args = ["train", *FILES_TRAIN, "--train", "data/train.csv", "--test", "data/test.csv", "--out", "runs/mine"]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, out + err
    run = project / "runs" / "mine"
    recorded = json.loads((run / "run.json").read_text())["data_files"]
    assert recorded["train"]["path"] == str(project / "data" / "train.csv")
    assert len(recorded["train"]["sha256"]) == 64

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    search = ["search", str(run), "--method", "random_search", "--samples", "3", "--max-eval-examples", "16"]
    code, out, err = run_cli([*search, "--name", "a"], monkeypatch, capsys)
    assert code == 0, out + err

    (project / "data").rename(project / "moved")
    line = _one_line(*run_cli([*search, "--name", "b"], monkeypatch, capsys), "is gone")
    assert f"prunebench relocate {run} --train" in line
    other = _csv(tmp_path / "other.csv", ROWS[:10])
    _one_line(*run_cli(["relocate", str(run), "--train", str(other)], monkeypatch, capsys), "sha256 differs")
    code, out, err = run_cli(
        ["relocate", str(run), "--train", str(project / "moved" / "train.csv"), "--test",
         str(project / "moved" / "test.csv")], monkeypatch, capsys,
    )  # fmt: skip
    assert code == 0, out + err
    code, out, err = run_cli([*search, "--name", "b"], monkeypatch, capsys)
    assert code == 0, out + err


# --- resource limits ---------------------------------------------------------------------------------------------


def test_a_batch_beyond_the_machines_memory_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    train, test = _csv(data / "train.csv"), _csv(data / "test.csv")
    args = ["train", *FILES_TRAIN, "--train", str(train), "--test", str(test), "--out", str(tmp_path / "r")]
    args[args.index("--max-length") + 1] = "512"
    args[args.index("--batch-size") + 1] = "100000"
    monkeypatch.setattr("psutil.virtual_memory", lambda: type("vm", (), {"available": 2**30})())
    line = _one_line(*run_cli(args, monkeypatch, capsys), "an estimate")
    assert "--batch-size" in line and not (tmp_path / "r").exists()


def test_a_search_stops_when_its_space_is_used_up(tiny_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, copy_function=os.link)
    args = ["search", str(run), "--space", "layer", "--name", "all", "--method", "random_search"]
    code, out, err = run_cli([*args, "--samples", "1000000", "--max-eval-examples", "16"], monkeypatch, capsys)
    assert code == 0, out + err
    assert "sub-networks" in out and "all are evaluated" in out
    assert (run / "search" / "all" / "log.jsonl").read_text().count("\n") == 4  # bert-tiny: 2 layers, 2^2 configs


def test_evaluation_workers_beyond_the_machines_memory_are_refused(tiny_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, copy_function=os.link)
    monkeypatch.setattr("psutil.virtual_memory", lambda: type("vm", (), {"available": 2**20})())
    args = ["search", str(run), "--name", "big", "--eval-batch-size", "100000", "--workers", "2"]
    line = _one_line(*run_cli(args, monkeypatch, capsys), "an estimate")
    assert "--eval-batch-size" in line and not (run / "search" / "big").exists()
