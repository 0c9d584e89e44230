"""The row store's files: staging names no two writers share, damaged parts set aside by readers too."""

import json
import os
import threading
from dataclasses import asdict, replace

import pandas as pd
import pyarrow.parquet as pq

import prunebench.hardware.store as store
from helpers import profile_row
from prunebench.hardware.store import ProfileRow, ProfileStore, read_profile, read_profile_table
from prunebench.profiling.profiler import write_calibration


def _row(model: str = "m", batch: int = 1) -> ProfileRow:
    return profile_row(model, batch_size=batch)


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


def test_latency_and_memory_are_defined_on_the_row_and_survive_a_parquet_round_trip(tmp_path):
    """One definition each: the row derives ``latency_s`` and ``memory_bytes``; the table keeps them, with their
    neighbours (peak memory growth and total, LLM.int8's fp32 fallback), through Parquet unchanged."""
    mib = 2**20
    timing = dict(latency_mean_s=0.012, latency_p50_s=0.010, latency_p99_s=0.02)
    cpu = replace(_row("cpu"), **timing, weight_bytes=80 * mib, peak_rss_growth_bytes=20 * mib)
    cpu = replace(cpu, peak_memory_growth_bytes=20 * mib, variant="int8", quantization="bnb-int8")
    cpu = replace(cpu, int8_fp32_fallback_linears=3, int8_fallback_weight_share=0.25)
    cuda = replace(_row("cuda"), **timing, weight_bytes=80 * mib, torch_peak_allocated_bytes=150 * mib)
    cuda = replace(cuda, target="a10", peak_memory_growth_bytes=60 * mib, peak_memory_total_bytes=150 * mib)
    estimate = replace(_row("estimate"), mode="estimated", estimated=True, latency_mean_s=0.004, latency_p50_s=0.004)
    estimate = replace(estimate, weight_bytes=80 * mib, est_peak_memory_bytes=90 * mib)
    skipped = replace(_row("skipped"), status="skipped", reason="not here", weight_bytes=80 * mib)
    assert (cpu.latency_s, cpu.memory_bytes) == (0.010, 100 * mib)  # p50; CPU: weights + peak RSS growth
    assert (cuda.latency_s, cuda.memory_bytes) == (0.010, 150 * mib)  # CUDA: torch's peak allocated
    assert (estimate.latency_s, estimate.memory_bytes) == (0.004, 90 * mib)  # the estimate's figures
    assert (skipped.latency_s, skipped.memory_bytes) == (None, None)

    parts = ProfileStore(tmp_path)
    rows = [cpu, cuda, estimate, skipped]
    for row in rows:
        parts.append(row)
    parts.consolidate()
    back = read_profile(tmp_path, "profile again").set_index("model")
    columns = ["latency_s", "memory_bytes", "peak_memory_growth_bytes", "peak_memory_total_bytes"]
    columns += ["int8_fp32_fallback_linears", "int8_fallback_weight_share", "latency_mean_s", "latency_p99_s"]
    for row in rows:
        for column in columns:
            stored, written = back.loc[row.model, column], getattr(row, column)
            assert (pd.isna(stored) and written is None) or stored == written, (row.model, column)
    schema = pq.read_schema(tmp_path / "profile.parquet")
    assert str(schema.field("memory_bytes").type) == "int64" and str(schema.field("latency_s").type) == "double"
    assert ProfileRow.from_record(back.reset_index().iloc[0].to_dict()) == cpu  # and back into the row itself


def test_a_table_written_before_the_definitions_existed_reads_with_them(tmp_path):
    record = asdict(replace(_row(), latency_p50_s=0.5, latency_mean_s=0.6, weight_bytes=10, peak_rss_growth_bytes=5))
    old = pd.DataFrame([{k: v for k, v in record.items() if k not in ("latency_s", "memory_bytes")}])
    (tmp_path / "profile.parquet").parent.mkdir(exist_ok=True)
    old.to_parquet(tmp_path / "profile.parquet")
    back = read_profile(tmp_path, "profile again")
    assert back[["latency_s", "memory_bytes"]].values.tolist() == [[0.5, 15]]
