"""Profiling a run (after the search): its full and exported models, every variant, test-split scores.

- ``subjects``: which models a call takes (names, folders, a run's checkpoint and exports);
- ``profiler``: ``profile_run`` (``prunebench profile``: a run's models or given ones, then a run's scores)
  and ``profile_models``, the loop over models x variants x points into a profile table;
- ``scoring``: ``score_variants``, each model variant's test-split error.

The measurement itself (profiles, variants, timers, memory, estimates, the row and its store) is
``prunebench.hardware``.
"""

from prunebench.config import ProfileConfig, TimingConfig
from prunebench.hardware.store import read_profile_table
from prunebench.profiling.profiler import ProfileResult, profile_models, profile_run
from prunebench.profiling.scoring import read_scores, score_variants
from prunebench.profiling.subjects import resolve_subjects, run_subjects

__all__ = [
    "ProfileConfig",
    "ProfileResult",
    "TimingConfig",
    "profile_models",
    "profile_run",
    "read_profile_table",
    "read_scores",
    "resolve_subjects",
    "run_subjects",
    "score_variants",
]
