"""Profiling: hardware profiles, device detection, model variants, measurement, estimates, the profile table."""

from prunebench.profiling.hardware import HardwareProfile, detect_devices, get_profile, load_profiles
from prunebench.profiling.profiler import profile_models
from prunebench.profiling.store import read_profile_table
from prunebench.profiling.timing import TimingConfig
from prunebench.profiling.variants import VARIANTS, build_variant

__all__ = [
    "VARIANTS",
    "HardwareProfile",
    "TimingConfig",
    "build_variant",
    "detect_devices",
    "get_profile",
    "load_profiles",
    "profile_models",
    "read_profile_table",
]
