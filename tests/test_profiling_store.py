"""The row store's files: staging names no two writers share, damaged parts set aside by readers too."""

import json
import os
import threading

import pandas as pd
import pyarrow.parquet as pq

import prunebench.hardware.store as store
from prunebench.hardware.store import ProfileRow, ProfileStore, read_profile_table
from prunebench.profiling.profiler import write_calibration


def _row(model: str = "m", batch: int = 1) -> ProfileRow:
    return ProfileRow(
        model=model,
        model_source="somewhere",
        pruned=False,
        variant="fp32",
        quantization=None,
        compute_dtype="float32",
        target="cpu",
        device="cpu: test",
        batch_size=batch,
        seq_len=16,
        threads=1,
        mode="measured",
        estimated=False,
        status="ok",
        model_key="k",
    )


def _two_at_once(work) -> list[BaseException]:
    errors = []

    def run() -> None:
        try:
            work()
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def test_two_writers_of_one_part_in_one_process_do_not_collide(tmp_path, monkeypatch):
    both_staged = threading.Barrier(2, timeout=10)
    real = pq.write_table

    def write_then_wait(table, where, **kwargs):
        real(table, where, **kwargs)
        both_staged.wait()  # neither renames its staging file before the other has written its own

    monkeypatch.setattr(store.pq, "write_table", write_then_wait)
    parts = ProfileStore(tmp_path)
    assert _two_at_once(lambda: parts.append(_row())) == []
    monkeypatch.undo()
    assert [p.name for p in parts.parts.iterdir()] == [f"{_row().key()}.parquet"]  # no staging file left
    assert read_profile_table(tmp_path)["model"].tolist() == ["m"]


def test_two_writers_of_the_calibration_file_do_not_collide(tmp_path, monkeypatch):
    both_staged = threading.Barrier(2, timeout=10)
    real = json.dumps

    def dumps_then_wait(*args, **kwargs):
        text = real(*args, **kwargs)
        both_staged.wait()
        return text

    frame = pd.DataFrame([{"mode": "estimated", "estimate_error": 0.1, "target": "cpu", "variant": "fp32"}])
    monkeypatch.setattr(json, "dumps", dumps_then_wait)
    assert _two_at_once(lambda: write_calibration(frame, tmp_path / "calibration.json")) == []
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["calibration.json"]
    assert json.loads((tmp_path / "calibration.json").read_text())["by_variant"][0]["points"] == 1


def test_a_reader_moves_damaged_parts_aside_and_reads_the_rest(tmp_path, capsys):
    parts = ProfileStore(tmp_path)
    for batch in (1, 2, 3):
        parts.append(_row(batch=batch))
    files = {batch: parts._part(_row(batch=batch).key()) for batch in (1, 2, 3)}
    files[1].write_bytes(files[1].read_bytes()[:40])  # cut short, as by a full disk
    noise = os.urandom(300)
    files[2].write_bytes(noise)
    frame = read_profile_table(tmp_path)
    assert frame["batch_size"].tolist() == [3]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("warning: damaged part ") for line in lines)
    assert str(files[1]) in lines[0] + lines[1] and str(files[2]) in lines[0] + lines[1]
    assert (parts.parts / "damaged" / files[2].name).read_bytes() == noise
    assert not parts.has(_row(batch=1)) and not parts.has(_row(batch=2))  # so a profiler measures them again
    assert read_profile_table(tmp_path)["batch_size"].tolist() == [3] and capsys.readouterr().err == ""
