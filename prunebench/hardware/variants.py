"""Model variants to profile: floating-point dtypes and quantized models, pruned or not.

A variant is built from a loaded fp32 model (un-pruned, or pruned by extraction) without
touching it. Quantization swaps ``nn.Linear`` modules for bitsandbytes' ``Linear8bitLt``
(LLM.int8) or ``Linear4bit`` (nf4/fp4) with the settings transformers' ``BitsAndBytesConfig``
uses by default (threshold 6.0, no double quantization), or applies torch's dynamic int8
quantization on CPU. Swapping modules, rather than re-loading through ``from_pretrained``,
works for pruned models too, whose layers differ in size; the tests check it gives the same
model as transformers' loader on an un-pruned one.

The family adapter names the head modules kept in floating point. On a CPU with AVX512-BF16,
bitsandbytes repacks 4-bit weights for a fast kernel that needs the output width to be a
multiple of 32 and the input width a multiple of 64; linears of other widths (pruned FFN
blocks) are told to use bitsandbytes' generic CPU path instead, so they are still 4-bit.

bitsandbytes' LLM.int8 computes a linear whose input width (the matmul's inner dimension) is
not a multiple of 4 with an fp32 matmul instead of its int8 kernel on CUDA (cuBLASLt cannot;
``bitsandbytes/backends/cuda/ops.py``, 0.50), which pruned FFN blocks often hit. ``plan_linears``
lists those linears and their share of the quantized weights, from the shapes alone, so the
figure is the same on a CPU (where bitsandbytes' int8 matmul is fp32 for every linear anyway).

ONNX Runtime variants (``onnx-fp32``, ``onnx-int8``: runtime ``onnxruntime``) are the model exported
with ``torch.onnx.export`` and run by an ONNX Runtime session behind the same call (``hardware.onnx``).

A combination that cannot run (bf16 below compute capability 8.0, LLM.int8 below 7.5, dynamic
int8 on a GPU, bitsandbytes or onnxruntime missing, a model the ONNX exporter refuses) raises
``VariantSkipped`` with the reason instead of failing later.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import logging
import math
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from prunebench.errors import UnknownNameError
from prunebench.extract import VERIFY_TOLERANCE
from prunebench.hardware.memory import is_out_of_memory
from prunebench.hardware.onnx import OPSET as ONNX_OPSET
from prunebench.hardware.onnx import OnnxExportFailed, OrtModule, initializer_bytes, onnx_model, verify_onnx
from prunebench.hardware.onnx import skip_reason as onnx_skip_reason
from prunebench.models.loaded import LoadedModel

CPU_4BIT_BLOCK_N = 32  # bitsandbytes' packed CPU 4-bit kernel works on blocks of 32 output rows...
BNB_4BIT_BLOCKSIZE = 64  # ...and reshapes the block scales per row, so inputs must fill whole 64-blocks
BNB_MIN_CAPABILITY = (6, 0)  # bitsandbytes 0.50 CUDA support (NF4/FP4)
BNB_INT8_MIN_CAPABILITY = (7, 5)  # LLM.int8 int8 tensor-core matmul (cuBLASLt igemmlt)
BNB_INT8_INNER_MULTIPLE = 4  # bitsandbytes 0.50 cuda/ops.py: inner dimension % 4 != 0 -> fp32 matmul
BF16_MIN_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class VariantSpec:
    name: str
    description: str
    dtype: torch.dtype | None  # the model's float dtype; None: the device's compute dtype (quantized variants)
    quantization: str | None  # None, "bnb-int8", "bnb-nf4", "bnb-fp4", "torch-dynamic-int8", "onnx-dynamic-int8"
    runtime: str = "torch"  # what runs it: "torch", or "onnxruntime" (an ONNX export in an ONNX Runtime session)

    @property
    def is_quantized(self) -> bool:
        return self.quantization is not None

    @property
    def is_bnb(self) -> bool:
        return bool(self.quantization and self.quantization.startswith("bnb-"))

    @property
    def is_onnx(self) -> bool:
        return self.runtime == "onnxruntime"


VARIANTS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in (
        VariantSpec("fp32", "float32 weights and activations", torch.float32, None),
        VariantSpec("fp16", "float16 weights and activations", torch.float16, None),
        VariantSpec("bf16", "bfloat16 weights and activations", torch.bfloat16, None),
        VariantSpec("int8", "bitsandbytes LLM.int8 linears (threshold 6.0)", None, "bnb-int8"),
        VariantSpec("nf4", "bitsandbytes 4-bit NormalFloat linears (blocksize 64)", None, "bnb-nf4"),
        VariantSpec("fp4", "bitsandbytes 4-bit float linears (blocksize 64)", None, "bnb-fp4"),
        VariantSpec("dynamic-int8", "torch dynamic int8 linears (CPU only)", None, "torch-dynamic-int8"),
        VariantSpec("onnx-fp32", "ONNX Runtime, fp32 (torch.onnx.export)", torch.float32, None, "onnxruntime"),
        VariantSpec(
            "onnx-int8", "ONNX Runtime dynamic int8 (quantize_dynamic)", None, "onnx-dynamic-int8", "onnxruntime"
        ),
    )
}


def get_variant(name: str) -> VariantSpec:
    try:
        return VARIANTS[name]
    except KeyError:
        raise UnknownNameError("variant", name, list(VARIANTS)) from None


def compute_dtype(spec: VariantSpec, device_kind: str) -> torch.dtype:
    """Activation dtype: quantized variants compute in fp16 on a GPU (the usual setting) and fp32 on CPU."""
    if spec.dtype is not None:
        return spec.dtype
    return torch.float16 if device_kind == "cuda" and spec.is_bnb else torch.float32


class VariantSkipped(Exception):
    """This variant cannot run on this device; the message says why."""


def static_skip_reason(spec: VariantSpec, device_kind: str, capability: tuple[int, int] | None) -> str | None:
    """Why ``spec`` cannot run on a device of this kind and compute capability (None: it can)."""
    if spec.quantization == "torch-dynamic-int8" and device_kind != "cpu":
        return "torch dynamic int8 quantization runs on CPU only"
    if device_kind == "cuda" and capability is not None:
        cc = f"{capability[0]}.{capability[1]}"
        if spec.dtype == torch.bfloat16 and capability < BF16_MIN_CAPABILITY:
            return f"bf16 needs compute capability >= 8.0; this GPU has {cc}"
        if spec.is_bnb and capability < BNB_MIN_CAPABILITY:
            return f"bitsandbytes 0.50 needs compute capability >= 6.0; this GPU has {cc}"
        if spec.quantization == "bnb-int8" and capability < BNB_INT8_MIN_CAPABILITY:
            # An estimate's answer; a measurement first tries it in a process of its own (runtime_skip_reason).
            return (
                f"bitsandbytes LLM.int8 needs compute capability >= 7.5 (int8 tensor cores); this GPU has {cc}. "
                "bitsandbytes 0.50 does not check it and older versions aborted the whole process"
            )
    return None


def int8_fallback_note(plan: LinearPlan) -> str | None:
    """The note for LLM.int8 linears that run an fp32 matmul on CUDA (see the module docstring)."""
    if not plan.int8_fp32_fallback:
        return None
    return (
        f"{len(plan.int8_fp32_fallback)} of {len(plan.quantized)} LLM.int8 linears "
        f"({plan.int8_fallback_weight_share:.0%} of their weights) have an input width that is not a multiple "
        f"of {BNB_INT8_INNER_MULTIPLE}: on CUDA bitsandbytes computes them with an fp32 matmul, not int8: "
        + ", ".join(plan.int8_fp32_fallback)
    )


def _bnb():
    """bitsandbytes, imported quietly (it logs about optional kernels it cannot fetch offline), or None."""
    with quiet_bitsandbytes():
        try:
            import bitsandbytes
        except (ImportError, RuntimeError):
            return None
    return bitsandbytes


@contextmanager
def quiet_bitsandbytes() -> Iterator[None]:
    """Silence bitsandbytes' per-call warnings (e.g. LLM.int8 casting fp32 inputs to fp16 on every matmul)."""
    logger = logging.getLogger("bitsandbytes")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="bitsandbytes")
            yield
    finally:
        logger.setLevel(level)


