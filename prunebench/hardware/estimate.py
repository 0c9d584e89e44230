"""Estimates of latency and memory on hardware that is not here: a roofline with a host term.

Everything this module returns is an ESTIMATE computed from a profile's figures
(``profiles/*.toml``), never a measurement; rows built from it say ``mode = "estimated"``
and ``prunebench profile --calibrate`` measures how far off it is. For one forward pass of
``batch`` sequences of ``seq_len`` tokens:

- **work**: ``FLOPs = 2 * batch * MACs(seq_len)``, MACs from ``CostModel`` (exact for the
  sub-network: linear layers plus QK^T and AV), split by the data type each matmul runs in:
  quantized linears in theirs (LLM.int8: int8 where bitsandbytes has int8 kernels; its
  linears whose input width is not a multiple of 4 in fp32, see below; 4-bit: the compute
  dtype after dequantizing; torch dynamic int8: int8), everything else (unquantized linears,
  attention products) in the activation dtype;
- **compute** = sum over data types of ``FLOPs / (peak(dtype) * efficiency(dtype))``.
  ``efficiency`` is the fraction of the datasheet peak eager PyTorch reaches over a whole
  pass, per data type and per GPU, from published measurements where there are some
  (``[compute_efficiency.*]`` in the profile says which). It is well below a roofline's usual
  50% for fp16 (T4 0.20, V100 0.32 measured) because BERT-base-sized matmuls and the kernels
  around them do not fill tensor cores;
- **traffic**: ``bytes = weight bytes + activation bytes``. Weight bytes are exact for the
  variant (``analytic_weight_bytes``). Activation bytes count each eager operator reading
  and writing its tensors once: per kept layer and token, ``16 * hidden + 8 * width + 4 * units``
  elements (width = kept heads x head size) of the compute dtype. Attention is taken as fused
  (PyTorch SDPA), so the ``seq x seq`` scores are not written out. Quantized linears add
  their own traffic: LLM.int8 finds outlier columns (``abs``, ``>=``, ``any``) and quantizes
  its input, and writes and reads an int32 accumulator; its fp32 fallback also casts both
  operands to fp32 and the result to int32; 4-bit linears dequantize their weight to the
  compute dtype (written and read once per pass). ``memory = bytes / (bandwidth * bandwidth_efficiency)``;
- **device** time is the roofline ``max(compute, memory)``;
- **host/launch** time: eager PyTorch pays a host cost per operator (``launch_overhead_us`` x
  operator count; the count is fixed by the model's structure, the cost by the host CPU and
  PyTorch version, so it differs by profile). On a GPU the host normally queues kernels ahead
  of the device, so ``latency = max(device, host)``: small batches are host/launch-bound and
  take the same time whatever the GPU's peak. LLM.int8 is the exception: every one of its
  linears reads back from the device whether the input has outliers (``if outliers.any()`` in
  bitsandbytes 0.50's ``int8_vectorwise_quant``), so the host waits for the device in every
  linear and ``latency = host + device``. On a CPU the same cores do both: ``host + device``;
- **bound** names the term that set the latency: ``host/launch`` when the host time is at
  least the device time, else ``compute`` or ``memory``, whichever is larger;
- **memory**: ``weight bytes + the largest live activations`` (the FFN block's input,
  output and intermediate) plus, for 4-bit, the largest dequantized weight.

LLM.int8 falls back to an fp32 matmul on CUDA for a linear whose input width is not a
multiple of 4 (``bitsandbytes/backends/cuda/ops.py``, 0.50): many pruned FFN output linears.
Those linears are estimated at the fp32 rate and counted in ``int8_fp32_fallback_linears``.

``peak(dtype)`` is the profile's dense datasheet figure: fp32 runs on CUDA cores (PyTorch
does not use TF32 for matmuls by default), fp16/bf16 on tensor cores, LLM.int8 on int8
tensor cores (compute capability >= 7.5; below that it is not run, so not estimated; on the
CPU profile at the fp32 rate, as measured). A CPU profile's figures are per core and scale
with the thread count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from prunebench.hardware.profiles import HardwareProfile
from prunebench.hardware.subject import Subject
from prunebench.hardware.variants import (
    LinearPlan,
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
# LLM.int8's fp32 fallback: two casts to fp32, the matmul, the cast to int32 and the copy into
# the output, in place of one cuBLASLt call (bitsandbytes 0.50 backends/cuda/ops.py).
EXTRA_OPS_PER_FP32_FALLBACK = 4
BOUNDS = ("host/launch", "memory", "compute")
_DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


@dataclass(frozen=True)
class Estimate:
    """A predicted forward pass. Every number is an estimate from a profile's figures, not a measurement."""

    latency_s: float
    compute_s: float  # matmul FLOPs at the profile's per-dtype efficiency
    memory_s: float  # traffic at the profile's bandwidth x efficiency
    overhead_s: float  # host/launch: eager operators x the profile's launch_overhead_us
    bound: str  # "host/launch", "memory" or "compute": the term that set the latency
    flops: float
    bytes_moved: float
    weight_bytes: int
    peak_memory_bytes: int
    matmul_dtype: str  # the data type of the (quantized) linears' matmuls
    notes: tuple[str, ...] = ()
    host_waits_for_device: bool = False  # True: host and device time add up (LLM.int8, any CPU)
    flops_by_dtype: dict[str, float] = field(default_factory=dict)
    int8_fp32_fallback_linears: int = 0  # LLM.int8 linears estimated at the fp32 rate (input width % 4)
    int8_fallback_weight_share: float | None = None  # their share of the quantized weights

    @property
    def device_s(self) -> float:
        """The device's roofline time, ``max(compute, memory)``."""
        return max(self.compute_s, self.memory_s)

    @property
    def host_s(self) -> float:
        return self.overhead_s

    def row_fields(self, batch: int) -> dict:
        """The profile row's fields of this estimate (``store.ProfileRow``; it derives latency and memory)."""
        int8 = self.int8_fallback_weight_share is not None  # set for LLM.int8 variants only
        return {
            "notes": "; ".join(self.notes) or None,
            "weight_bytes": self.weight_bytes,
            "latency_mean_s": self.latency_s,
            "latency_p50_s": self.latency_s,
            "throughput_seq_per_s": batch / self.latency_s,
            "timer": "roofline estimate",
            "est_peak_memory_bytes": self.peak_memory_bytes,
            "est_compute_s": self.compute_s,
            "est_memory_s": self.memory_s,
            "est_overhead_s": self.overhead_s,
            "est_bound": self.bound,
            "est_flops": self.flops,
            "est_bytes": self.bytes_moved,
            "est_matmul_dtype": self.matmul_dtype,
            "int8_fp32_fallback_linears": self.int8_fp32_fallback_linears if int8 else None,
            "int8_fallback_weight_share": self.int8_fallback_weight_share,
        }


