"""Wall-clock latency of a callable on the CPU, with the statistics reports need."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LatencyStats:
    """Seconds per call over ``repeats`` timed calls after ``warmup`` untimed ones."""

    mean: float
    median: float
    stdev: float
    p90: float
    minimum: float
    repeats: int
    warmup: int

    @property
    def cv(self) -> float:
        """Coefficient of variation (stdev / mean)."""
        return self.stdev / self.mean if self.mean else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "cv": self.cv}


def measure_latency(fn: Callable[[], object], repeats: int = 10, warmup: int = 2) -> LatencyStats:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    ordered = sorted(times)
    return LatencyStats(
        mean=statistics.fmean(times),
        median=statistics.median(times),
        stdev=statistics.stdev(times) if len(times) > 1 else 0.0,
        p90=ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
        minimum=ordered[0],
        repeats=repeats,
        warmup=warmup,
    )
