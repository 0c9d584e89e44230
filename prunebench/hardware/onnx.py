"""ONNX Runtime variants: a loaded model exported to ONNX, optionally int8-quantized, run by ONNX Runtime.

Export goes through ``torch.onnx.export`` (the TorchScript-based exporter, ``dynamo=False``: on the 2-core
development machine it exports a tiny BERT in about 2 s where the ``torch.export`` path takes about 16 s,
and both give the same logits) with dynamic batch and sequence axes, so one export serves every point
of the grid. A pruned model whose layers differ in size exports like any other: the exporter traces the
modules as they are. ``onnx-int8`` is ONNX Runtime's own dynamic quantization
(``onnxruntime.quantization.quantize_dynamic``, int8 weights, activations quantized per call) of that
export; nothing in the graph is edited by hand.

The session is wrapped in ``OrtModule``, an ``nn.Module`` that takes the same keyword inputs as the
PyTorch model and returns its logits, so timing (``measure.py``), memory and test-split scoring run it
exactly as they run every other variant. Inputs go from torch to NumPy without a copy on the CPU.

Weight bytes of an ONNX variant are the bytes of the graph's initializers (weights, biases, int8 weights
with their scales and zero points; the vocabulary lookup of a trimmed model); ONNX Runtime's private
pre-packed copies are not counted, as torch's are not for the other variants.

Exports are kept per loaded model for the life of the process (``_EXPORTS``), so profiling (which builds
a variant twice: memory, then interleaved timing) and scoring export each model once.

Where ONNX Runtime is missing, or a GPU has no CUDA execution provider, ``skip_reason`` says so and the
variant is a ``skipped`` row; a model the exporter refuses raises ``OnnxExportFailed`` with its reason.
On a GPU with the CUDA provider the variants are skipped too, for now: ONNX Runtime's CUDA memory is not
visible to torch's allocator, which the GPU memory definition reads (``measure.py``).
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from prunebench.models.loaded import LoadedModel

OPSET = 17
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"

_EXPORTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {"fp32": bytes, "int8": bytes}


class OnnxExportFailed(Exception):
    """The exporter or the quantizer refused the model; the message is its reason."""


def skip_reason(device_kind: str) -> str | None:
    """Why ONNX Runtime variants cannot run on this kind of device here (None: they can)."""
    missing = [name for name in ("onnxruntime", "onnx") if not _importable(name)]
    if missing:
        return (
            f"{' and '.join(missing)} not installed (pip install 'prunebench[onnx]' or pip install {' '.join(missing)})"
        )
    import onnxruntime

    if device_kind == "cuda" and CUDA_PROVIDER not in onnxruntime.get_available_providers():
        have = ", ".join(onnxruntime.get_available_providers())
        return f"this onnxruntime build has no {CUDA_PROVIDER} (it has {have}); install onnxruntime-gpu"
    if device_kind == "cuda":
        # Not yet: ONNX Runtime's CUDA arena is outside torch's allocator, so the GPU memory definition
        # (torch's peak allocated bytes) would report the inputs only. Honest rows rather than a wrong number.
        return (
            f"ONNX Runtime on a GPU ({CUDA_PROVIDER}) is not profiled yet: its memory lives outside torch's "
            "allocator, which prunebench's GPU memory is measured with; profile the ONNX variants on the CPU"
        )
    return None


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def input_names(loaded: LoadedModel) -> list[str]:
    """The model inputs in the family's layout (the order of the exported graph's inputs)."""
    names = ["input_ids", "attention_mask"]
    return names + ["token_type_ids"] if loaded.adapter.uses_token_type_ids else names


class _LogitsOnly(nn.Module):
    """The model with positional inputs and its logits as the one output: what the exporter traces."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True))).logits


def _example_inputs(loaded: LoadedModel) -> tuple[torch.Tensor, ...]:
    ids = torch.full((2, 8), 1000 if loaded.model.config.vocab_size > 2000 else 5, dtype=torch.long)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    shaped = [inputs[name] for name in input_names(loaded)]
    if loaded.task_kind == "multiple_choice":
        shaped = [t.unsqueeze(1).expand(-1, 2, -1).contiguous() for t in shaped]
    return tuple(shaped)


