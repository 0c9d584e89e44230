"""Measuring on this CPU: fp32, int8 and nf4 on bert-tiny, the Parquet table, resuming, out-of-memory points."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import prunebench.profiling.profiler as profiler
from prunebench.errors import PrunebenchError
from prunebench.extract import extract
from prunebench.hardware.measure import PointOutOfMemory
from prunebench.hardware.store import COLUMNS
from prunebench.hardware.timing import LatencyStats, measure_until_stable
from prunebench.models import load_model
from prunebench.profiling import TimingConfig, profile_models, read_profile_table
from prunebench.supernet import get_space

FAST = TimingConfig(warmup=1, min_repeats=3, max_repeats=6, round_size=3, max_seconds=0.2)
ENVIRONMENT_COLUMNS = ["torch_version", "transformers_version", "bitsandbytes_version", "python_version", "cpu_model"]


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> tuple[pd.DataFrame, object]:
    out = tmp_path_factory.mktemp("profile")
    frame = profile_models(
        ["shape:bert-tiny"], out, variants=["fp32", "int8", "nf4"], batch_sizes=(1, 4), seq_lens=(16,), timing=FAST
    )
    return frame, out


def test_fp32_int8_nf4_are_measured_on_cpu(measured):
    frame, _ = measured
    assert len(frame) == 6
    assert set(frame["variant"]) == {"fp32", "int8", "nf4"}
    assert (frame["status"] == "ok").all(), frame[["variant", "reason"]]
    assert (frame["mode"] == "measured").all() and not frame["estimated"].any()
    assert (frame["threads"] == 1).all() and (frame["target"] == "cpu").all()
    assert frame["device"].str.startswith("cpu: ").all()
    for row in frame.itertuples():
        assert 0 < row.latency_min_s <= row.latency_p50_s <= row.latency_p90_s <= row.latency_p99_s
        assert row.latency_p99_s <= row.latency_max_s
        assert math.isclose(row.throughput_seq_per_s, row.batch_size / row.latency_mean_s)
        assert FAST.min_repeats <= row.repeats <= FAST.max_repeats and row.timer == "perf_counter"
        assert row.peak_rss_growth_bytes >= 0 and row.rss_bytes > 0
    sizes = frame.groupby("variant")["weight_bytes"].first()
    assert sizes["nf4"] < sizes["int8"] < sizes["fp32"]
    assert frame["compute_dtype"].eq("float32").all()


def test_rows_carry_full_metadata(measured):
    frame, out = measured
    assert list(frame.columns) == COLUMNS
    for column in ENVIRONMENT_COLUMNS:
        assert frame[column].notna().all(), column
    assert frame["torch_version"].iloc[0] == torch.__version__
    on_disk = pd.read_parquet(out / "profile.parquet")
    assert len(on_disk) == len(frame) and set(on_disk["variant"]) == {"fp32", "int8", "nf4"}
    assert (out / "profile.csv").is_file()


def test_a_rerun_resumes_without_measuring_again(measured, monkeypatch):
    frame, out = measured

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished point was measured again")

    monkeypatch.setattr(profiler, "measure_point", must_not_run)
    again = profile_models(
        ["shape:bert-tiny"], out, variants=["fp32", "int8", "nf4"], batch_sizes=(1, 4), seq_lens=(16,), timing=FAST
    )
    assert len(again) == len(frame)
    assert sorted(again["latency_mean_s"]) == sorted(frame["latency_mean_s"])


def test_out_of_memory_is_recorded_and_the_loop_goes_on(tmp_path, monkeypatch):
    real = profiler.measure_point

    def fail_at_batch_4(built, loaded, batch, seq_len, timing):
        if batch == 4:
            raise PointOutOfMemory("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(built, loaded, batch, seq_len, timing)

    monkeypatch.setattr(profiler, "measure_point", fail_at_batch_4)
    frame = profile_models(
        ["shape:bert-tiny"], tmp_path, variants=["fp32"], batch_sizes=(1, 4, 2), seq_lens=(8,), timing=FAST
    )
    status = dict(zip(frame["batch_size"], frame["status"], strict=True))
    assert status == {1: "ok", 4: "oom", 2: "ok"}
    oom = frame[frame["status"] == "oom"].iloc[0]
    assert "out of memory" in oom["reason"] and pd.isna(oom["latency_mean_s"])
    assert len(read_profile_table(tmp_path)) == 3


def test_pruned_models_in_memory_and_quantized(tmp_path):
    loaded = load_model("shape:bert-tiny")
    space = get_space("small", loaded.dims)
    half = extract(loaded, space.masks(space.middle()))
    frame = profile_models(
        {"full": loaded, "half": half}, tmp_path, variants=["fp32", "nf4"], batch_sizes=(2,), seq_lens=(8,), timing=FAST
    )
    assert (frame["status"] == "ok").all()
    by = frame.set_index(["model", "variant"])
    assert not by.loc[("full", "fp32"), "pruned"] and by.loc[("half", "fp32"), "pruned"]
    assert by.loc[("half", "fp32"), "parameters"] == sum(p.numel() for p in half.model.parameters())
    assert by.loc[("half", "fp32"), "macs_per_sequence"] < by.loc[("full", "fp32"), "macs_per_sequence"]
    assert by.loc[("half", "nf4"), "weight_bytes"] < by.loc[("half", "fp32"), "weight_bytes"]


def test_sizes_the_model_cannot_take_are_refused_before_running(tmp_path):
    with pytest.raises(PrunebenchError, match="sequence length 600 does not fit .* 1 to 512 tokens"):
        profile_models(["shape:bert-tiny"], tmp_path, seq_lens=(128, 600), timing=FAST)
    with pytest.raises(PrunebenchError, match="batch size 0"):
        profile_models(["shape:bert-tiny"], tmp_path, batch_sizes=(0,), timing=FAST)
    with pytest.raises(PrunebenchError, match="unknown variant 'int3'"):
        profile_models(["shape:bert-tiny"], tmp_path, variants=["int3"], timing=FAST)
    assert not (tmp_path / "profile.parts").exists()


def test_measure_until_stable_stops_when_the_mean_is_stable_or_at_the_cap():
    calls = []
    stats = measure_until_stable(lambda: calls.append(1), TimingConfig(warmup=2, min_repeats=4, max_repeats=50))
    assert isinstance(stats, LatencyStats) and stats.warmup == 2
    assert stats.repeats + 2 == len(calls) and stats.repeats <= 50 and stats.stable is not None

    import time

    jitter = iter([0.0, 0.004] * 100)
    capped = measure_until_stable(
        lambda: time.sleep(next(jitter)),
        TimingConfig(warmup=0, min_repeats=2, max_repeats=8, round_size=2, target_relative_sem=1e-6),
    )
    assert capped.repeats == 8 and capped.stable is False


def test_a_variant_that_cannot_run_here_is_skipped_with_its_reason(tmp_path, monkeypatch):
    import prunebench.hardware.variants as variants

    monkeypatch.setattr(variants, "_bnb", lambda: None)  # as if bitsandbytes were not installed
    seen = []
    frame = profile_models(
        ["shape:bert-tiny"],
        tmp_path,
        variants=["fp32", "nf4"],
        batch_sizes=(1, 2),
        seq_lens=(8,),
        calibrate=True,
        timing=FAST,
        on_row=seen.append,
    )
    measured = frame[frame["mode"] == "measured"].set_index(["variant", "batch_size"])
    assert (measured.loc["fp32", "status"] == "ok").all()
    assert (measured.loc["nf4", "status"] == "skipped").all()
    assert measured.loc["nf4", "reason"].str.contains("bitsandbytes is not installed").all()
    first = {}
    for row in seen:
        first.setdefault(row.key(), row)
    assert len(frame) == 8 and len(first) == 8  # each point measured (or skipped) and estimated once
    again = [row for row in seen if row is not first[row.key()]]
    assert all(row.remeasured or row.estimated for row in again)  # then only unstable points, timed again
    seen.clear()
    profile_models(
        ["shape:bert-tiny"], tmp_path, variants=["fp32", "nf4"], batch_sizes=(1, 2), seq_lens=(8,),
        calibrate=True, timing=FAST, on_row=seen.append,
    )  # fmt: skip
    assert seen == []  # nothing left to do
