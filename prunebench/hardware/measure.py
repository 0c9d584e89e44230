"""Measuring one point (variant, batch size, sequence length) on the CPU or a CUDA GPU.

CPU: ``perf_counter`` around each forward pass, at a fixed thread count set by the caller.
CUDA: CUDA events recorded around each pass on the device's stream, read after a
synchronisation, after untimed warm-up passes. Both repeat passes until the mean is stable
or a cap is reached (``TimingConfig``).

Memory: two different quantities, and each device measures one of them directly:

- **growth** (what running the passes adds on top of what was resident before them:
  activations, workspaces, allocator growth; the weights are *not* in it). CPU:
  ``peak_rss_growth_bytes``, the process's peak RSS during the passes minus its RSS just
  before (``memory.peak_rss``). CUDA: ``torch_peak_allocated_bytes - torch_allocated_before_bytes``.
- **total peak** (everything live at the peak: weights, inputs, activations, workspaces).
  CUDA: ``torch_peak_allocated_bytes`` (tensors this process allocated through torch),
  ``torch_peak_reserved_bytes`` (plus what torch's caching allocator holds), and
  ``nvml_used_bytes`` (the whole device: other processes and the CUDA context included).
  CPU: not measured as such; ``rss_bytes`` is the RSS of the whole process (interpreter,
  libraries, every loaded model) before the passes, not the variant's footprint.

So a CPU growth and a CUDA total peak are not the same thing; ``Measurement.peak_growth_bytes``
and ``Measurement.peak_total_bytes`` name them, and the weights' own size is ``weight_bytes``
of the built variant.

Running out of memory raises ``PointOutOfMemory`` so the caller can record the point and go on.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from prunebench.config import TimingConfig
from prunebench.hardware.memory import is_out_of_memory, peak_rss
from prunebench.hardware.timing import (
    InterleavedTimes,
    LatencyStats,
    measure_interleaved,
    measure_until_stable,
    perf_counter_timer,
)
from prunebench.hardware.variants import BuiltVariant, build_variant, quiet_bitsandbytes
from prunebench.models import LoadedModel

NUM_CHOICES = 2  # multiple-choice models get this many choices per example


class PointOutOfMemory(Exception):
    """The device ran out of memory for this point; the message is the first line of the error."""


@dataclass(frozen=True)
class Measurement:
    """One measured point. Memory fields: see the module docstring (growth vs total peak)."""

    latency: LatencyStats
    timer: str
    # CPU
    rss_bytes: int | None = None  # process RSS just before the passes: the whole process, a baseline
    peak_rss_growth_bytes: int | None = None  # GROWTH: peak RSS during the passes minus rss_bytes
    memory_method: str | None = None
    # CUDA
    torch_peak_allocated_bytes: int | None = None  # TOTAL PEAK of torch-allocated tensors (weights included)
    torch_peak_reserved_bytes: int | None = None  # total peak held by torch's caching allocator
    nvml_used_bytes: int | None = None  # the whole device after the passes, other processes included
    torch_allocated_before_bytes: int | None = None  # allocated when the passes started (weights, inputs)

    @property
    def peak_growth_bytes(self) -> int | None:
        """What the passes added on top of what was resident before them (weights excluded), on either device."""
        if self.peak_rss_growth_bytes is not None:
            return self.peak_rss_growth_bytes
        if self.torch_peak_allocated_bytes is not None and self.torch_allocated_before_bytes is not None:
            return max(0, self.torch_peak_allocated_bytes - self.torch_allocated_before_bytes)
        return None

    @property
    def peak_total_bytes(self) -> int | None:
        """Everything live at the peak (weights, inputs, activations): measured on CUDA only, None on CPU."""
        return self.torch_peak_allocated_bytes

    def row_fields(self, batch: int) -> dict:
        """The profile row's fields of this measurement (``store.ProfileRow``; it derives latency and memory)."""
        return latency_fields(self.latency, batch) | {
            "timer": self.timer,
            "rss_bytes": self.rss_bytes,
            "peak_rss_growth_bytes": self.peak_rss_growth_bytes,
            "memory_method": self.memory_method,
            "torch_peak_allocated_bytes": self.torch_peak_allocated_bytes,
            "torch_peak_reserved_bytes": self.torch_peak_reserved_bytes,
            "nvml_used_bytes": self.nvml_used_bytes,
            "peak_memory_growth_bytes": self.peak_growth_bytes,
            "peak_memory_total_bytes": self.peak_total_bytes,
        }