# Run in a process of its own (``isolated_int8_probe``): one LLM.int8 linear on the GPU, checked against fp32.
INT8_PROBE = """
import sys, torch, bitsandbytes as bnb
torch.manual_seed(0)
device = torch.device("cuda", int(sys.argv[1]))
linear = torch.nn.Linear(64, 64).half()
int8 = bnb.nn.Linear8bitLt(64, 64, has_fp16_weights=False, threshold=6.0)
int8.load_state_dict(linear.state_dict())
int8, linear = int8.to(device), linear.to(device)
x = torch.randn(8, 64, dtype=torch.float16, device=device)
got, want = int8(x).float(), linear(x).float()
torch.cuda.synchronize(device)
error = ((got - want).abs().max() / want.abs().max()).item()
assert error < 0.1, f"wrong results (largest error {error:.3g} of the largest output)"
print("ok")
"""


@functools.cache
def isolated_int8_probe(device_index: int, code: str = INT8_PROBE, timeout_s: float = 180.0) -> str | None:
    """None when one LLM.int8 linear ran correctly on GPU ``device_index`` in a separate Python process; else what
    happened, in words. A kernel that aborts (older bitsandbytes on compute capability 7.0) kills that process, not
    the sweep. Once per device and session."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(device_index)], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return f"did not finish within {timeout_s:.0f} s"
    if done.returncode == 0 and done.stdout.strip().endswith("ok"):
        return None
    if done.returncode < 0:
        return f"killed its process ({signal.Signals(-done.returncode).name})"
    last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return f"failed: {last[:300]}"


def runtime_skip_reason(spec: VariantSpec, device: torch.device) -> str | None:
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    old_gpu_int8 = spec.quantization == "bnb-int8" and capability is not None
    old_gpu_int8 = old_gpu_int8 and BNB_MIN_CAPABILITY <= capability < BNB_INT8_MIN_CAPABILITY
    reason = None if old_gpu_int8 else static_skip_reason(spec, device.type, capability)
    if reason:
        return reason
    # e.g. a V100: tried in a process of its own before bitsandbytes runs (or is even imported) in this one
    if old_gpu_int8 and importlib.util.find_spec("bitsandbytes") is not None:
        failed = isolated_int8_probe(device.index or 0)
        if failed:
            cc = f"{capability[0]}.{capability[1]}"
            return (
                f"bitsandbytes LLM.int8 on this GPU (compute capability {cc}, below the 7.5 its int8 kernels need), "
                f"tried in a separate process first, {failed}; not measured"
            )
    if spec.is_bnb:
        bnb = _bnb()
        if bnb is None:
            return "bitsandbytes is not installed (pip install bitsandbytes)"
        supported = getattr(bnb, "supported_torch_devices", {"cuda"})
        if device.type not in supported:
            return f"this bitsandbytes build does not support {device.type} (supports {', '.join(sorted(supported))})"
    if spec.quantization == "torch-dynamic-int8" and torch.backends.quantized.engine == "none":
        return "this torch build has no quantized CPU engine (fbgemm/x86/qnnpack) for dynamic int8"
    if spec.is_onnx:
        return onnx_skip_reason(device.type)
    return None


# ---------------------------------------------------------------------------------------------
# Which linears are quantized


def _skipped_by_name(name: str, skip: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in skip)


def _cpu_4bit_packing(device_kind: str) -> bool:
    """True where bitsandbytes will repack 4-bit weights for its AVX512-BF16 CPU kernel."""
    if device_kind != "cpu":
        return False
    bnb = _bnb()
    if bnb is None:
        return False
    has_avx512bf16 = getattr(bnb.functional, "has_avx512bf16", None)
    return bool(has_avx512bf16()) if has_avx512bf16 else True  # unknown: assume the constraint


@dataclass(frozen=True)
class LinearPlan:
    quantized: tuple[str, ...]
    kept: dict[str, str]  # linear name -> why it stays in floating point
    unpacked: tuple[str, ...] = ()  # 4-bit linears that must skip the packed CPU kernel (their shape does not fit)
    # LLM.int8 linears whose input width is not a multiple of 4: an fp32 matmul on CUDA (shapes only, any device)
    int8_fp32_fallback: tuple[str, ...] = ()
    quantized_weight_elements: int = 0
    fallback_weight_elements: int = 0

    @property
    def int8_fallback_weight_share(self) -> float | None:
        """Share of the quantized linears' weights in ``int8_fp32_fallback`` (None for other variants)."""
        if not self.quantized_weight_elements:
            return None
        return self.fallback_weight_elements / self.quantized_weight_elements


