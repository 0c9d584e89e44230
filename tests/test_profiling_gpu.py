"""Measuring on a CUDA GPU: CUDA-event timing, torch/NVML memory, out-of-memory points. Skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from prunebench.config import TimingConfig
from prunebench.hardware.measure import PointOutOfMemory, measure_point
from prunebench.hardware.profiles import detect_devices, load_profiles
from prunebench.hardware.variants import VARIANTS, build_variant
from prunebench.models import load_model

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False here)"
)
FAST = TimingConfig(warmup=2, min_repeats=3, max_repeats=6, round_size=3, max_seconds=0.5)


@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8", "nf4"])
def test_cuda_measurement_uses_events_and_records_memory(variant):
    loaded = load_model("shape:bert-tiny")
    built = build_variant(loaded, VARIANTS[variant], "cuda")
    result = measure_point(built, loaded, 4, 32, FAST)
    stats = result.latency
    assert result.timer == "cuda_events"
    assert 0 < stats.minimum <= stats.median <= stats.p99 <= stats.maximum
    assert result.torch_peak_allocated_bytes >= built.weight_bytes
    assert result.torch_peak_reserved_bytes >= result.torch_peak_allocated_bytes
    if detect_devices().nvml_error is None:
        assert result.nvml_used_bytes >= result.torch_peak_reserved_bytes


def test_out_of_memory_on_the_gpu_is_reported_and_the_device_recovers():
    loaded = load_model("shape:bert-tiny")
    built = build_variant(loaded, VARIANTS["fp32"], "cuda")
    free, _ = torch.cuda.mem_get_info()
    filler = torch.empty(free - 64 * 2**20, dtype=torch.uint8, device="cuda")  # leave 64 MiB
    with pytest.raises(PointOutOfMemory, match="out of memory"):
        measure_point(built, loaded, 256, 512, FAST)  # one FFN activation alone is 128 MiB
    del filler
    assert measure_point(built, loaded, 2, 16, FAST).latency.repeats >= FAST.min_repeats


def test_this_gpu_has_a_profile_or_is_named_in_the_report():
    report = detect_devices()
    names = [gpu.name for gpu in report.gpus]
    assert names, report.nvml_error
    matched = [p.name for p in load_profiles().values() for name in names if p.matches(name)]
    print(f"GPUs {names}; profiles matching: {matched or 'none'}")


def test_cuda_memory_records_growth_and_total_peak():
    loaded = load_model("shape:bert-tiny")
    built = build_variant(loaded, VARIANTS["fp16"], "cuda")
    result = measure_point(built, loaded, 8, 64, FAST)
    assert result.torch_allocated_before_bytes >= built.weight_bytes  # weights and inputs, before the passes
    assert result.peak_total_bytes == result.torch_peak_allocated_bytes
    assert 0 < result.peak_growth_bytes < result.peak_total_bytes


@pytest.mark.parametrize("variant", ["fp16", "bf16", "int8", "nf4"])
def test_pruned_layers_of_different_sizes_run_on_cuda_with_padding_masked(variant):
    from helpers import token_batch
    from prunebench.extract import extract
    from prunebench.hardware.variants import VariantSkipped, quiet_bitsandbytes
    from prunebench.supernet import get_space

    loaded = load_model("shape:bert-tiny")
    uneven = {"num_heads_0": 3, "num_units_0": 37, "num_heads_1": 0, "num_units_1": 130}
    pruned = extract(loaded, get_space("medium", loaded.dims).masks(uneven))
    try:
        built = build_variant(pruned, VARIANTS[variant], "cuda")
    except VariantSkipped as reason:
        pytest.skip(str(reason))
    inputs = token_batch(pruned)
    changed = {k: v.clone() for k, v in inputs.items()}
    changed["input_ids"][0, inputs["attention_mask"][0] == 0] = 1500
    with torch.no_grad(), quiet_bitsandbytes():
        reference = pruned.model(**inputs).logits
        logits = built.model(**{k: v.cuda() for k, v in inputs.items()}).logits.float().cpu()
        moved = built.model(**{k: v.cuda() for k, v in changed.items()}).logits.float().cpu()
    assert torch.isfinite(logits).all() and (logits - reference).abs().max() < 0.05
    assert (moved[0] - logits[0]).abs().max() < 1e-3  # padded tokens stay hidden in the model's dtype
    if variant == "int8":  # the two FFN output linears (37 and 130 inputs) take bitsandbytes' fp32 path
        assert len(built.plan.int8_fp32_fallback) == 2
