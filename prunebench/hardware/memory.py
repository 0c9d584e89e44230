"""Peak resident memory of this process while a block runs (the CPU side of memory profiling).

What it gives is a GROWTH, not a footprint: the peak RSS during the block minus the RSS just
before it. Weights loaded before the block are in the baseline, not in the growth; the
baseline itself is the whole process (interpreter, libraries, every model loaded), so it is
no variant's size either. (The CUDA side, ``measure.py``, measures a total peak instead.)

Linux lets a process reset its high-water mark (``/proc/self/clear_refs``, value 5), so
the peak of one block can be read from ``VmHWM`` without a sampling thread. Before the
block, freed heap is handed back to the system (``malloc_trim``) so that memory kept
by the allocator from earlier points does not hide this point's growth. Where this is
not possible (not Linux, no permission), psutil samples the RSS every millisecond.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass
class PeakRss:
    """Filled in when the block exits. All three are of the whole process."""

    baseline_bytes: int = 0  # RSS just before the block
    peak_bytes: int = 0  # highest RSS during the block (a process total)
    method: str = ""

    @property
    def growth_bytes(self) -> int:
        """Peak minus baseline: what the block added on top of what was resident before it."""
        return max(0, self.peak_bytes - self.baseline_bytes)


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _trim_heap() -> None:
    # No gc.collect() here: with transformers loaded a full collection takes ~0.25 s per point;
    # callers collect once per variant (measure.release_memory) when large objects are dropped.
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


def _reset_high_water_mark() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def current_rss_bytes() -> int:
    return psutil.Process().memory_info().rss


@contextmanager
def peak_rss() -> Iterator[PeakRss]:
    """Measure the process's peak RSS during the block, and its RSS just before it."""
    _trim_heap()
    result = PeakRss()
    if _reset_high_water_mark():
        result.baseline_bytes, result.method = current_rss_bytes(), "VmHWM after clear_refs"
        try:
            yield result
        finally:
            result.peak_bytes = (_status_kib("VmHWM") or 0) * 1024
        return
    result.baseline_bytes, result.method = current_rss_bytes(), "psutil sampling every 1 ms"
    stop = threading.Event()
    peak = [result.baseline_bytes]

    def sample() -> None:
        process = psutil.Process()
        while not stop.wait(0.001):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        stop.set()
        sampler.join()
        result.peak_bytes = max(peak[0], current_rss_bytes())


# Allocation failures that surface as a plain RuntimeError: the caching allocator's own message,
# the CPU allocator's, and cuBLAS failing to allocate its handle or workspace when the device is
# full (torch raises "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`").
_OUT_OF_MEMORY_TEXTS = ("out of memory", "can't allocate memory", "cublas_status_alloc_failed")


def is_out_of_memory(error: BaseException) -> bool:
    """True for a device (CUDA) or host allocation failure, the errors a profile records and goes past."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(part in text for part in _OUT_OF_MEMORY_TEXTS)