def int8_fallback_fields(spec: VariantSpec, plan: LinearPlan) -> dict:
    """The profile row's LLM.int8 fp32-fallback fields (None for other variants)."""
    if spec.quantization != "bnb-int8":
        return {"int8_fp32_fallback_linears": None, "int8_fallback_weight_share": None}
    return {
        "int8_fp32_fallback_linears": len(plan.int8_fp32_fallback),
        "int8_fallback_weight_share": plan.int8_fallback_weight_share,
    }


def plan_linears(loaded: LoadedModel, spec: VariantSpec, device_kind: str) -> LinearPlan:
    """Which ``nn.Linear`` modules ``spec`` quantizes on this kind of device, and why the others are kept."""
    if not spec.is_quantized or spec.is_onnx:  # ONNX Runtime's quantizer chooses its own nodes
        return LinearPlan((), {})
    skip = loaded.adapter.quantization_skip_modules
    packing = spec.quantization in ("bnb-nf4", "bnb-fp4") and _cpu_4bit_packing(device_kind)
    int8 = spec.quantization == "bnb-int8"
    quantized, kept, unpacked, fallback = [], {}, [], []
    quantized_elements = fallback_elements = 0
    for name, module in loaded.model.named_modules():
        if type(module) is not nn.Linear:
            continue
        if _skipped_by_name(name, skip):
            kept[name] = "task head (family adapter's quantization_skip_modules)"
        elif module.out_features == 0 or module.in_features == 0:
            kept[name] = "fully pruned (0-wide)"
        else:
            quantized.append(name)
            quantized_elements += module.weight.numel()
            if packing and (module.out_features % CPU_4BIT_BLOCK_N or module.in_features % BNB_4BIT_BLOCKSIZE):
                unpacked.append(name)
            if int8 and module.in_features % BNB_INT8_INNER_MULTIPLE:
                fallback.append(name)
                fallback_elements += module.weight.numel()
    return LinearPlan(tuple(quantized), kept, tuple(unpacked), tuple(fallback), quantized_elements, fallback_elements)


