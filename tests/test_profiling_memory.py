"""Memory, on CPU: which errors count as out of memory, when memory is released, what is measured.

The CUDA errors are raised by a fake model, so the classification and the clean-up order are
checked without a GPU.
"""

from __future__ import annotations

import sys
import weakref

import pytest
import torch
from torch import nn

import prunebench.hardware.measure as measure
from prunebench.hardware.measure import Measurement, PointOutOfMemory, measure_point
from prunebench.hardware.memory import is_out_of_memory
from prunebench.hardware.timing import LatencyStats
from prunebench.hardware.variants import VARIANTS, BuiltVariant, LinearPlan
from prunebench.models import load_model
from prunebench.profiling import TimingConfig, profile_models

FAST = TimingConfig(warmup=0, min_repeats=2, max_repeats=2, round_size=2, max_seconds=0.1)
CUBLAS_ALLOC = "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"
TORCH_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.75 GiB total capacity)"


class Failing(nn.Module):
    """Allocates a tensor in its forward pass, then fails with a copy of ``error``; ``held`` tracks the tensor."""

    def __init__(self, error: BaseException):
        super().__init__()
        self.error_type, self.error_args = type(error), error.args  # a new exception per call, as torch raises
        self.held: list[weakref.ref] = []

    def forward(self, **inputs):
        activation = torch.ones(64, 64)
        self.held.append(weakref.ref(activation))
        raise self.error_type(*self.error_args)


def _built(model: nn.Module) -> BuiltVariant:
    return BuiltVariant(VARIANTS["fp32"], model, torch.device("cpu"), torch.float32, 0, LinearPlan((), {}))


@pytest.fixture(scope="module")
def tiny():
    return load_model("shape:bert-tiny")


@pytest.mark.parametrize(
    ("error", "oom"),
    [
        (torch.cuda.OutOfMemoryError(TORCH_OOM), True),
        (RuntimeError(CUBLAS_ALLOC), True),
        (RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"), True),
        (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"), True),
        (MemoryError(), True),
        (RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx`"), False),
        (RuntimeError("cublasLt ran into an error!"), False),
        (ValueError("out of memory"), False),  # only allocation errors of torch and Python count
    ],
)
def test_which_errors_are_out_of_memory(error, oom):
    assert is_out_of_memory(error) is oom


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError(TORCH_OOM), RuntimeError(CUBLAS_ALLOC)])
def test_out_of_memory_becomes_a_point_record(tiny, error):
    with pytest.raises(PointOutOfMemory) as raised:
        measure_point(_built(Failing(error)), tiny, 2, 8, FAST)
    assert str(raised.value) == str(error).splitlines()[0]


def test_other_errors_are_not_hidden(tiny):
    with pytest.raises(RuntimeError, match="EXECUTION_FAILED"):
        measure_point(_built(Failing(RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED"))), tiny, 2, 8, FAST)


def test_memory_is_released_after_the_failed_pass_is_gone(tiny, monkeypatch):
    """The clean-up runs once the exception, whose traceback frames hold the pass's tensors, is cleared."""
    model = Failing(torch.cuda.OutOfMemoryError(TORCH_OOM))
    seen = []

    def release(device):
        seen.append((sys.exc_info()[0], [ref() is None for ref in model.held]))

    monkeypatch.setattr(measure, "release_memory", release)
    with pytest.raises(PointOutOfMemory) as raised:
        measure_point(_built(model), tiny, 2, 8, FAST)
    assert seen == [(None, [True])]  # outside any except block, the failed pass's activation already freed
    # nothing chains the original error (and its frames) to the record
    assert raised.value.__context__ is None and raised.value.__cause__ is None


def test_profile_rows_say_oom_or_error(tmp_path, monkeypatch):
    errors = iter(
        [
            torch.cuda.OutOfMemoryError(TORCH_OOM),
            RuntimeError(CUBLAS_ALLOC),
            RuntimeError("CUBLAS_STATUS_NOT_SUPPORTED"),
        ]
    )
    monkeypatch.setattr(measure, "build_variant", lambda loaded, spec, device: _built(Failing(next(errors))))
    frame = profile_models(
        ["shape:bert-tiny"], tmp_path, variants=["fp32", "fp16", "bf16"], batch_sizes=(2,), seq_lens=(8,), timing=FAST
    )
    status = dict(zip(frame["variant"], frame["status"], strict=True))
    assert status == {"fp32": "oom", "fp16": "oom", "bf16": "error"}
    reasons = dict(zip(frame["variant"], frame["reason"], strict=True))
    assert "CUBLAS_STATUS_ALLOC_FAILED" in reasons["fp16"] and "NOT_SUPPORTED" in reasons["bf16"]


def test_growth_and_total_peak_are_told_apart(tiny):
    """CPU measures growth over the RSS before the passes; CUDA a total peak, from which growth follows."""

    class Allocating(nn.Module):
        def forward(self, **inputs):
            return torch.ones(2**20).sum()  # 4 MiB, freed again after each pass

    cpu = measure_point(_built(Allocating()), tiny, 2, 8, FAST)
    assert cpu.peak_growth_bytes == cpu.peak_rss_growth_bytes >= 0
    assert cpu.peak_total_bytes is None  # the process RSS is not the variant's footprint
    assert cpu.memory_method.startswith("growth:")
    stats = LatencyStats.from_times([0.1, 0.1], warmup=0)
    cuda = Measurement(stats, "cuda_events", torch_peak_allocated_bytes=900, torch_allocated_before_bytes=600)
    assert cuda.peak_total_bytes == 900 and cuda.peak_growth_bytes == 300
    assert Measurement(stats, "cuda_events", torch_peak_allocated_bytes=900).peak_growth_bytes is None


def test_onnx_runtime_memory_counts_its_working_memory_as_torch_does(tmp_path):
    pytest.importorskip("onnxruntime")
    loaded = load_model("shape:bert-tiny")
    frame = profile_models(
        {"full": loaded}, tmp_path, variants=["fp32", "onnx-fp32", "onnx-int8"], batch_sizes=[8], seq_lens=[128],
        timing=FAST, show_progress=False,
    ).set_index("variant")  # fmt: skip
    # the attention scores alone of one layer at batch 8 x 128 tokens, 2 heads: 8 * 2 * 128 * 128 fp32 = 1 MiB
    scores = 8 * 2 * 128 * 128 * 4
    for variant in ("fp32", "onnx-fp32", "onnx-int8"):
        row = frame.loc[variant]
        # one definition for every variant: exact weight bytes + peak RSS growth during the timed passes
        assert row["memory_bytes"] == row["weight_bytes"] + row["peak_rss_growth_bytes"]
        # ONNX Runtime's arena would keep the warm-up's working memory resident and show ~0 growth
        assert row["peak_rss_growth_bytes"] >= scores, (variant, row["peak_rss_growth_bytes"])
        assert row["memory_bytes"] > row["weight_bytes"] + scores
