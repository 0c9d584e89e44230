"""Roofline estimates of latency and memory on hardware that is not here.

For one forward pass of ``batch`` sequences of ``seq_len`` tokens:

- **work**: ``FLOPs = 2 * batch * MACs(seq_len)``, MACs from ``CostModel`` (exact for the
  sub-network: linear layers plus QK^T and AV);
- **traffic**: ``bytes = weight bytes + activation bytes``. Weight bytes are exact for the
  variant (``analytic_weight_bytes``). Activation bytes count each eager operator reading
  and writing its tensors once: per kept layer and token, ``16 * hidden + 8 * width + 4 * units``
  elements (width = kept heads x head size) of the compute dtype. Attention is taken as fused
  (PyTorch SDPA), so the ``seq x seq`` scores are not written out. Quantized linears add
  their own traffic: LLM.int8 reads/writes activations once more in int8 and fp16; 4-bit
  linears dequantize their weight to the compute dtype (written and read once per pass);
- **time**: ``compute = FLOPs / (peak(dtype) * compute_efficiency)`` and
  ``memory = bytes / (bandwidth * bandwidth_efficiency)``; the roofline time is the larger.
  Eager PyTorch also pays a host cost per operator (``op_overhead_us`` x operator count).
  On a GPU the host launches ahead of the device, so ``latency = max(roofline, host)``;
  on a CPU the same cores do both, so ``latency = roofline + host``;
- **memory**: ``weight bytes + the largest live activations`` (the FFN block's input,
  output and intermediate) plus, for 4-bit, the largest dequantized weight.

``peak(dtype)`` is the profile's dense datasheet figure for the dtype the matmuls run in:
fp32 runs on CUDA cores (PyTorch does not use TF32 for matmuls by default), fp16/bf16 on
tensor cores, LLM.int8 on int8 tensor cores where bitsandbytes supports them (compute
capability >= 7.5; else its fp16 fallback; on the CPU profile at the fp32 rate, as measured),
4-bit on the compute dtype after dequantizing.
A CPU profile's figures are per core and scale with the thread count.
Efficiencies and the operator cost are assumptions stored in the profile, not datasheet
figures; ``prunebench profile --calibrate`` measures how far the estimates are off.
Every number this module produces is an estimate and is marked so wherever it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prunebench.profiling.hardware import HardwareProfile
from prunebench.profiling.subjects import Subject
from prunebench.profiling.variants import (
    VariantSpec,
    analytic_weight_bytes,
    compute_dtype,
    int8_fallback_note,
    plan_linears,
    static_skip_reason,
)

# Activation elements read + written per token by one eager encoder layer (see module docstring).
HIDDEN_TRAFFIC, WIDTH_TRAFFIC, UNIT_TRAFFIC = 16, 8, 4
# Operators eager PyTorch dispatches, each paying the host cost: top-level aten ops counted with
# torch.profiler on transformers 5 BERT (23 per encoder layer, 20 outside it: embeddings, mask,
# pooler, head), and the extra cost of one quantized linear expressed in operators (timed on
# CPU with bert-tiny: LLM.int8 about 16, 4-bit about 6, torch dynamic int8 about 2).
OPS_PER_LAYER, OPS_OUTSIDE = 23, 20
EXTRA_OPS_PER_LINEAR = {"bnb-int8": 16, "bnb-nf4": 6, "bnb-fp4": 6, "torch-dynamic-int8": 2}


@dataclass(frozen=True)
class Estimate:
    latency_s: float
    compute_s: float
    memory_s: float
    overhead_s: float
    bound: str  # "compute", "memory" or "overhead": the term that sets the latency
    flops: float
    bytes_moved: float
    weight_bytes: int
    peak_memory_bytes: int
    matmul_dtype: str
    notes: tuple[str, ...] = ()


class NotEstimable(Exception):
    """The profile cannot say anything about this variant; the message says why."""


def _device_kind(profile: HardwareProfile) -> str:
    return "cuda" if profile.kind == "gpu" else "cpu"


def matmul_dtype(spec: VariantSpec, profile: HardwareProfile) -> str:
    """The data type whose peak throughput bounds the variant's matmuls on ``profile``."""
    if spec.quantization == "bnb-int8":
        if profile.bnb_int8_matmul == "native":
            return "int8"
        return "fp16" if profile.kind == "gpu" else "fp32"  # the fallback computes in the activation dtype
    if spec.quantization == "torch-dynamic-int8":
        return "int8"
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[
        compute_dtype(spec, _device_kind(profile))
    ]


