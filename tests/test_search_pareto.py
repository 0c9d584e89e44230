"""Pareto sort, hypervolume and objective parsing against hand-computed cases."""

import numpy as np
import pytest

from prunebench.errors import PrunebenchError
from prunebench.search import REFERENCE, hypervolume, hypervolume_curve, non_dominated, parse_objectives


def test_non_dominated_sort_by_hand():
    points = [[1, 2], [2, 1], [2, 2], [3, 3], [1, 2], [0.5, 5]]
    # (2, 2) is dominated by (1, 2) and (2, 1); (3, 3) by everything; the duplicate (1, 2) stays
    assert non_dominated(points).tolist() == [0, 1, 4, 5]
    three = [[0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 2]]
    assert non_dominated(three).tolist() == [0, 1, 2]
    assert non_dominated(np.zeros((0, 2))).tolist() == []


def test_hypervolume_by_hand():
    assert REFERENCE == 1.1
    assert hypervolume([[0.0, 0.0]]) == pytest.approx(1.21)
    # two boxes against (1.1, 1.1): 0.6 x 0.6 + the strip 0.3 x 0.2 left of (0.5, 0.5) below (0.2, 0.9)
    assert hypervolume([[0.5, 0.5], [0.2, 0.9]]) == pytest.approx(0.36 + 0.06)
    assert hypervolume([[0.5, 0.5], [0.2, 0.9], [0.6, 0.6]]) == pytest.approx(0.42)  # dominated: no volume
    assert hypervolume([[1.2, 0.1], [0.5, 1.1]]) == 0.0  # not better than the reference in every objective
    assert hypervolume([[0.5, 0.5]], reference=np.array([1.0, 2.0])) == pytest.approx(0.5 * 1.5)
    # 3-d: boxes of 1.0 x 0.5 x 0.5 and 0.5 x 1.0 x 1.0 overlapping in a 0.5-cube
    assert hypervolume([[0.1, 0.6, 0.6], [0.6, 0.1, 0.1]]) == pytest.approx(0.25 + 0.5 - 0.125)
    assert hypervolume(np.zeros((0, 2))) == 0.0


def test_hypervolume_curve_is_the_volume_of_each_prefix():
    rng = np.random.default_rng(0)
    points = rng.random((30, 2))
    curve = hypervolume_curve(points)
    assert np.all(np.diff(curve) >= -1e-12)
    for n in (1, 7, 30):
        assert curve[n - 1] == pytest.approx(hypervolume(points[:n]))


def test_objectives_are_parsed_and_checked():
    assert parse_objectives("error, encoder_params,macs") == ("error", "encoder_params", "macs")
    with pytest.raises(PrunebenchError, match="unknown objective 'size'"):
        parse_objectives("error,size")
    with pytest.raises(PrunebenchError, match="need 'error' and at least one cost"):
        parse_objectives("encoder_params,macs")
    with pytest.raises(PrunebenchError, match="need 'error' and at least one cost"):
        parse_objectives("error")
    with pytest.raises(PrunebenchError, match="listed twice"):
        parse_objectives("error,total_params,total_params")