class NotEstimable(Exception):
    """The profile cannot say anything about this variant; the message says why."""


def _device_kind(profile: HardwareProfile) -> str:
    return "cuda" if profile.kind == "gpu" else "cpu"


def matmul_dtype(spec: VariantSpec, profile: HardwareProfile) -> str:
    """The data type whose peak throughput bounds the variant's (quantized) linears on ``profile``."""
    if spec.quantization == "bnb-int8":
        if profile.bnb_int8_matmul == "native":
            return "int8"
        return "fp32" if profile.kind == "cpu" else "fp16"  # CPU: bitsandbytes' int8 matmul is an fp32 matmul
    if spec.quantization == "torch-dynamic-int8":
        return "int8"
    return _DTYPE_NAMES[compute_dtype(spec, _device_kind(profile))]


def skip_reason(spec: VariantSpec, profile: HardwareProfile) -> str | None:
    if spec.is_onnx:
        return "ONNX Runtime variants are measured, not estimated: the roofline models eager PyTorch's operators"
    reason = static_skip_reason(spec, _device_kind(profile), profile.compute_capability)
    if reason:
        return reason
    if spec.quantization == "bnb-int8" and profile.bnb_int8_matmul == "unsupported":
        return f"bitsandbytes LLM.int8 is not run on {profile.name} ({profile.bnb_source})"
    if spec.is_bnb and spec.quantization != "bnb-int8" and profile.bnb_four_bit != "supported":
        return f"bitsandbytes 4-bit is not supported on {profile.name} ({profile.bnb_source})"
    base = _DTYPE_NAMES[compute_dtype(spec, _device_kind(profile))]
    for dtype in dict.fromkeys((matmul_dtype(spec, profile), base)):
        if profile.peak_flops(dtype) is None:
            return f"profile {profile.name} gives no {dtype} throughput (see {profile.path.name})"
        if profile.efficiency(dtype) is None:
            return f"profile {profile.name} gives no {dtype} compute efficiency (see {profile.path.name})"
    return None


