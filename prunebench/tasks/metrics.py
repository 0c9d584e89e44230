"""Task metrics from raw model outputs.

Search minimises ``error = 1 - metric`` for every task, so each result also
carries the primary value under ``"metric"`` and its ``"error"``.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from prunebench.errors import PrunebenchError
from prunebench.tasks.registry import REGRESSION, TaskSpec


def _class_predictions(spec: TaskSpec, predictions: np.ndarray) -> np.ndarray:
    if predictions.ndim == 2:
        return predictions.argmax(axis=1)
    if predictions.ndim == 1 and np.issubdtype(predictions.dtype, np.integer):
        return predictions  # already class ids
    raise PrunebenchError(
        f"task {spec.name!r} expects logits of shape (N, {spec.num_labels}) or integer class ids, "
        f"got an array of shape {predictions.shape} and dtype {predictions.dtype}; pass the model's logits"
    )


def _correlation(value: float) -> float:
    # A constant prediction (e.g. a collapsed sub-network) has no defined
    # correlation; score it as 0 (no relation) rather than NaN so searches
    # can still rank it.
    return 0.0 if not np.isfinite(value) else float(value)


def _rank_and_linear(scores: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    if len(scores) < 2 or np.ptp(scores) == 0 or np.ptp(targets) == 0:
        return 0.0, 0.0  # undefined correlation (see _correlation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spearman = stats.spearmanr(scores, targets).statistic
        pearson = stats.pearsonr(scores, targets).statistic
    return _correlation(spearman), _correlation(pearson)


def compute_metrics(spec: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """All metrics of ``spec`` plus ``metric`` (the primary one) and ``error`` = 1 - metric.

    ``predictions`` are raw logits (N, C), or scores (N,) / (N, 1) for
    regression; ``labels`` are class ids or float scores.
    """
    predictions = np.asarray(predictions)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) == 0:
        raise PrunebenchError("cannot compute metrics on 0 examples; evaluate on a non-empty split")
    if predictions.shape[0] != len(labels):
        raise PrunebenchError(
            f"{predictions.shape[0]} predictions for {len(labels)} labels; pass one prediction per example"
        )
    out: dict[str, float] = {}
    if spec.kind == REGRESSION:
        if predictions.ndim == 2 and predictions.shape[1] == 1:
            predictions = predictions[:, 0]
        if predictions.ndim != 1:
            raise PrunebenchError(
                f"regression task {spec.name!r} expects predictions of shape (N,) or (N, 1), "
                f"got {predictions.shape}; pass the model's single output"
            )
        scores, targets = predictions.astype("float64"), labels.astype("float64")
        out["spearman"], out["pearson"] = _rank_and_linear(scores, targets)
    else:
        predicted = _class_predictions(spec, predictions)
        targets = labels.astype("int64")
        out["accuracy"] = float(accuracy_score(targets, predicted))
        if "f1" in spec.metrics:
            # Binary F1 of the positive class (1 = paraphrase / duplicate), as GLUE reports it.
            out["f1"] = float(f1_score(targets, predicted, average="binary", zero_division=0.0))
        if "matthews" in spec.metrics:
            out["matthews"] = _correlation(matthews_corrcoef(targets, predicted))
    if spec.metric not in out:
        raise PrunebenchError(  # pragma: no cover - registry and metrics disagree
            f"task {spec.name!r} has primary metric {spec.metric!r}, which compute_metrics does not produce"
        )
    out["metric"] = out[spec.metric]
    out["error"] = 1.0 - out["metric"]
    return out


def chance_metrics(spec: TaskSpec, labels: np.ndarray) -> dict[str, float]:
    """The metrics of a model that ignores its input: the majority class (the mean, for regression).

    A sub-network no better than this has learned nothing usable, however small it is.
    """
    labels = np.asarray(labels).reshape(-1)
    if spec.kind == REGRESSION:
        constant = np.full(len(labels), float(np.mean(labels.astype("float64"))) if len(labels) else 0.0)
        return compute_metrics(spec, constant, labels)
    classes = labels.astype("int64")
    majority = int(np.bincount(classes).argmax()) if len(classes) else 0
    logits = np.zeros((len(classes), max(int(classes.max(initial=0)) + 1, spec.num_labels or 2, 2)))
    logits[:, majority] = 1.0
    return compute_metrics(spec, logits, labels)
