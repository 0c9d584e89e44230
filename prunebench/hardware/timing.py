"""Latency of a callable, with the statistics reports need.

``measure_latency`` times a fixed number of calls with ``perf_counter``.
``measure_until_stable`` keeps timing in rounds until the mean is stable (its
standard error is a small fraction of it) or a cap on calls or seconds is reached;
it takes any timer, so the CUDA path can time with CUDA events instead. When to stop is a
``config.TimingConfig``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from prunebench.config import TimingConfig

# A timer runs ``fn`` ``n`` times and returns the seconds each call took.
Timer = Callable[[Callable[[], object], int], list[float]]


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
    p99: float = math.nan
    maximum: float = math.nan
    stable: bool | None = None  # None: a fixed number of calls, no stability rule applied

    @property
    def cv(self) -> float:
        """Coefficient of variation (stdev / mean)."""
        return self.stdev / self.mean if self.mean else 0.0

    @property
    def relative_sem(self) -> float:
        """Standard error of the mean, relative to the mean."""
        return self.cv / math.sqrt(self.repeats) if self.repeats else math.inf

    def to_dict(self) -> dict:
        return {**asdict(self), "cv": self.cv}

    @classmethod
    def from_times(cls, times: Sequence[float], warmup: int, stable: bool | None = None) -> LatencyStats:
        if not times:
            raise ValueError("no timed calls")
        ordered = sorted(times)
        return cls(
            mean=statistics.fmean(times),
            median=statistics.median(times),
            stdev=statistics.stdev(times) if len(times) > 1 else 0.0,
            p90=_percentile(ordered, 0.90),
            minimum=ordered[0],
            repeats=len(times),
            warmup=warmup,
            p99=_percentile(ordered, 0.99),
            maximum=ordered[-1],
            stable=stable,
        )


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (no interpolation: a value that was observed)."""
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def perf_counter_timer(fn: Callable[[], object], n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def measure_latency(fn: Callable[[], object], repeats: int = 10, warmup: int = 2) -> LatencyStats:
    for _ in range(warmup):
        fn()
    return LatencyStats.from_times(perf_counter_timer(fn, repeats), warmup)


def measure_until_stable(
    fn: Callable[[], object], config: TimingConfig = TimingConfig(), timer: Timer = perf_counter_timer
) -> LatencyStats:
    """Time ``fn`` in rounds until the mean is stable or a cap is reached; ``stable`` says which."""
    for _ in range(config.warmup):
        fn()
    times: list[float] = []
    started = time.perf_counter()
    stable = False
    while len(times) < config.max_repeats:
        times += timer(fn, min(config.round_size, config.max_repeats - len(times)))
        if len(times) >= config.min_repeats:
            stats = LatencyStats.from_times(times, config.warmup)
            if stats.relative_sem <= config.target_relative_sem:
                stable = True
                break
        if time.perf_counter() - started >= config.max_seconds and len(times) >= 2:
            break
    return LatencyStats.from_times(times, config.warmup, stable=stable)
