"""Pareto set and hypervolume (all objectives minimised), on pymoo's implementations.

Hypervolume is always computed on *normalised* objectives (``objectives.py``) against the
fixed reference point ``REFERENCE`` in every coordinate, so runs of different methods, seeds
and sessions on the same model and task compare directly. A point that does not dominate the
reference point adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# pymoo is imported where a front or a volume is computed: the search evaluator, and so a GPU check that runs
# one, import without it (the lent GPU machine has no pymoo; benchmarks/gpu_check.py).

# Every normalised objective is referenced at 1.1: relative costs are 1.0 for the full model, so
# the full model (and any sub-network with an error below 1.1) still adds volume.
REFERENCE = 1.1


def _as_matrix(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    matrix = np.asarray(points, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"points must be a 2-d array (n points x m objectives), got shape {matrix.shape}")
    return matrix


def non_dominated(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Indices of the points no other point dominates (duplicates of a front point are all kept), sorted."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    matrix = _as_matrix(points)
    if len(matrix) == 0:
        return np.zeros(0, dtype=int)
    return np.sort(NonDominatedSorting().do(matrix, only_non_dominated_front=True))


def reference_point(num_objectives: int) -> np.ndarray:
    return np.full(num_objectives, REFERENCE)


def hypervolume(points: Sequence[Sequence[float]] | np.ndarray, reference: np.ndarray | None = None) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (default: ``REFERENCE`` everywhere)."""
    from pymoo.indicators.hv import HV

    matrix = _as_matrix(points)
    if len(matrix) == 0:
        return 0.0
    reference = reference_point(matrix.shape[1]) if reference is None else np.asarray(reference, dtype=float)
    inside = matrix[np.all(matrix < reference, axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(HV(ref_point=reference)(inside))


def hypervolume_curve(
    points: Sequence[Sequence[float]] | np.ndarray, reference: np.ndarray | None = None
) -> np.ndarray:
    """Hypervolume of the first 1, 2, ..., n points (the curve over evaluations)."""
    matrix = _as_matrix(points)
    curve = np.zeros(len(matrix))
    front = np.zeros((0, matrix.shape[1] if matrix.ndim == 2 else 0))
    for i, point in enumerate(matrix):
        candidates = np.vstack([front, point])
        front = candidates[non_dominated(candidates)]  # the curve only needs the running front
        curve[i] = hypervolume(front, reference)
    return curve
