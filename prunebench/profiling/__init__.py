"""Profiling: hardware profiles, device detection, model variants, measurement, estimates, the profile table,
and the variants' test-split scores (``scoring``)."""

from prunebench.profiling.hardware import HardwareProfile, detect_devices, get_profile, load_profiles
from prunebench.profiling.profiler import profile_models
from prunebench.profiling.scoring import read_scores, score_variants
from prunebench.profiling.store import read_profile_table
from prunebench.profiling.subjects import Subject, resolve_subjects, run_subjects
from prunebench.profiling.timing import TimingConfig
from prunebench.profiling.variants import VARIANTS, build_variant

__all__ = [
    "VARIANTS",
    "HardwareProfile",
    "Subject",
    "TimingConfig",
    "build_variant",
    "detect_devices",
    "get_profile",
    "load_profiles",
    "profile_models",
    "read_profile_table",
    "read_scores",
    "resolve_subjects",
    "run_subjects",
    "score_variants",
]