def latency_fields(stats: LatencyStats, batch: int) -> dict:
    """The profile row's latency fields of timed passes (``store.ProfileRow``)."""
    return {
        "latency_mean_s": stats.mean,
        "latency_p50_s": stats.median,
        "latency_p90_s": stats.p90,
        "latency_p99_s": stats.p99,
        "latency_min_s": stats.minimum,
        "latency_max_s": stats.maximum,
        "latency_std_s": stats.stdev,
        "latency_cv": stats.cv,
        "repeats": stats.repeats,
        "warmup": stats.warmup,
        "stable": stats.stable,
        "throughput_seq_per_s": batch / stats.mean,
    }


def make_inputs(loaded: LoadedModel, batch: int, seq_len: int, device: torch.device, seed: int = 0) -> dict:
    """Random token ids (no padding: every position is real work) in the family's input layout."""
    generator = torch.Generator().manual_seed(seed)
    vocab = loaded.model.config.vocab_size
    low = 1000 if vocab > 2000 else 5  # clear of special tokens in BERT/RoBERTa vocabularies
    ids = torch.randint(low, vocab, (batch, seq_len), generator=generator)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if loaded.adapter.uses_token_type_ids:
        inputs["token_type_ids"] = torch.zeros_like(ids)
    if loaded.task_kind == "multiple_choice":
        inputs = {k: v.unsqueeze(1).expand(-1, NUM_CHOICES, -1).contiguous() for k, v in inputs.items()}
    return {k: v.to(device) for k, v in inputs.items()}


@contextmanager
def collecting_only_new_objects() -> Iterator[None]:
    """Within: what was alive on entry is out of the garbage collector's sight (``gc.freeze``).

    A full collection scans every live object: with torch and transformers imported that is about 0.25 s,
    and measuring and scoring release memory between every two variants. What was alive on entry is held by
    the caller or the imports, so it needs no scan; on exit it is given back to the collector (``unfreeze``).
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def release_memory(device: torch.device) -> None:
    gc.collect()  # cheap inside collecting_only_new_objects(): it scans what the measurements created
    if device.type == "cuda":
        torch.cuda.empty_cache()


def build_or_out_of_memory(loaded: LoadedModel, spec, device: torch.device) -> tuple[BuiltVariant | None, str]:
    """The variant built on ``device``, or (None, why) when building it ran out of memory.

    Memory is released after the except block: inside it, the exception's traceback still holds the
    failed allocations. ``VariantSkipped`` and any other error propagate.
    """
    try:
        return build_variant(loaded, spec, device), ""
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    release_memory(device)
    return None, reason


def measure_point(
    built: BuiltVariant, loaded: LoadedModel, batch: int, seq_len: int, timing: TimingConfig
) -> Measurement:
    """Time ``built`` on one (batch, sequence length) point; out of memory raises ``PointOutOfMemory``."""
    device = built.device
    try:
        return _measure(built, loaded, batch, seq_len, timing)
    except Exception as error:  # only out-of-memory becomes a record; anything else is a bug to see
        if not is_out_of_memory(error):
            raise
        message = _first_line(error)
    # Released here, not in the except block: until the block ends, the exception's traceback keeps
    # the failed pass's frames, and with them its inputs and activations, alive, so emptying the CUDA
    # cache there frees nothing. Raised here, the record does not chain the error (and its frames) either.
    release_memory(device)
    raise PointOutOfMemory(message)


def _measure(built: BuiltVariant, loaded: LoadedModel, batch: int, seq_len: int, timing: TimingConfig) -> Measurement:
    device = built.device
    inputs = make_inputs(loaded, batch, seq_len, device)

    def forward() -> object:
        return built.model(**inputs)

    with torch.inference_mode(), quiet_bitsandbytes():
        if device.type == "cuda":
            return _measure_cuda(forward, device, timing)
        return _measure_cpu(forward, timing)


def _measure_cpu(forward: Callable[[], object], timing: TimingConfig) -> Measurement:
    forward()  # one pass first, so one-time set-up (kernel caches, lazy packing) is not counted as this point's memory
    with peak_rss() as rss:
        stats = measure_until_stable(forward, timing)
    return Measurement(
        latency=stats,
        timer="perf_counter",
        rss_bytes=rss.baseline_bytes,
        peak_rss_growth_bytes=rss.growth_bytes,
        memory_method=f"growth: peak RSS minus RSS before the passes ({rss.method}); weights excluded",
    )


def cuda_event_timer(device: torch.device) -> Callable[[Callable[[], object], int], list[float]]:
    """A timer for ``measure_until_stable``: CUDA events around each pass, read once per round."""

    def timer(fn: Callable[[], object], n: int) -> list[float]:
        stream = torch.cuda.current_stream(device)
        pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        torch.cuda.synchronize(device)  # nothing queued from earlier rounds or warm-up lands in this one
        for start, end in pairs:
            start.record(stream)
            fn()
            end.record(stream)
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) / 1e3 for start, end in pairs]  # milliseconds -> seconds

    return timer


def _measure_cuda(forward: Callable[[], object], device: torch.device, timing: TimingConfig) -> Measurement:
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)  # the variant's weights and this point's inputs
    stats = measure_until_stable(forward, timing, timer=cuda_event_timer(device))
    torch.cuda.synchronize(device)
    return Measurement(
        latency=stats,
        timer="cuda_events",
        torch_peak_allocated_bytes=torch.cuda.max_memory_allocated(device),
        torch_peak_reserved_bytes=torch.cuda.max_memory_reserved(device),
        nvml_used_bytes=nvml_used_bytes(device),
        torch_allocated_before_bytes=before,
        memory_method="total peak: torch.cuda.max_memory_allocated/reserved (weights included); NVML used",
    )


def nvml_used_bytes(device: torch.device) -> int | None:
    """Used memory of the GPU behind ``device`` as NVML reports it, or None without NVML."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        # torch and NVML may number GPUs differently (CUDA_VISIBLE_DEVICES, ordering); the PCI bus id
        # is the same in both, the index is the fallback.
        handle = None
        bus_id = _torch_pci_bus_id(device)
        if bus_id:
            try:
                handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)
            except pynvml.NVMLError:
                handle = None
        if handle is None:
            handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    except pynvml.NVMLError:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _torch_pci_bus_id(device: torch.device) -> str | None:
    props = torch.cuda.get_device_properties(device)
    domain, bus, dev = (getattr(props, name, None) for name in ("pci_domain_id", "pci_bus_id", "pci_device_id"))
    if bus is None or dev is None:
        return None
    return f"{domain or 0:08x}:{bus:02x}:{dev:02x}.0"


