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


# -- interleaved timing ----------------------------------------------------------------------------------------

CONFIDENCE = 0.95  # of every latency ratio's interval
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # the same rounds give the same interval


@dataclass(frozen=True)
class RatioInterval:
    """A point's median latency over the reference's, both timed in the same rounds, with a bootstrap interval."""

    ratio: float
    low: float
    high: float


WALL_CLOCK = "wall"
THREAD_CPU_CLOCK = "thread_cpu"


@dataclass(frozen=True)
class InterleavedTimes:
    """What ``measure_interleaved`` timed: ``times[i][r]`` is the wall seconds of callable ``i`` in round ``r``.

    ``cpu_times[i][r]``, where recorded, is the CPU time the calling thread spent in that same pass. Ratios are
    taken on it then (``ratio_clock``): with one thread doing all the work, a pass's CPU time is what its wall
    time would be if no other process had taken the core away, so time-slicing with a busy neighbour (which
    stretches short and long passes unequally) does not move the ratio. Latencies stay wall time.
    """

    times: list[list[float]]
    warmup: int
    stable: list[bool]  # per callable: its mean met the stability rule (``TimingConfig.target_relative_sem``)
    cpu_times: list[list[float]] | None = None

    @property
    def rounds(self) -> int:
        return len(self.times[0]) if self.times else 0

    @property
    def ratio_clock(self) -> str:
        return WALL_CLOCK if self.cpu_times is None else THREAD_CPU_CLOCK

    def stats(self, index: int) -> LatencyStats:
        return LatencyStats.from_times(self.times[index], self.warmup, stable=self.stable[index])

    def ratio(self, index: int, reference: int) -> RatioInterval:
        clock = self.times if self.cpu_times is None else self.cpu_times
        return ratio_interval(clock[reference], clock[index])

    def cpu_median(self, index: int) -> float | None:
        return statistics.median(self.cpu_times[index]) if self.cpu_times is not None else None

    def waited_share(self, index: int) -> float | None:
        """The share of callable ``index``'s timed wall time in which its thread was not running (time-sliced
        with other work, or blocked): 0 on a quiet machine; None where no CPU time was recorded."""
        if self.cpu_times is None:
            return None
        wall = math.fsum(self.times[index])
        return max(0.0, 1.0 - math.fsum(self.cpu_times[index]) / wall) if wall > 0 else 0.0


def interleaved_order(count: int, rounds: int) -> list[int]:
    """Which callable runs when: 0, 1, ..., count-1, then again, round after round (A B C A B C ...).

    Interleaving makes a burst of load from elsewhere land on every callable alike, so their ratio holds
    even when each one's absolute latency moves; timing A A A, then B B B puts a burst on one of them only.
    """
    return [index for _ in range(rounds) for index in range(count)]


def measure_interleaved(
    fns: Sequence[Callable[[], object]],
    config: TimingConfig = TimingConfig(),
    timer: Timer = perf_counter_timer,
    reference: int | None = None,
    thread_cpu: bool = False,
) -> InterleavedTimes:
    """Time ``fns`` in interleaved rounds (one pass of each per round, in ``interleaved_order``).

    Stops once every callable is stable after ``min_repeats`` rounds, or at ``max_repeats`` rounds, or after
    ``max_seconds`` per callable (so a group takes as long as its points would one after another). Warm-up
    passes are interleaved too. With a ``reference`` (an index into ``fns``), stable is ``interval_stable``;
    without one, each mean's standard error (``target_relative_sem``). ``thread_cpu``: also record each
    pass's CPU time on this thread (``time.thread_time``), and judge ratios and their stability on it; only
    meaningful when the callables do all their work on the calling thread (one CPU thread, no GPU).
    """
    if not fns:
        raise ValueError("nothing to time")
    if reference is not None and not 0 <= reference < len(fns):
        raise ValueError(f"reference {reference} is not one of the {len(fns)} callables")
    for index in interleaved_order(len(fns), config.warmup):
        fns[index]()
    times: list[list[float]] = [[] for _ in fns]
    cpu_times: list[list[float]] | None = [[] for _ in fns] if thread_cpu else None
    started = time.perf_counter()
    budget = config.max_seconds * len(fns)
    stable = [False] * len(fns)
    checked_at = 0
    while len(times[0]) < config.max_repeats:
        rounds = min(config.round_size, config.max_repeats - len(times[0]))
        for index in interleaved_order(len(fns), rounds):
            cpu_started = time.thread_time()
            times[index] += timer(fns[index], 1)
            if cpu_times is not None:
                cpu_times[index].append(time.thread_time() - cpu_started)
        done = len(times[0])
        judged = times if cpu_times is None else cpu_times
        # The interval costs a bootstrap per callable: judged again once the rounds grew by a quarter, so
        # the checks take a small, fixed share of the timing.
        if done >= config.min_repeats and (done >= 1.25 * checked_at or done >= config.max_repeats):
            checked_at = done
            stable = _stability(judged, config, reference)
            if all(stable):
                break
        if time.perf_counter() - started >= budget and done >= 2:
            break
    if len(times[0]) >= 2 and checked_at != len(times[0]):
        stable = _stability(times if cpu_times is None else cpu_times, config, reference)
    return InterleavedTimes(times, config.warmup, stable, cpu_times)


