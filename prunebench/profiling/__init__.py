"""Profiling: timers and environment facts (hardware profiles and quantized variants come with the profiling issue)."""
