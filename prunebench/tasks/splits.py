"""The data protocol: official training data -> seeded 70/30 train/validation.

The search scores sub-networks on the validation split, so it must never
overlap the training rows; the official evaluation set stays untouched as the
test split. Everything here works on row positions so it is independent of the
data format and cheap to test.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import GroupShuffleSplit

from prunebench.errors import PrunebenchError

VALIDATION_FRACTION = 0.3
# Rotten Tomatoes has no official test set; the held-out movies are fixed
# (not tied to the run seed) so every run is scored on the same test rows.
HOLDOUT_FRACTION = 0.2
HOLDOUT_SEED = 0


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise PrunebenchError(f"seed must be an integer in [0, 2**32), got {seed!r}; pass e.g. --seed 0")
    return int(seed)


def split_train_validation(n: int, seed: int, groups: Sequence[object] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row positions (train, validation) for ``n`` training rows.

    With ``groups`` (e.g. movie per review) whole groups go to one side, so
    the validation fraction is of groups, not rows.
    """
    seed = check_seed(seed)
    if n < 2:
        raise PrunebenchError(
            f"the training data has {n} row(s); the 70/30 train/validation split "
            "needs at least 2: provide more training examples"
        )
    if groups is not None:
        return _group_split(np.asarray(groups), VALIDATION_FRACTION, seed)
    n_val = min(max(round(VALIDATION_FRACTION * n), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def holdout_by_group(
    groups: Sequence[object], fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row positions (rest, held_out), holding out ``fraction`` of groups."""
    return _group_split(np.asarray(groups), fraction, check_seed(seed))


def _group_split(groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if len(np.unique(groups)) < 2:
        raise PrunebenchError("a grouped split needs at least 2 distinct groups; provide data from more groups")
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    rest, held = next(splitter.split(np.zeros(len(groups)), groups=groups))
    return np.sort(rest), np.sort(held)


def cap_examples(positions: np.ndarray, max_examples: int | None, seed: int) -> np.ndarray:
    """A seeded subsample of at most ``max_examples`` positions (kept sorted)."""
    if max_examples is None:
        return positions
    bad_type = isinstance(max_examples, bool) or not isinstance(max_examples, (int, np.integer))
    if bad_type or max_examples < 1:
        raise PrunebenchError(
            f"max_train_examples must be a positive integer, got {max_examples!r}; "
            "leave it unset to use the whole training split"
        )
    if max_examples >= len(positions):
        return positions
    # Separate stream from the split so capping does not change which rows
    # are validation.
    rng = np.random.default_rng([check_seed(seed), 1])
    return np.sort(rng.choice(positions, size=int(max_examples), replace=False))