def time_interleaved(
    members: Sequence[tuple[BuiltVariant, LoadedModel]],
    batch: int,
    seq_len: int,
    timing: TimingConfig,
    reference: int | None = None,
) -> InterleavedTimes:
    """Latency of several built variants at one point, timed in interleaved rounds (``measure_interleaved``).

    Every variant must be on the same device. Memory is not measured here: with several variants resident,
    the device's peak (CUDA) and the RSS growth (CPU, where freed heap is reused) would mix them up, so
    ``measure_point`` measures it with one variant resident. Out of memory raises ``PointOutOfMemory``.
    ``reference``: the index of the member the others' ratios are to (it sets the stability rule).
    """
    devices = {built.device for built, _ in members}
    if len(devices) != 1:
        raise ValueError(f"interleaved variants must share one device, got {sorted(map(str, devices))}")
    device = devices.pop()
    try:
        forwards = []
        for built, loaded in members:
            inputs = make_inputs(loaded, batch, seq_len, device)
            forwards.append(lambda model=built.model, inputs=inputs: model(**inputs))
        timer = cuda_event_timer(device) if device.type == "cuda" else perf_counter_timer
        # One CPU thread does all the work (ONNX Runtime's sessions take torch's thread count too), so that
        # thread's CPU time is the pass without the time other processes took the core away: ratios use it.
        thread_cpu = device.type == "cpu" and torch.get_num_threads() == 1
        with torch.inference_mode(), quiet_bitsandbytes():
            return measure_interleaved(forwards, timing, timer=timer, reference=reference, thread_cpu=thread_cpu)
    except Exception as error:  # as in measure_point: only out-of-memory becomes a record
        if not is_out_of_memory(error):
            raise
        message = _first_line(error)
    forwards = []
    release_memory(device)
    raise PointOutOfMemory(message)
