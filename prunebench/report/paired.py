"""Whether two options differ on the test split beyond its noise: a paired test on the same examples.

Both options were scored on the same test examples (``profiling.scoring.PerExample``), so the test is
paired, which is far sharper than comparing two errors with their own standard errors:

- classification scored by accuracy: the exact McNemar test. Only the examples exactly one of the
  two gets right (the discordant pairs) carry evidence; if the two are equally good, each of those
  is a fair coin (``scipy.stats.binomtest``, two-sided). 3 examples apart out of 3 discordant ones is
  p = 0.25: tied; 200 apart is not.
- any other metric (Spearman or Pearson for regression, F1, Matthews): a paired percentile bootstrap
  of the metric's difference, both options on the same resampled examples (seeded numpy); tied when
  the 95% interval holds 0.

Two options are *tied* when the test cannot separate them at 95%.

Across runs (seeds, and budgets within them), ``lower_errors_p`` asks whether one method's test errors are
lower than another's: a one-sided Wilcoxon signed-rank test over the paired runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from prunebench.errors import PrunebenchError
from prunebench.profiling.scoring import RESCORE, PerExample

CONFIDENCE = 0.95
RESAMPLES = 1000  # bootstrap resamples
CHUNK = 250  # resamples ranked at once (memory: CHUNK x examples floats per array)
SEED = 0  # the bootstrap's seed: the same inputs always give the same answer
MCNEMAR = "exact McNemar"
BOOTSTRAP = "paired bootstrap"


@dataclass(frozen=True)
class PairedResult:
    """The paired test of option b against option a on the same examples."""

    test: str  # MCNEMAR or BOOTSTRAP
    tied: bool  # the test cannot separate them at CONFIDENCE
    difference: float  # b's error minus a's (metric points as a fraction: 0.01 = 1 point)
    examples_apart: int | None  # classification: how many more examples one gets right than the other
    p_value: float | None = None  # McNemar's
    low: float | None = None  # the bootstrap's interval of ``difference``
    high: float | None = None


def _metric_rows(name: str, a: np.ndarray, labels: np.ndarray, regression: bool) -> np.ndarray:
    """The metric per row of resampled (rows, n) arrays: one option's predictions ``a`` and the labels."""
    if regression:
        if name == "spearman":
            a, labels = stats.rankdata(a, axis=1), stats.rankdata(labels, axis=1)
        a = a - a.mean(axis=1, keepdims=True)
        labels = labels - labels.mean(axis=1, keepdims=True)
        scale = np.sqrt((a * a).sum(axis=1) * (labels * labels).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            value = (a * labels).sum(axis=1) / scale
        return np.nan_to_num(value)  # a constant prediction: no correlation, as compute_metrics scores it
    positive, truth = a == 1, labels == 1
    tp = (positive & truth).sum(axis=1).astype(float)
    fp = (positive & ~truth).sum(axis=1).astype(float)
    fn = (~positive & truth).sum(axis=1).astype(float)
    tn = (~positive & ~truth).sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if name == "f1":
            value = 2 * tp / (2 * tp + fp + fn)
        else:  # matthews
            value = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return np.nan_to_num(value)


def _bootstrap(a: PerExample, b: PerExample, metric: str) -> tuple[float, float, float]:
    """(difference, low, high): b's metric subtracted from a's (b's error minus a's) on the examples as they are, and
    its 95% percentile interval over resamples of the examples, both options on the same resamples."""
    labels = a.labels.astype("float64") if a.regression else a.labels
    n = len(labels)
    observed = float(
        _metric_rows(metric, a.predictions[None], labels[None], a.regression)[0]
        - _metric_rows(metric, b.predictions[None], labels[None], a.regression)[0]
    )
    rng = np.random.default_rng(SEED)
    differences = []
    for start in range(0, RESAMPLES, CHUNK):
        rows = rng.integers(0, n, size=(min(CHUNK, RESAMPLES - start), n))
        ours = _metric_rows(metric, a.predictions[rows], labels[rows], a.regression)
        theirs = _metric_rows(metric, b.predictions[rows], labels[rows], a.regression)
        differences.append(ours - theirs)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(np.concatenate(differences), [tail, 100 - tail])
    return observed, float(low), float(high)


def paired_test(a: PerExample | None, b: PerExample | None, metric: str | None, run: str = "RUN") -> PairedResult:
    """Whether ``b`` differs from ``a`` on the same examples (module docstring); ``metric``: the task's primary one.
    None for either: scored before per-example predictions were kept, an error naming the command that re-scores."""
    if a is None or b is None:
        raise PrunebenchError(
            "a paired test needs each option's per-example predictions, and these scores were written before they "
            f"were kept; re-score with '{RESCORE.format(run=run)}'"
        )
    if not a.same_examples(b):
        raise ValueError("a paired test needs both options scored on the same examples, in the same order")
    apart = None
    if not a.regression:
        right_a, right_b = a.correct(), b.correct()
        apart = abs(int(right_a.sum()) - int(right_b.sum()))
        binary = set(np.unique(a.labels)) <= {0, 1} and set(np.unique(np.r_[a.predictions, b.predictions])) <= {0, 1}
        if metric in (None, "accuracy") or not binary:
            only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
            discordant = only_a + only_b
            p = 1.0 if discordant == 0 else float(stats.binomtest(only_a, discordant, 0.5).pvalue)
            difference = (only_a - only_b) / len(a.labels)
            return PairedResult(MCNEMAR, p >= 1 - CONFIDENCE, difference, apart, p_value=p)
    difference, low, high = _bootstrap(a, b, metric or "spearman")
    return PairedResult(BOOTSTRAP, bool(low <= 0 <= high), difference, apart, low=low, high=high)


def error_interval(option: PerExample | None, error: float, examples: float, metric: str | None) -> tuple[float, float]:
    """A 95% interval of one option's test error: Wilson's for accuracy (from the error and the example count alone),
    a percentile bootstrap of the metric over the examples otherwise (NaNs without per-example predictions)."""
    if metric in (None, "accuracy") and examples and examples == examples and (option is None or not option.regression):
        n = int(examples)
        low, high = stats.binomtest(round(error * n), n).proportion_ci(CONFIDENCE, method="wilson")
        return float(low), float(high)
    if option is None:
        return float("nan"), float("nan")
    labels = option.labels.astype("float64") if option.regression else option.labels
    rows = np.random.default_rng(SEED).integers(0, len(labels), size=(RESAMPLES // 4, len(labels)))
    errors = 1 - _metric_rows(metric or "spearman", option.predictions[rows], labels[rows], option.regression)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(errors, [tail, 100 - tail])
    return float(low), float(high)


MIN_RANK_PAIRS = 6  # below it the smallest one-sided signed-rank p is above 0.016: no evidence either way


def lower_errors_p(lower: list[float | None], higher: list[float | None]) -> float | None:
    """One-sided Wilcoxon signed-rank p that ``lower``'s errors are below ``higher``'s, paired by position (the same
    seed and budget); pairs with a missing side are dropped. None below ``MIN_RANK_PAIRS`` pairs or when every pair
    is equal."""
    pairs = [(a, b) for a, b in zip(lower, higher, strict=True) if a is not None and b is not None]
    if len(pairs) < MIN_RANK_PAIRS or all(a == b for a, b in pairs):
        return None
    return float(stats.wilcoxon([a for a, _ in pairs], [b for _, b in pairs], alternative="less").pvalue)
