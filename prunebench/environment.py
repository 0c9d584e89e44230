"""What a measurement ran on: recorded next to every benchmark and run."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

# Piped into a file or a log, rich would cut lines and tables at 80 columns: there they get the room they need (a
# terminal, or COLUMNS when set, keeps its width).
PIPED_WIDTH = 400


def console(**options):
    """A rich Console for progress and tables, as wide as its output allows (one place for every stage)."""
    import sys

    from rich.console import Console  # here, so that importing this module stays light

    file = options.get("file", sys.stderr if options.get("stderr") else sys.stdout)
    wide = not file.isatty() and not os.environ.get("COLUMNS")
    return Console(**({"width": PIPED_WIDTH} if wide else {}), **options)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity; a container's CPU set), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def clock(seconds: float) -> str:
    """``m:ss`` (minutes may pass 59): how progress lines write elapsed and remaining time."""
    minutes, rest = divmod(max(0, int(seconds)), 60)
    return f"{minutes:d}:{rest:02d}"


def time_left(elapsed: float, done: int, total: int) -> str:
    """``m:ss`` left at the pace so far (``done`` of ``total`` items in ``elapsed`` seconds); empty when nothing
    is done yet or everything is. Plain text, so that a log file shows it as a terminal does."""
    if done < 1 or done >= total:
        return ""
    return clock(elapsed / done * (total - done))


PACKAGES = ("prunebench", "torch", "transformers", "datasets", "safetensors", "numpy", "pandas", "syne-tune")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision(path: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path or Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def package_versions(names=None) -> dict[str, str | None]:
    """Installed versions of ``names`` (default: every package a run records), None where one is missing."""
    versions = {}
    for name in PACKAGES if names is None else names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict:
    import torch  # here, not at the top: the CLI's argument checks read cpu_model() without torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "packages": package_versions(),
        "git_revision": git_revision(),
    }
