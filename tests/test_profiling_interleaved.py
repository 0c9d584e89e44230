"""Interleaved timing, latency ratios with their intervals, unstable points timed again, the machine's state."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import prunebench.profiling.profiler as profiler
from helpers import cli_error, run_cli
from prunebench.extract import extract
from prunebench.hardware.machine import (
    BusyProcess,
    MachineState,
    cpu_identity,
    identity_text,
    load_warning,
    machine_identity,
)
from prunebench.hardware.timing import (
    InterleavedTimes,
    interval_stable,
    measure_interleaved,
    median_interval,
    ratio_interval,
)
from prunebench.models import load_model
from prunebench.profiling import TimingConfig, profile_models
from prunebench.supernet import get_space

FAST = TimingConfig(warmup=1, min_repeats=3, max_repeats=6, round_size=3, max_seconds=0.2)


# --- the order of the passes -----------------------------------------------------------------------------------


def test_passes_are_interleaved_round_by_round_warm_up_included():
    log: list[str] = []
    fns = [lambda name=name: log.append(name) for name in "ABC"]
    config = TimingConfig(warmup=2, min_repeats=4, max_repeats=4, round_size=2, max_seconds=60)
    times = measure_interleaved(fns, config)
    assert log == list("ABC") * (2 + 4)  # A B C A B C ..., never A A A B B B
    assert times.rounds == 4 and all(len(t) == 4 for t in times.times)


@pytest.fixture(scope="module")
def models():
    loaded = load_model("shape:bert-tiny")
    space = get_space("small", loaded.dims)
    return {"full": loaded, "half": extract(loaded, space.masks(space.middle()))}


def test_a_shape_is_timed_as_one_group_with_the_reference(models, tmp_path, monkeypatch):
    groups = []
    real = profiler._Run._interleave

    def spy(self, members, resident, point, reference):
        groups.append((point, [f"{subject.label} {spec.name}" for subject, spec in members]))
        return real(self, members, resident, point, reference)

    monkeypatch.setattr(profiler._Run, "_interleave", spy)
    frame = profile_models(
        models, tmp_path, variants=["dynamic-int8", "fp32"], batch_sizes=(1, 2), seq_lens=(8,),
        timing=replace(FAST, remeasure_attempts=0),
    )  # fmt: skip
    everything = ["full fp32", "full dynamic-int8", "half dynamic-int8", "half fp32"]
    assert [(point, sorted(names)) for point, names in groups] == [
        ((1, 8), sorted(everything)),
        ((2, 8), sorted(everything)),
    ]
    assert all(names[0] == "full fp32" for _, names in groups)  # the reference, though not asked for first
    assert (frame["ratio_reference"] == "full fp32").all() and (frame["interleaved_with"] == 4).all()
    reference = frame[(frame["model"] == "full") & (frame["variant"] == "fp32")]
    assert (reference["latency_ratio"] == 1.0).all()
    assert (frame["latency_ratio_low"] <= frame["latency_ratio"]).all()
    assert (frame["latency_ratio"] <= frame["latency_ratio_high"]).all()
    # one CPU thread: the ratio is the timing thread's median CPU times' ratio, measured in the same rounds
    assert (frame["ratio_clock"] == "thread_cpu").all() and frame["waited_share"].between(0, 1).all()
    by = frame.set_index(["model", "variant", "batch_size"])
    half = by.loc[("half", "fp32", 1)]
    assert half["latency_ratio"] == pytest.approx(half["cpu_p50_s"] / by.loc[("full", "fp32", 1), "cpu_p50_s"])


def _spin(seconds: float) -> None:
    """Keep this thread busy for ``seconds`` of its own CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_ratios_on_thread_cpu_time_leave_out_the_time_the_thread_did_not_run():
    # B spends a quarter of A's CPU time, then waits 20 ms off the CPU (as a time-sliced pass waits for its core):
    # on wall time B takes longer than A, on the thread's CPU time a quarter as long. Load from elsewhere
    # stretches both passes' wall time, never their CPU time, so the test holds on a busy machine too.
    fns = [lambda: _spin(0.004), lambda: (_spin(0.001), time.sleep(0.020))]
    config = TimingConfig(warmup=1, min_repeats=5, max_repeats=5, round_size=5, max_seconds=60)
    wall = measure_interleaved(fns, config, reference=0)
    assert wall.ratio_clock == "wall" and wall.cpu_times is None and wall.waited_share(1) is None
    assert wall.ratio(1, 0).ratio > 1.0
    cpu = measure_interleaved(fns, config, reference=0, thread_cpu=True)
    assert cpu.ratio_clock == "thread_cpu" and [len(t) for t in cpu.cpu_times] == [5, 5]
    assert cpu.ratio(1, 0).ratio == pytest.approx(0.25, rel=0.3)
    assert cpu.stats(1).median >= 0.020  # the latency itself stays wall time, the sleep included
    assert cpu.waited_share(1) > 0.7 and cpu.waited_share(1) > cpu.waited_share(0)