def estimate(
    subject: Subject, spec: VariantSpec, profile: HardwareProfile, batch: int, seq_len: int, threads: int = 1
) -> Estimate:
    """Estimate one forward pass of ``subject`` as ``spec`` on ``profile`` (see the module docstring)."""
    reason = skip_reason(spec, profile)
    if reason:
        raise NotEstimable(reason)
    kind = _device_kind(profile)
    gpu = profile.kind == "gpu"
    dims = subject.loaded.dims
    act_bytes = torch.empty(0, dtype=compute_dtype(spec, kind)).element_size()
    scale = threads if profile.kind == "cpu" else 1  # CPU figures are per core
    sequences = batch * (2 if subject.loaded.task_kind == "multiple_choice" else 1)
    tokens = sequences * seq_len
    plan = plan_linears(subject.loaded, spec, kind)
    fallback = set(plan.int8_fp32_fallback) if gpu else set()  # on the CPU every int8 matmul is fp32 anyway
    rows = _rows_per_linear(subject, plan, sequences, tokens)

    flops = 2.0 * sequences * subject.macs(seq_len)
    by_dtype = _flops_by_dtype(subject, spec, profile, plan, fallback, rows, flops)
    for dtype in by_dtype:
        if profile.peak_flops(dtype) is None or profile.efficiency(dtype) is None:
            raise NotEstimable(f"profile {profile.name} gives no {dtype} throughput or efficiency")
    compute_s = sum(f / (profile.peak_flops(d) * profile.efficiency(d) * scale) for d, f in by_dtype.items())

    weight = analytic_weight_bytes(subject.loaded, spec, kind)
    kept = [(int(subject.masks.heads[i].sum()), int(subject.masks.units[i].sum())) for i in subject.masks.kept_layers()]
    activations = sum(
        tokens * (HIDDEN_TRAFFIC * dims.hidden_size + WIDTH_TRAFFIC * h * dims.head_size + UNIT_TRAFFIC * u)
        for h, u in kept
    )
    traffic = weight + activations * act_bytes + _quantization_traffic(subject, spec, plan, fallback, rows, act_bytes)
    memory_s = traffic / (profile.memory_bandwidth_gb_s.value * 1e9 * profile.bandwidth_efficiency * scale)

    ops = OPS_OUTSIDE + OPS_PER_LAYER * len(kept) + EXTRA_OPS_PER_LINEAR.get(spec.quantization, 0) * len(plan.quantized)
    ops += EXTRA_OPS_PER_FP32_FALLBACK * len(fallback)
    host_s = ops * profile.launch_overhead_us.value * 1e-6
    device_s = max(compute_s, memory_s)
    serial = not gpu or spec.quantization == "bnb-int8"
    latency = host_s + device_s if serial else max(host_s, device_s)
    bound = "host/launch" if host_s >= device_s else ("compute" if compute_s >= memory_s else "memory")

    widest_units = max((u for _, u in kept), default=0)
    live = tokens * (3 * dims.hidden_size + widest_units) * act_bytes
    if spec.quantization in ("bnb-nf4", "bnb-fp4"):
        live += max((_linear(subject, name).weight.numel() for name in plan.quantized), default=0) * act_bytes
    note = int8_fallback_note(plan) if gpu else None
    return Estimate(
        latency_s=latency,
        compute_s=compute_s,
        memory_s=memory_s,
        overhead_s=host_s,
        bound=bound,
        flops=flops,
        bytes_moved=float(traffic),
        weight_bytes=weight,
        peak_memory_bytes=int(weight + live),
        matmul_dtype=matmul_dtype(spec, profile),
        notes=(note,) if note else (),
        host_waits_for_device=serial,
        flops_by_dtype=by_dtype,
        int8_fp32_fallback_linears=len(plan.int8_fp32_fallback),
        int8_fallback_weight_share=plan.int8_fallback_weight_share if spec.quantization == "bnb-int8" else None,
    )


def _linear(subject: Subject, name: str):
    return subject.loaded.model.get_submodule(name)


def _rows_per_linear(subject: Subject, plan: LinearPlan, sequences: int, tokens: int) -> dict[str, int]:
    """How many input rows each quantized linear sees: every token in the encoder, one per sequence outside it
    (pooler, head: ``CostModel`` counts them so)."""
    loaded = subject.loaded
    encoder = {id(module) for module in loaded.adapter.encoder_layers(loaded.model).modules()}
    return {name: tokens if id(_linear(subject, name)) in encoder else sequences for name in plan.quantized}


def _flops_by_dtype(
    subject: Subject,
    spec: VariantSpec,
    profile: HardwareProfile,
    plan: LinearPlan,
    fallback: set[str],
    rows: dict[str, int],
    flops: float,
) -> dict[str, float]:
    base = _DTYPE_NAMES[compute_dtype(spec, _device_kind(profile))]
    quantized = matmul_dtype(spec, profile)
    split: dict[str, float] = {}
    for name in plan.quantized:
        linear = _linear(subject, name)
        dtype = "fp32" if name in fallback else quantized
        split[dtype] = split.get(dtype, 0.0) + 2.0 * rows[name] * linear.in_features * linear.out_features
    split[base] = split.get(base, 0.0) + flops - sum(split.values())  # attention products, unquantized linears
    return {dtype: value for dtype, value in split.items() if value > 0}


def _quantization_traffic(
    subject: Subject, spec: VariantSpec, plan: LinearPlan, fallback: set[str], rows: dict[str, int], act_bytes: int
) -> float:
    total = 0.0
    for name in plan.quantized:
        linear = _linear(subject, name)
        n, k, m = rows[name], linear.in_features, linear.out_features
        if spec.quantization == "bnb-int8":
            # abs (read, write), >= threshold (read, write bool), any (read bool), quantize (read, write int8);
            # an int32 accumulator written and read
            total += n * (k * (4 * act_bytes + 3) + m * 8)
            if name in fallback:  # both operands cast to fp32 (read int8, write fp32); fp32 result cast to int32
                total += (n * k + m * k) * 5 + n * m * 8
        elif spec.quantization == "torch-dynamic-int8":
            total += n * (k * (act_bytes + 1) + m * 8)  # quantize the input, int32 accumulator
        else:  # 4-bit: the dequantized weight is written and read back in the compute dtype
            total += 2 * linear.weight.numel() * act_bytes
    return total