# ---------------------------------------------------------------------------------------------
# Building


@dataclass
class BuiltVariant:
    spec: VariantSpec
    model: nn.Module
    device: torch.device
    compute_dtype: torch.dtype
    weight_bytes: int
    plan: LinearPlan
    notes: list[str] = field(default_factory=list)


def _bnb_linear(bnb, linear: nn.Linear, spec: VariantSpec, dtype: torch.dtype) -> nn.Module:
    weight = linear.weight.data
    if spec.quantization == "bnb-int8":
        new = bnb.nn.Linear8bitLt(
            linear.in_features, linear.out_features, linear.bias is not None, has_fp16_weights=False, threshold=6.0
        )
        new.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    else:
        quant_type = spec.quantization.removeprefix("bnb-")
        new = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            linear.bias is not None,
            compute_dtype=dtype,
            compress_statistics=False,
            quant_type=quant_type,
        )
        new.weight = bnb.nn.Params4bit(
            weight, requires_grad=False, compress_statistics=False, quant_type=quant_type, module=new
        )
    if linear.bias is not None:
        new.bias = nn.Parameter(linear.bias.data, requires_grad=False)
    return new


def _dynamic_int8(model: nn.Module, names: tuple[str, ...]) -> nn.Module:
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao on every call
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, set(names), dtype=torch.qint8)