def _stability(times: list[list[float]], config: TimingConfig, reference: int | None) -> list[bool]:
    if reference is None:
        return [LatencyStats.from_times(t, config.warmup).relative_sem <= config.target_relative_sem for t in times]
    return [interval_stable(times, index, reference, config.target_relative_interval) for index in range(len(times))]


def interval_stable(times: Sequence[Sequence[float]], index: int, reference: int, target: float) -> bool:
    """Whether callable ``index`` is known well enough: the 95% interval of its ratio to the ``reference``
    (of the reference's own median, for the reference) lies within ``target`` either side of the figure."""
    if len(times[index]) < 3:
        return False
    if index == reference:
        median, low, high = median_interval(times[index])
    else:
        found = ratio_interval(times[reference], times[index])
        median, low, high = found.ratio, found.low, found.high
    return median > 0 and max(median - low, high - median) <= target * median


def median_interval(times: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """The median of ``times`` and a distribution-free interval for it (order statistics, scipy's quantile test)."""
    import numpy as np
    from scipy import stats

    values = np.asarray(times, dtype=float)
    median = float(np.median(values))
    found = stats.quantile_test(values, q=median, p=0.5).confidence_interval(confidence)
    low = -math.inf if np.isnan(found.low) else float(found.low)  # too few values for a bound: unbounded
    high = math.inf if np.isnan(found.high) else float(found.high)
    return median, min(low, median), max(high, median)


def _median_ratio(reference, times, axis=-1):
    import numpy as np

    return np.median(times, axis=axis) / np.median(reference, axis=axis)


def ratio_interval(reference: Sequence[float], times: Sequence[float], confidence: float = CONFIDENCE) -> RatioInterval:
    """median(times) / median(reference) over paired rounds, with a percentile bootstrap interval over rounds.

    Rounds are resampled as pairs (``paired=True``): a round slowed by load elsewhere slows both of its
    passes, and resampling the two series apart would count that shared burst as noise of the ratio.
    """
    import numpy as np
    from scipy import stats  # here, not at the top: importing scipy costs the profiling path's start

    reference, times = np.asarray(reference, dtype=float), np.asarray(times, dtype=float)
    if len(reference) != len(times) or len(times) < 1:
        raise ValueError(f"paired rounds needed, got {len(reference)} and {len(times)} times")
    ratio = float(_median_ratio(reference, times))
    if len(times) < 3 or np.all(times == times[0]) and np.all(reference == reference[0]):
        return RatioInterval(ratio, ratio, ratio)  # too few rounds, or nothing varied: no spread to resample
    result = stats.bootstrap(
        (reference, times),
        _median_ratio,
        paired=True,
        vectorized=True,
        confidence_level=confidence,
        n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return RatioInterval(ratio, min(low, ratio), max(high, ratio))
