"""Roofline estimates: they scale the way hardware does, and every estimated row says it is one."""

from __future__ import annotations

import pytest
import torch

from prunebench.models import LoadedModel, load_model
from prunebench.models.adapters import adapter_for
from prunebench.models.shapes import shape_config
from prunebench.profiling import profile_models
from prunebench.profiling.estimate import NotEstimable, estimate
from prunebench.profiling.hardware import get_profile
from prunebench.profiling.subjects import subject_from_loaded
from prunebench.profiling.variants import VARIANTS, analytic_weight_bytes
from prunebench.supernet import extract, get_space


def _subjects(loaded: LoadedModel):
    """The full model and two sub-networks with 50% of the encoder: half the layers, or half of each layer."""
    space = get_space("small", loaded.dims)
    d = loaded.dims
    depth = {"num_layers": d.num_layers // 2, "num_heads": d.num_heads, "num_units": d.intermediate_size}
    width = {"num_layers": d.num_layers, "num_heads": d.num_heads // 2, "num_units": d.intermediate_size // 2}
    return (
        subject_from_loaded("full", loaded),
        subject_from_loaded("depth", extract(loaded, space.masks(depth))),
        subject_from_loaded("width", extract(loaded, space.masks(width))),
    )


@pytest.fixture(scope="module")
def tiny_subjects():
    return _subjects(load_model("shape:bert-tiny"))


@pytest.fixture(scope="module")
def base_subjects():
    """bert-base with meta tensors: shapes and counts without allocating or initialising 110M weights."""
    config = shape_config("bert-base")
    config.num_labels = 2
    adapter = adapter_for(config)
    with torch.device("meta"):
        model = adapter.model_class("classification")(config)
    return _subjects(LoadedModel(model.eval(), None, adapter, "shape:bert-base", "classification"))


@pytest.mark.parametrize("target", ["a10", "t4", "h100", "cpu"])
@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8", "nf4"])
def test_a_50_percent_subnetwork_is_estimated_faster(tiny_subjects, target, variant):
    full, half, _ = tiny_subjects
    profile = get_profile(target)
    # bert-tiny is mostly embeddings: "50%" is of the encoder
    assert half.cost.relative_encoder_parameters(half.masks) == pytest.approx(0.5)
    for batch in (1, 32):
        try:
            full_estimate = estimate(full, VARIANTS[variant], profile, batch, 128)
        except NotEstimable:
            assert (target, variant) == ("cpu", "fp16")  # the CPU profile has no fp16 arithmetic
            continue
        assert estimate(half, VARIANTS[variant], profile, batch, 128).latency_s < full_estimate.latency_s


def test_larger_batches_take_longer_per_batch_and_less_per_sequence(tiny_subjects, base_subjects):
    for subject, target in ((tiny_subjects[0], "cpu"), (base_subjects[0], "a10"), (base_subjects[0], "h100")):
        profile = get_profile(target)
        latencies = [
            estimate(subject, VARIANTS["fp16" if target != "cpu" else "fp32"], profile, b, 128).latency_s
            for b in (1, 8, 32, 128)
        ]
        assert latencies == sorted(latencies) and latencies[-1] > latencies[0], target
        per_sequence = [latency / b for latency, b in zip(latencies, (1, 8, 32, 128), strict=True)]
        assert per_sequence == sorted(per_sequence, reverse=True), target


def test_compute_bound_estimates_follow_the_mac_count(base_subjects):
    full, _, width = base_subjects
    t4 = get_profile("t4")
    big, small = (estimate(s, VARIANTS["fp32"], t4, 64, 256) for s in (full, width))
    assert width.cost.relative_encoder_parameters(width.masks) == pytest.approx(0.5, abs=0.01)
    assert big.bound == small.bound == "compute"
    assert small.latency_s == pytest.approx(big.latency_s * width.macs(256) / full.macs(256), rel=1e-9)
    assert small.latency_s < 0.6 * big.latency_s  # width pruning pays off once the GPU is busy


def test_estimated_memory_follows_weight_bytes(base_subjects):
    full = base_subjects[0]
    a10 = get_profile("a10")
    memory = {v: estimate(full, VARIANTS[v], a10, 8, 128).peak_memory_bytes for v in ("fp32", "fp16", "int8", "nf4")}
    assert memory["nf4"] < memory["int8"] < memory["fp16"] < memory["fp32"]
    fp16 = estimate(full, VARIANTS["fp16"], a10, 8, 128)
    assert fp16.weight_bytes == analytic_weight_bytes(full.loaded, VARIANTS["fp16"], "cuda") == 2 * full.parameters


def test_profiles_decide_what_cannot_be_estimated(tiny_subjects):
    full = tiny_subjects[0]
    with pytest.raises(NotEstimable, match="bf16 needs compute capability >= 8.0"):
        estimate(full, VARIANTS["bf16"], get_profile("v100"), 1, 128)
    with pytest.raises(NotEstimable, match="CPU only"):
        estimate(full, VARIANTS["dynamic-int8"], get_profile("a100"), 1, 128)
    with pytest.raises(NotEstimable, match="compute capability >= 7.5"):  # not run there, so not estimated
        estimate(full, VARIANTS["int8"], get_profile("v100"), 1, 128)
    assert estimate(full, VARIANTS["int8"], get_profile("a10"), 1, 128).matmul_dtype == "int8"
    # bitsandbytes' CPU LLM.int8 runs at about the fp32 rate; torch's dynamic int8 uses VNNI
    assert estimate(full, VARIANTS["int8"], get_profile("cpu"), 1, 128).matmul_dtype == "fp32"
    assert estimate(full, VARIANTS["dynamic-int8"], get_profile("cpu"), 1, 128).matmul_dtype == "int8"


def test_cpu_estimates_scale_with_threads(tiny_subjects):
    full = tiny_subjects[0]
    cpu = get_profile("cpu")
    one, four = (estimate(full, VARIANTS["fp32"], cpu, 32, 128, threads=t) for t in (1, 4))
    assert four.compute_s == pytest.approx(one.compute_s / 4) and four.latency_s < one.latency_s


def test_estimate_mode_marks_every_row(tmp_path):
    frame = profile_models(["shape:bert-tiny"], tmp_path, device="l4", estimate_only=True, batch_sizes=(1, 16))
    assert len(frame) == 2 * len(VARIANTS)
    assert (frame["mode"] == "estimated").all() and frame["estimated"].all()
    assert (frame["target"] == "l4").all() and frame["timer"].dropna().eq("roofline estimate").all()
    ok = frame[frame["status"] == "ok"]
    assert ok["est_bound"].notna().all() and ok["latency_p99_s"].isna().all()  # no spread is invented
    skipped = frame[frame["status"] == "skipped"]
    assert set(skipped["variant"]) == {"dynamic-int8"}
