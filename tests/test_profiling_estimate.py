"""Estimates (roofline + host/launch): they scale the way hardware does, match the published measurements
their figures come from, and every estimated row says it is one."""

from __future__ import annotations

import pytest
import torch

from prunebench.extract import extract
from prunebench.hardware.estimate import BOUNDS, OPS_OUTSIDE, OPS_PER_LAYER, NotEstimable, estimate
from prunebench.hardware.profiles import get_profile, load_profiles
from prunebench.hardware.subject import subject_from_loaded
from prunebench.hardware.variants import VARIANTS, analytic_weight_bytes
from prunebench.models import LoadedModel, load_model
from prunebench.models.adapters import adapter_for
from prunebench.models.shapes import shape_config
from prunebench.profiling import profile_models
from prunebench.supernet import get_space


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
    assert half.cost.encoder_fraction(half.masks) == pytest.approx(0.5)
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
    assert width.cost.encoder_fraction(width.masks) == pytest.approx(0.5, abs=0.01)
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
    frame = profile_models(["shape:bert-tiny"], tmp_path, target="l4", estimate_only=True, batch_sizes=(1, 16))
    assert len(frame) == 2 * len(VARIANTS)
    assert (frame["mode"] == "estimated").all() and frame["estimated"].all()
    assert (frame["target"] == "l4").all() and frame["timer"].dropna().eq("roofline estimate").all()
    ok = frame[frame["status"] == "ok"]
    assert ok["est_bound"].notna().all() and ok["latency_p99_s"].isna().all()  # no spread is invented
    skipped = frame[frame["status"] == "skipped"]
    assert set(skipped["variant"]) == {"dynamic-int8", "onnx-fp32", "onnx-int8"}  # ONNX Runtime: measured only


# Published eager-PyTorch latencies (ms) of a BERT-base encoder at sequence 128 that the T4 and V100
# efficiencies were derived from (NVIDIA DeepLearningExamples FasterTransformer/v2.1/README.md).
PUBLISHED = {
    ("t4", "fp32"): {32: 194.06, 64: 387.92, 128: 866.38},
    ("t4", "fp16"): {32: 54.19, 64: 105.75, 128: 218.95},
    ("v100", "fp32"): {32: 66.40, 64: 130.69, 128: 257.29},
    ("v100", "fp16"): {32: 18.61, 64: 35.18, 128: 67.42},
}


@pytest.mark.parametrize(("target", "variant"), list(PUBLISHED))
def test_estimates_reproduce_the_published_measurements_behind_the_figures(base_subjects, target, variant):
    full = base_subjects[0]
    for batch, milliseconds in PUBLISHED[(target, variant)].items():
        result = estimate(full, VARIANTS[variant], get_profile(target), batch, 128)
        assert result.bound == "compute"
        assert result.latency_s * 1e3 == pytest.approx(milliseconds, rel=0.10), batch


def test_efficiency_figures_are_sourced_and_fp16_is_well_below_half_of_peak():
    for profile in load_profiles().values():
        assert profile.launch_overhead_us.value > 0 and profile.launch_overhead_us.source, profile.name
        for dtype, figure in profile.compute_efficiency.items():
            assert 0 < figure.value <= 1 and figure.source.startswith(("derived", "assumed")), (profile.name, dtype)
        if profile.kind == "gpu":
            assert set(profile.peak_tflops) - {"tf32"} == set(profile.compute_efficiency), profile.name
            for dtype in ("fp16", "bf16"):
                if dtype in profile.compute_efficiency:
                    assert profile.efficiency(dtype) < 0.5, (profile.name, dtype)  # eager reaches 20-30%
    for target in ("t4", "v100"):  # the two with published measurements say where they come from
        figures = get_profile(target).compute_efficiency.values()
        assert all("FasterTransformer/v2.1" in f.source for f in figures if f.source.startswith("derived"))