def test_the_reference_is_timed_again_for_points_added_later_without_a_new_row(models, tmp_path):
    timing = replace(FAST, remeasure_attempts=0)
    profile_models(
        {"full": models["full"]}, tmp_path, variants=["fp32"], batch_sizes=(1,), seq_lens=(8,), timing=timing
    )
    seen = []
    frame = profile_models(
        models, tmp_path, variants=["fp32"], batch_sizes=(1,), seq_lens=(8,), timing=timing, on_row=seen.append
    )
    assert [row.model for row in seen] == ["half"]  # the finished reference point is kept ...
    assert seen[0].interleaved_with == 2 and seen[0].latency_ratio is not None  # ... and timed beside it again
    assert len(frame) == 2


# --- the interval ---------------------------------------------------------------------------------------------


def test_interval_of_a_constructed_series():
    rng = np.random.default_rng(7)
    load = rng.uniform(1.0, 2.0, 60)  # each round slowed by load from elsewhere, up to 2x
    reference = 0.010 * load * (1 + 0.005 * rng.standard_normal(60))
    half = 0.005 * load * (1 + 0.005 * rng.standard_normal(60))
    found = ratio_interval(reference, half)
    assert found.low < 0.5 < found.high and found.high - found.low < 0.01  # paired rounds: the load cancels
    unpaired = ratio_interval(rng.permutation(reference), half)  # the same times, rounds no longer matched
    assert unpaired.high - unpaired.low > 5 * (found.high - found.low)
    exact = ratio_interval(reference, 0.5 * reference)
    assert exact.ratio == exact.low == exact.high == pytest.approx(0.5)
    assert ratio_interval(reference, reference * 1.25).ratio == pytest.approx(1.25)
    # a ratio that really varies from round to round gets an interval to show it
    wobbly = ratio_interval(reference, reference * np.where(np.arange(60) % 2, 0.4, 0.6))
    assert wobbly.low <= 0.5 <= wobbly.high and wobbly.high - wobbly.low > 0.05


def test_stable_means_the_ratio_is_known_to_the_target_not_that_the_mean_is_still():
    rng = np.random.default_rng(3)
    rounds = 80
    load = rng.uniform(1.0, 1.6, rounds)  # bursts from elsewhere hit both passes of a round
    stalls = np.where(rng.uniform(size=rounds) < 0.05, 4.0, 1.0)  # and rare stalls: a mean's error stays wide
    reference = 0.010 * load * stalls * (1 + 0.003 * rng.standard_normal(rounds))
    steady = 0.005 * load * stalls * (1 + 0.003 * rng.standard_normal(rounds))
    jumpy = 0.005 * load * stalls * rng.choice([0.5, 1.5], rounds)  # the ratio itself moves round to round
    times = [list(reference), list(steady), list(jumpy)]
    assert interval_stable(times, 1, reference=0, target=0.02)
    assert not interval_stable(times, 2, reference=0, target=0.02)
    assert not interval_stable([t[:2] for t in times], 1, reference=0, target=0.02)  # too few rounds to tell
    # the reference is judged on its median's interval: the load makes that wide here, a steady series not
    assert not interval_stable(times, 0, reference=0, target=0.02)
    assert interval_stable([list(0.010 * (1 + 0.003 * rng.standard_normal(rounds)))], 0, reference=0, target=0.02)
    median, low, high = median_interval(reference)
    assert low <= median <= high and median == pytest.approx(np.median(reference))