def skip_reason(spec: VariantSpec, profile: HardwareProfile) -> str | None:
    reason = static_skip_reason(spec, _device_kind(profile), profile.compute_capability)
    if reason:
        return reason
    if spec.is_bnb and spec.quantization != "bnb-int8" and profile.bnb_four_bit != "supported":
        return f"bitsandbytes 4-bit is not supported on {profile.name} ({profile.bnb_source})"
    dtype = matmul_dtype(spec, profile)
    if profile.peak_flops(dtype) is None:
        return f"profile {profile.name} gives no {dtype} throughput (see {profile.path.name})"
    return None


def estimate(
    subject: Subject, spec: VariantSpec, profile: HardwareProfile, batch: int, seq_len: int, threads: int = 1
) -> Estimate:
    """Predict one forward pass of ``subject`` as ``spec`` on ``profile`` (see the module docstring)."""
    reason = skip_reason(spec, profile)
    if reason:
        raise NotEstimable(reason)
    kind = _device_kind(profile)
    dims = subject.loaded.dims
    act_bytes = torch.empty(0, dtype=compute_dtype(spec, kind)).element_size()
    scale = threads if profile.kind == "cpu" else 1  # CPU figures are per core
    dtype = matmul_dtype(spec, profile)
    sequences = batch * (2 if subject.loaded.task_kind == "multiple_choice" else 1)
    tokens = sequences * seq_len

    flops = 2.0 * sequences * subject.macs(seq_len)
    weight = analytic_weight_bytes(subject.loaded, spec, kind)
    kept = [(int(subject.masks.heads[i].sum()), int(subject.masks.units[i].sum())) for i in subject.masks.kept_layers()]
    activations = sum(
        tokens * (HIDDEN_TRAFFIC * dims.hidden_size + WIDTH_TRAFFIC * h * dims.head_size + UNIT_TRAFFIC * u)
        for h, u in kept
    )
    traffic = weight + activations * act_bytes + _quantization_traffic(subject, spec, kind, tokens, act_bytes)

    compute_s = flops / (profile.peak_flops(dtype) * profile.compute_efficiency * scale)
    memory_s = traffic / (profile.memory_bandwidth_gb_s.value * 1e9 * profile.bandwidth_efficiency * scale)
    plan = plan_linears(subject.loaded, spec, kind)
    ops = OPS_OUTSIDE + OPS_PER_LAYER * len(kept) + EXTRA_OPS_PER_LINEAR.get(spec.quantization, 0) * len(plan.quantized)
    overhead_s = ops * profile.op_overhead_us * 1e-6
    roofline = max(compute_s, memory_s)
    latency = max(roofline, overhead_s) if profile.kind == "gpu" else roofline + overhead_s
    if profile.kind == "gpu" and overhead_s >= roofline:
        bound = "overhead"
    else:
        bound = "compute" if compute_s >= memory_s else "memory"

    widest_units = max((u for _, u in kept), default=0)
    live = tokens * (3 * dims.hidden_size + widest_units) * act_bytes
    if spec.quantization in ("bnb-nf4", "bnb-fp4"):
        live += max((_linear_elements(subject, name) for name in plan.quantized), default=0) * act_bytes
    notes = tuple(note for note in [int8_fallback_note(plan)] if note)
    return Estimate(
        latency_s=latency,
        compute_s=compute_s,
        memory_s=memory_s,
        overhead_s=overhead_s,
        bound=bound,
        flops=flops,
        bytes_moved=float(traffic),
        weight_bytes=weight,
        peak_memory_bytes=int(weight + live),
        matmul_dtype=dtype,
        notes=notes,
    )


def _linear_elements(subject: Subject, name: str) -> int:
    return subject.loaded.model.get_submodule(name).weight.numel()


def _quantization_traffic(subject: Subject, spec: VariantSpec, kind: str, tokens: int, act_bytes: int) -> float:
    if not spec.is_quantized:
        return 0.0
    total = 0.0
    for name in plan_linears(subject.loaded, spec, kind).quantized:
        linear = subject.loaded.model.get_submodule(name)
        if spec.quantization in ("bnb-int8", "torch-dynamic-int8"):
            # quantize the input (read float, write int8), and an int32 accumulator written and read
            total += tokens * (linear.in_features * (act_bytes + 1) + linear.out_features * 8)
        else:  # 4-bit: the dequantized weight is written and read back in the compute dtype
            total += 2 * linear.weight.numel() * act_bytes
    return total