@pytest.mark.parametrize("variant", ["fp16", "fp32"])
def test_bound_switches_from_host_launch_to_compute_as_batch_grows(base_subjects, variant):
    full, t4 = base_subjects[0], get_profile("t4")
    results = [estimate(full, VARIANTS[variant], t4, batch, 128) for batch in (1, 2, 4, 8, 16, 32, 64, 128)]
    bounds = [r.bound for r in results]
    assert set(bounds) <= set(BOUNDS)
    assert bounds[0] == "host/launch" and bounds[-1] == "compute"
    first_compute = bounds.index("compute")
    assert set(bounds[:first_compute]) == {"host/launch"} and set(bounds[first_compute:]) == {"compute"}
    # launch-bound: the batch-1 latency is the host's operator count x its per-operator cost
    operators = OPS_OUTSIDE + OPS_PER_LAYER * 12
    assert results[0].latency_s == pytest.approx(operators * t4.launch_overhead_us.value * 1e-6)


def test_batch_1_is_launch_bound_and_differs_by_host_not_by_peak(base_subjects):
    full = base_subjects[0]
    batch_1 = {t: estimate(full, VARIANTS["fp16"], get_profile(t), 1, 128) for t in ("t4", "v100", "a100", "h100")}
    assert {r.bound for r in batch_1.values()} == {"host/launch"}
    latencies = {t: r.latency_s for t, r in batch_1.items()}
    assert latencies["t4"] > latencies["v100"] > latencies["h100"]  # the hosts of the measurements differ
    assert latencies["a100"] == latencies["h100"]  # the same assumed host: the GPU's peak does not matter here


def test_llm_int8_host_and_device_time_add_up(base_subjects):
    """bitsandbytes synchronises in every int8 linear (outlier detection), so the host cannot run ahead."""
    full, t4 = base_subjects[0], get_profile("t4")
    for batch in (1, 32, 128):
        int8 = estimate(full, VARIANTS["int8"], t4, batch, 128)
        assert int8.host_waits_for_device
        assert int8.latency_s == pytest.approx(int8.overhead_s + max(int8.compute_s, int8.memory_s))
        assert int8.latency_s > max(int8.overhead_s, int8.device_s)
        for other in ("fp16", "nf4"):  # these queue kernels ahead: the larger of the two
            result = estimate(full, VARIANTS[other], t4, batch, 128)
            assert not result.host_waits_for_device
            assert result.latency_s == pytest.approx(max(result.overhead_s, result.device_s))
        fp16 = estimate(full, VARIANTS["fp16"], t4, batch, 128)
        assert int8.latency_s > fp16.latency_s  # LLM.int8 is slower than fp16 at BERT-base size


def test_llm_int8_linears_of_odd_input_width_are_estimated_at_fp32(base_subjects):
    """bitsandbytes runs an fp32 matmul for an int8 linear whose input width is not a multiple of 4."""
    full = base_subjects[0]
    space = get_space("small", full.loaded.dims)
    odd, even = (
        subject_from_loaded(
            str(units), extract(full.loaded, space.masks({"num_layers": 12, "num_heads": 12, "num_units": units}))
        )
        for units in (3071, 3072)
    )
    t4, tokens = get_profile("t4"), 32 * 128
    odd_int8, even_int8 = (estimate(s, VARIANTS["int8"], t4, 32, 128) for s in (odd, even))
    assert odd_int8.int8_fp32_fallback_linears == 12 and even_int8.int8_fp32_fallback_linears == 0
    assert odd_int8.flops_by_dtype["fp32"] == 2.0 * tokens * 3071 * 768 * 12  # the FFN output linears
    assert "fp32" not in even_int8.flops_by_dtype
    quantized = 12 * (4 * 768 * 768 + 2 * 3071 * 768) + 768 * 768  # encoder linears and the pooler
    assert odd_int8.int8_fallback_weight_share == pytest.approx(12 * 3071 * 768 / quantized)
    assert any("fp32 matmul" in note for note in odd_int8.notes)
    # one unit fewer, yet a third of the int8 matmul work now runs at the fp32 rate
    assert odd_int8.compute_s > 1.5 * even_int8.compute_s
    # other variants and the CPU (where every bitsandbytes int8 matmul is fp32) are unaffected
    odd_fp16, even_fp16 = (estimate(s, VARIANTS["fp16"], t4, 32, 128) for s in (odd, even))
    assert odd_fp16.compute_s < even_fp16.compute_s and odd_fp16.int8_fp32_fallback_linears == 0
    cpu = get_profile("cpu")
    odd_cpu, even_cpu = (estimate(s, VARIANTS["int8"], cpu, 1, 128) for s in (odd, even))
    assert odd_cpu.int8_fp32_fallback_linears == 12 and odd_cpu.compute_s < even_cpu.compute_s