def test_interleaved_timing_stops_once_every_ratio_is_within_the_target():
    wobble = iter(np.random.default_rng(5).uniform(0.999, 1.001, 10_000))

    def timer(fn, n):  # a made-up clock: each callable returns its own latency, with a 0.1% wobble
        return [fn() * next(wobble) for _ in range(n)]

    config = TimingConfig(warmup=0, min_repeats=10, max_repeats=200, round_size=5, max_seconds=60)
    steady = measure_interleaved([lambda: 0.010, lambda: 0.004], config, timer=timer, reference=0)
    assert all(steady.stable) and steady.rounds < 30  # known within 2% long before the cap: stopped early
    swings = iter(np.random.default_rng(6).choice([0.5, 1.5], 10_000))
    jumpy = measure_interleaved([lambda: 0.010, lambda: 0.004 * next(swings)], config, timer=timer, reference=0)
    assert jumpy.stable == [True, False] and jumpy.rounds == 200  # its ratio never settles: timed to the cap
    with pytest.raises(ValueError, match="reference"):
        measure_interleaved([lambda: 0.010], config, timer=timer, reference=2)


# --- unstable points, again at the end ----------------------------------------------------------------------


def _flag_unstable(monkeypatch, variant: str, times: int | None):
    """Timing that reports ``variant`` unstable the first ``times`` times it is timed (None: always)."""
    real = profiler._Run._interleave
    calls = []

    def flaky(self, members, resident, point, reference):
        found = real(self, members, resident, point, reference)
        names = [spec.name for _, spec in members]
        calls.append(names)
        flagged = variant in names and (times is None or sum(variant in c for c in calls) <= times)
        stable = [not (flagged and name == variant) for name in names]  # the others: stable, whatever this CPU did
        return InterleavedTimes(found.times, found.warmup, stable)

    monkeypatch.setattr(profiler._Run, "_interleave", flaky)
    return calls


def test_an_unstable_point_is_measured_again_at_the_end_of_the_sweep(models, tmp_path, monkeypatch):
    calls = _flag_unstable(monkeypatch, "dynamic-int8", times=1)
    frame = profile_models(
        {"full": models["full"]}, tmp_path, variants=["fp32", "dynamic-int8"], batch_sizes=(1,), seq_lens=(8,),
        timing=FAST,
    )  # fmt: skip
    assert calls == [["fp32", "dynamic-int8"], ["fp32", "dynamic-int8"]]  # the sweep, then the re-measurement
    by = frame.set_index("variant")
    assert by.loc["dynamic-int8", "stable"] and by.loc["dynamic-int8", "remeasured"] == 1
    assert pd.isna(by.loc["fp32", "remeasured"])  # stable the first time: its row is the sweep's
    assert by.loc["dynamic-int8", "latency_ratio"] > 0
    record = json.loads((tmp_path / "machine.json").read_text())["sessions"][-1]
    assert record["unstable_points"] == 0
    # the machine is named: the CPU's identity and the flags that decide int8 / bf16 speed, as this CPU has them
    assert record["machine"] == machine_identity("cpu") and "speed_flags" in record["machine"]["cpu"]


def test_still_unstable_after_the_cap_stays_flagged_and_remeasure_unstable_tries_again(models, tmp_path, monkeypatch):
    calls = _flag_unstable(monkeypatch, "dynamic-int8", times=None)
    args = dict(variants=["fp32", "dynamic-int8"], seq_lens=(8,), timing=replace(FAST, remeasure_attempts=2))
    frame = profile_models({"full": models["full"]}, tmp_path, batch_sizes=(1,), **args)
    assert len(calls) == 3  # the sweep and two attempts
    by = frame.set_index("variant")
    assert not by.loc["dynamic-int8", "stable"] and by.loc["dynamic-int8", "remeasured"] == 2
    assert json.loads((tmp_path / "machine.json").read_text())["sessions"][-1]["unstable_points"] == 1
    stamp = by.loc["fp32", "timestamp"]

    calls.clear()
    again = profile_models({"full": models["full"]}, tmp_path, batch_sizes=(1,), **args)  # a plain rerun: capped
    assert calls == [] and again["timestamp"].equals(frame["timestamp"])

    again = profile_models({"full": models["full"]}, tmp_path, batch_sizes=(1, 2), remeasure_unstable=True, **args)
    assert len(calls) == 2 and len(again) == 2  # two more attempts; batch 2 is not measured: no new points
    by = again.set_index("variant")
    assert by.loc["dynamic-int8", "remeasured"] == 4 and by.loc["fp32", "timestamp"] == stamp
    sessions = json.loads((tmp_path / "machine.json").read_text())["sessions"]
    assert [s["what"] for s in sessions] == ["profiled", "re-measured unstable points"]  # the rerun timed nothing