def export_onnx(loaded: LoadedModel) -> bytes:
    """``loaded`` (fp32, on the CPU) as an ONNX model with dynamic batch (and choice) and sequence axes."""
    names = input_names(loaded)
    sequence_axis = 2 if loaded.task_kind == "multiple_choice" else 1
    axes = {name: {0: "batch", sequence_axis: "sequence"} for name in names}
    if sequence_axis == 2:
        axes = {name: {**axes[name], 1: "choices"} for name in names}
    model = _LogitsOnly(loaded.model, names).eval()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's tracer and deprecation warnings
            torch.onnx.export(
                model,
                _example_inputs(loaded),
                buffer,
                input_names=names,
                output_names=["logits"],
                dynamic_axes={**axes, "logits": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as error:  # the exporter raises many kinds; each is the model's reason, not a bug here
        raise OnnxExportFailed(f"torch.onnx.export could not export the model: {_first_line(error)}") from None
    return buffer.getvalue()


def quantize_int8(fp32_model: bytes) -> bytes:
    """ONNX Runtime's dynamic int8 quantization (int8 weights, activations quantized per call) of an export."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()  # the quantizer advises pre-processing on the root logger at every call
    level = root.level
    root.setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="prunebench-onnx-") as folder:
        source, target = Path(folder) / "model.onnx", Path(folder) / "model-int8.onnx"
        source.write_bytes(fp32_model)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        except Exception as error:
            raise OnnxExportFailed(f"onnxruntime quantize_dynamic failed: {_first_line(error)}") from None
        finally:
            root.setLevel(level)
        return target.read_bytes()


def onnx_model(loaded: LoadedModel, precision: str) -> bytes:
    """The ``precision`` ("fp32" or "int8") ONNX model of ``loaded``, exported once per model in this process."""
    cache = _EXPORTS.setdefault(loaded.model, {})
    if "fp32" not in cache:
        cache["fp32"] = export_onnx(loaded)
    if precision == "int8" and "int8" not in cache:
        cache["int8"] = quantize_int8(cache["fp32"])
    return cache[precision]


def initializer_bytes(model: bytes) -> int:
    """Bytes of the graph's initializers (weights, biases, quantization scales and zero points)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(model).graph
    return sum(numpy_helper.to_array(tensor).nbytes for tensor in graph.initializer)


class OrtModule(nn.Module):
    """An ONNX Runtime session that is called like the PyTorch model: keyword inputs in, ``.logits`` out."""

    def __init__(self, model: bytes, device: torch.device, threads: int | None = None):
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()  # the thread count torch runs with
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        # No CPU arena: ONNX Runtime then frees its working memory after each run, as torch does, so the peak RSS
        # growth during the timed passes counts its activations exactly as it counts torch's (store.MEMORY_DEFINITION).
        # With the arena, what the warm-up pass took stays resident and the passes seem to need nothing.
        options.enable_cpu_mem_arena = False
        providers = [CUDA_PROVIDER, CPU_PROVIDER] if device.type == "cuda" else [CPU_PROVIDER]
        self.session = onnxruntime.InferenceSession(model, sess_options=options, providers=providers)
        self.names = [node.name for node in self.session.get_inputs()]
        self.device = device

    def forward(self, **inputs: torch.Tensor) -> SequenceClassifierOutput:
        feed = {name: _numpy(inputs[name]) for name in self.names}
        (logits,) = self.session.run(["logits"], feed)
        return SequenceClassifierOutput(logits=torch.from_numpy(logits).to(self.device))


def verify_onnx(loaded: LoadedModel, precision: str = "fp32") -> float:
    """The largest absolute logit difference, ONNX Runtime against PyTorch, on real sentence pairs (padded)."""
    from prunebench.extract import verification_batch

    batch = verification_batch(loaded)
    session = OrtModule(onnx_model(loaded, precision), torch.device("cpu"))
    with torch.no_grad():
        reference = loaded.model(**batch).logits
    return (session(**batch).logits - reference).abs().max().item()


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.int64).numpy()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