def build_variant(loaded: LoadedModel, spec: VariantSpec, device: torch.device | str = "cpu") -> BuiltVariant:
    """A new model: ``loaded`` in ``spec``'s form on ``device``; ``loaded`` itself is left as it is."""
    device = torch.device(device)
    reason = runtime_skip_reason(spec, device)
    if reason:
        raise VariantSkipped(reason)
    dtype = compute_dtype(spec, device.type)
    plan = plan_linears(loaded, spec, device.type)
    if spec.is_onnx:
        return _build_onnx(loaded, spec, device, plan)
    model = copy.deepcopy(loaded.model).to(dtype=dtype)  # cast before quantizing: bnb keeps int8 weights as int8
    try:
        if spec.is_bnb:
            bnb = _bnb()
            with quiet_bitsandbytes():
                for name in plan.quantized:
                    model.set_submodule(name, _bnb_linear(bnb, model.get_submodule(name), spec, dtype))
                for name in plan.unpacked:
                    # Linear4bit's switch for the packed AVX512-BF16 kernel; off, it dequantizes generically.
                    model.get_submodule(name).support_avx512bf16_for_cpu = False
                model = model.to(device)  # bitsandbytes quantizes when its parameters move to a device
        elif spec.quantization == "torch-dynamic-int8":
            model = _dynamic_int8(model, plan.quantized).to(device)
        else:
            model = model.to(device)
    except (RuntimeError, AssertionError, ValueError) as error:
        if is_out_of_memory(error):
            raise  # the caller records out-of-memory for each of the variant's points
        raise VariantSkipped(f"{spec.name} could not be built here: {_first_line(error)}") from None
    notes: list[str] = []
    if plan.kept and spec.is_quantized:
        notes.append(f"{len(plan.kept)} linear(s) kept in {_dtype_name(dtype)}: " + "; ".join(sorted(plan.kept)))
    fallback = int8_fallback_note(plan)
    if fallback:
        notes.append(fallback)
    if plan.unpacked:
        notes.append(
            f"{len(plan.unpacked)} linear(s) of widths outside {CPU_4BIT_BLOCK_N}x{BNB_4BIT_BLOCKSIZE} blocks "
            "use bitsandbytes' generic CPU 4-bit path"
        )
    return BuiltVariant(spec, model.eval(), device, dtype, weight_bytes(model), plan, notes)


def _build_onnx(loaded: LoadedModel, spec: VariantSpec, device: torch.device, plan: LinearPlan) -> BuiltVariant:
    """An ONNX Runtime session of ``loaded``'s export (``hardware.onnx``); an export that fails is skipped."""
    precision = "int8" if spec.quantization else "fp32"
    try:
        exported = onnx_model(loaded, precision)
    except OnnxExportFailed as reason:
        raise VariantSkipped(str(reason)) from None
    session = OrtModule(exported, device)
    difference = verify_onnx(loaded, precision)
    if precision == "fp32" and not difference <= VERIFY_TOLERANCE:
        raise VariantSkipped(
            f"the ONNX export's logits differ from PyTorch's by {difference:.3e} (> {VERIFY_TOLERANCE:g}) on real "
            "sentences; not profiled"
        )
    notes = [
        f"torch.onnx.export (dynamic axes, opset {ONNX_OPSET}), onnxruntime {_onnxruntime_version()}"
        + (" quantize_dynamic int8" if precision == "int8" else "")
        + f"; max |logit - PyTorch fp32| on real sentences {difference:.1e}"
    ]
    return BuiltVariant(spec, session.eval(), device, torch.float32, initializer_bytes(exported), plan, notes)