def test_remeasure_unstable_from_the_cli(models, tmp_path, monkeypatch, capsys):
    out = tmp_path / "p"
    base = ["profile", "--model", "shape:bert-tiny", "--device", "cpu", "--out", str(out), "--variants", "fp32"]
    base += ["--batch-sizes", "1", "--seq-lens", "8", "--max-seconds", "0.05"]
    code, _, err = run_cli(base, monkeypatch, capsys)
    assert code == 0, err
    code, _, err = run_cli([*base, "--batch-sizes", "2", "--remeasure-unstable"], monkeypatch, capsys)
    assert code == 0, err
    assert pd.read_parquet(out / "profile.parquet")["batch_size"].tolist() == [1]  # nothing new measured
    line = cli_error([*base, "--remeasure-unstable", "--estimate"], monkeypatch, capsys)
    assert "--remeasure-unstable" in line and "--estimate" in line


# --- the machine's state ------------------------------------------------------------------------------------------


def _state(load=0.1, others=0.0, busy=()):
    return MachineState("t", (load, load, load), 2, 0.0, others, [BusyProcess(1, n, 1.0) for n in busy])


def test_load_warning():
    assert load_warning(_state(), _state(), threads=1) is None
    busy = load_warning(_state(), _state(others=1.2, busy=["burner"]), threads=1)
    assert busy.startswith("profiled under load") and "1.2 cores" in busy and "burner" in busy
    # The load average alone is no evidence: it trails, and inside 'prunebench run' it counts the run's own search.
    assert load_warning(_state(load=1.8), _state(), threads=1) is None
    loaded = load_warning(_state(load=1.8, others=0.6, busy=["burner"]), _state(), threads=1)
    assert "0.6 cores" in loaded and "load average was 1.80" in loaded and "2 cores" in loaded


def test_a_recorded_profile_call_is_judged_by_the_current_rule():
    from prunebench.hardware.machine import record_warning, session_record

    quiet = session_record(_state(load=1.01), _state(load=1.0), threads=1, what="profiled")
    quiet["warning"] = "profiled under load: the 1-minute load average was 1.01"  # what an earlier rule wrote
    assert record_warning(quiet) is None
    busy = session_record(_state(), _state(others=1.2, busy=["burner"]), threads=1, what="profiled")
    assert "burner" in record_warning(busy)
    assert record_warning({"warning": "old text"}) == "old text"  # no looks stored: the text as it was


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse avx avx2 avx512f avx512bw avx512_vnni avx512_bf16

processor\t: 1
vendor_id\t: AuthenticAMD
"""


def test_the_cpu_is_named_with_the_flags_that_decide_int8_and_bf16_speed(tmp_path):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    cpu = cpu_identity(tmp_path / "cpuinfo")
    assert (cpu["vendor"], cpu["family"], cpu["model"], cpu["model_name"]) == ("AuthenticAMD", "26", "2", "AMD EPYC")
    assert cpu["speed_flags"] == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]  # avx512bw is not one of them
    text = identity_text({"cpu": cpu})
    assert text == "AMD EPYC (AuthenticAMD family 26 model 2; avx2 avx512f avx512_vnni avx512_bf16)"
    gpu = {"name": "NVIDIA A10G", "memory_gib": 22.0, "driver": "550.54", "compute_capability": "8.6"}
    assert identity_text({"cpu": cpu, "gpu": gpu}) == "NVIDIA A10G (22.0 GiB, compute capability 8.6, driver 550.54)"


def test_a_gpu_is_named_with_its_memory_driver_and_compute_capability(monkeypatch):
    import types

    import torch

    import prunebench.hardware.machine as machine

    properties = types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=80 * 2**30, major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: properties)
    identity = machine.machine_identity("cuda:0")
    assert identity["gpu"]["name"] == "NVIDIA H100 80GB HBM3" and identity["gpu"]["memory_gib"] == 80.0
    assert identity["gpu"]["compute_capability"] == "9.0" and "speed_flags" in identity["cpu"]
    assert machine.identity_text(identity).startswith("NVIDIA H100 80GB HBM3 (80.0 GiB, compute capability 9.0")
