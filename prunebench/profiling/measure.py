"""Measuring one point (variant, batch size, sequence length) on the CPU or a CUDA GPU.

CPU: ``perf_counter`` around each forward pass, at a fixed thread count set by the caller;
memory is the process's peak RSS growth during the passes (``memory.peak_rss``).

CUDA: the passes are timed with CUDA events (start/end recorded around each pass on the
device's stream, read after a synchronisation), after untimed warm-up passes; memory is
torch's peak allocated and reserved bytes over the passes, and the device's used memory
as NVML reports it (the whole GPU, other processes and the CUDA context included).

Both repeat passes until the mean is stable or a cap is reached (``TimingConfig``).
Running out of memory raises ``PointOutOfMemory`` so the caller can record the point and go on.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass

import torch

from prunebench.models import LoadedModel
from prunebench.profiling.memory import is_out_of_memory, peak_rss
from prunebench.profiling.timing import LatencyStats, TimingConfig, measure_until_stable
from prunebench.profiling.variants import BuiltVariant, quiet_bitsandbytes

NUM_CHOICES = 2  # multiple-choice models get this many choices per example


class PointOutOfMemory(Exception):
    """The device ran out of memory for this point; the message is the first line of the error."""


@dataclass(frozen=True)
class Measurement:
    latency: LatencyStats
    timer: str
    rss_bytes: int | None = None
    peak_rss_growth_bytes: int | None = None
    memory_method: str | None = None
    torch_peak_allocated_bytes: int | None = None
    torch_peak_reserved_bytes: int | None = None
    nvml_used_bytes: int | None = None


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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_point(
    built: BuiltVariant, loaded: LoadedModel, batch: int, seq_len: int, timing: TimingConfig
) -> Measurement:
    device = built.device
    try:
        inputs = make_inputs(loaded, batch, seq_len, device)

        def forward() -> object:
            return built.model(**inputs)

        with torch.inference_mode(), quiet_bitsandbytes():
            if device.type == "cuda":
                return _measure_cuda(forward, device, timing)
            return _measure_cpu(forward, timing)
    except Exception as error:  # only out-of-memory becomes a record; anything else is a bug to see
        if is_out_of_memory(error):
            release_memory(device)
            raise PointOutOfMemory(_first_line(error)) from None
        raise


def _measure_cpu(forward: Callable[[], object], timing: TimingConfig) -> Measurement:
    forward()  # one pass first, so one-time set-up (kernel caches, lazy packing) is not counted as this point's memory
    with peak_rss() as rss:
        stats = measure_until_stable(forward, timing)
    return Measurement(
        latency=stats,
        timer="perf_counter",
        rss_bytes=rss.baseline_bytes,
        peak_rss_growth_bytes=rss.growth_bytes,
        memory_method=rss.method,
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
    stats = measure_until_stable(forward, timing, timer=cuda_event_timer(device))
    torch.cuda.synchronize(device)
    return Measurement(
        latency=stats,
        timer="cuda_events",
        torch_peak_allocated_bytes=torch.cuda.max_memory_allocated(device),
        torch_peak_reserved_bytes=torch.cuda.max_memory_reserved(device),
        nvml_used_bytes=nvml_used_bytes(device),
        memory_method="torch.cuda.max_memory_allocated/reserved; NVML used",
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