def _onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ---------------------------------------------------------------------------------------------
# Weight bytes


def _tensor_bytes(tensor: torch.Tensor | None) -> int:
    return 0 if tensor is None else tensor.numel() * tensor.element_size()


def _quant_state_bytes(state) -> int:
    """Bytes of a bitsandbytes 4-bit QuantState: block scales, code book and, when nested, their own state."""
    if state is None:
        return 0
    total = _tensor_bytes(state.absmax) + _tensor_bytes(state.code)
    if getattr(state, "state2", None) is not None:
        total += _quant_state_bytes(state.state2) + _tensor_bytes(getattr(state, "offset", None))
    return total


def weight_bytes(model: nn.Module) -> int:
    """Bytes the model's weights occupy: parameters plus quantization statistics.

    Counted from the tensors themselves: int8 weights with their per-row scales (LLM.int8),
    packed 4-bit weights with their block scales and code book, torch dynamic int8 weights
    (1 byte each, plus scale and zero point per tensor or channel) with their fp32 biases.
    A trimmed vocabulary's id lookup (``models.vocab``, int32) is counted; other buffers (position ids)
    and a backend's private packing copies are not.
    """
    total = 0
    for module in model.modules():
        for param in module.parameters(recurse=False):
            total += _tensor_bytes(param)
            total += _tensor_bytes(getattr(param, "SCB", None))  # LLM.int8 row scales
            total += _quant_state_bytes(getattr(param, "quant_state", None))
        if hasattr(module, "_packed_params") and callable(getattr(module, "weight", None)):
            total += _dynamic_quantized_bytes(module)
        total += _tensor_bytes(getattr(module, "vocab_map", None))  # a trimmed vocabulary's id lookup
    return total


def _dynamic_quantized_bytes(module: nn.Module) -> int:
    weight, bias = module.weight(), module.bias()
    if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        scales = weight.q_per_channel_scales().numel() * 8  # float64 scales, int64 zero points
    else:
        scales = 8
    return weight.numel() * weight.element_size() + scales + _tensor_bytes(bias)


def analytic_weight_bytes(loaded: LoadedModel, spec: VariantSpec, device_kind: str) -> int:
    """What ``weight_bytes`` of the built variant will be, from the fp32 model's shapes alone (no build).

    Not for ONNX Runtime variants: which tensors the exporter keeps and the quantizer turns into int8 is
    theirs to decide, so their weight bytes are counted on the export (``onnx.initializer_bytes``).
    """
    if spec.is_onnx:
        raise ValueError(f"{spec.name}: ONNX weight bytes are counted on the export, not from shapes")
    float_bytes = torch.empty(0, dtype=compute_dtype(spec, device_kind)).element_size()
    plan = plan_linears(loaded, spec, device_kind)
    quantized = set(plan.quantized)
    total = 0
    for name, module in loaded.model.named_modules():
        params = dict(module.named_parameters(recurse=False))
        total += _tensor_bytes(getattr(module, "vocab_map", None))
        if name not in quantized:
            total += sum(p.numel() for p in params.values()) * float_bytes
            continue
        rows, elements = module.out_features, module.weight.numel()
        bias = params.get("bias")
        if spec.quantization == "bnb-int8":
            total += elements + 4 * rows  # int8 weight, fp32 scale per row
        elif spec.quantization == "torch-dynamic-int8":
            total += elements + 8  # per-tensor scale and zero point
            float_bytes_bias = 4  # dynamic quantization keeps fp32 biases
            total += (bias.numel() * float_bytes_bias) if bias is not None else 0
            continue
        else:  # 4-bit: two weights per byte, one fp32 scale per 64-weight block, a 16-entry fp32 code book
            total += math.ceil(elements / 2) + 4 * math.ceil(elements / BNB_4BIT_BLOCKSIZE) + 16 * 4
        total += bias.numel() * float_bytes if bias is not None else 0
    return total
