"""How long the test suite takes: an earlier revision against this one, on this machine, one right after the other.

Each revision is cloned fresh (``git clone``) and its suite run with the command its own tox.ini gives pytest
(``.ci/run`` runs tox, which runs that command), in one shared environment that has every package both need, so
that only the tests and their settings differ. Writes ``benchmarks/results/test_durations.json``: both wall times
(pytest's own "in N s"), the CPU and its flags, the thread settings, and the 20 slowest tests of this revision.

    python benchmarks/test_durations.py --before 7407d7e            # HEAD against 7407d7e
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "test_durations.json"


def cpu() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    name = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
    flags = set((re.search(r"^flags\s*:\s*(.*)$", info, re.M) or re.match("()", "")).group(1).split())
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"]
    family = re.search(r"^cpu family\s*:\s*(\d+)$", info, re.M)
    model = re.search(r"^model\s*:\s*(\d+)$", info, re.M)
    return {
        "model_name": name.group(1) if name else None,
        "family": int(family.group(1)) if family else None,
        "model": int(model.group(1)) if model else None,
        "flags": [flag for flag in wanted if flag in flags],
        "cores": len(os.sched_getaffinity(0)),
    }


def pytest_args(clone: Path) -> list[str]:
    """The arguments the clone's tox.ini gives pytest (its ``commands`` line), {posargs} left empty."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(clone / "tox.ini")
    line = next(cmd for cmd in parser["testenv"]["commands"].splitlines() if cmd.strip().startswith("pytest"))
    return [arg for arg in shlex.split(line)[1:] if arg != "{posargs}"]


def run_suite(revision: str, workdir: Path, durations: int) -> dict:
    clone = workdir / revision
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", revision], check=True)
    sha = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    args = [*pytest_args(clone), f"--durations={durations}", "-p", "no:cacheprovider"]
    env = {**os.environ, "PYTHONPATH": str(clone), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=clone, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    out = done.stdout
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    reported = re.search(r" in ([\d.]+)s", summary)
    slowest = re.findall(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)$", out, re.M)
    return {
        "revision": sha.strip(),
        "pytest_args": args,
        "exit_code": done.returncode,
        "summary": summary,
        "seconds": float(reported.group(1)) if reported else None,
        "process_seconds": round(wall, 1),
        "slowest": [{"seconds": float(s), "phase": phase, "test": test} for s, phase, test in slowest],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the earlier revision (a commit)")
    parser.add_argument("--after", default="HEAD", help="this revision (default HEAD)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="durations-") as workdir:
        before = run_suite(options.before, Path(workdir), 20)
        after = run_suite(options.after, Path(workdir), 20)
    result = {
        "what": "pytest wall time of the whole suite, each revision in a fresh clone with its own tox.ini's pytest "
        "arguments, one right after the other on this machine, in one shared environment",
        "cpu": cpu(),
        "before_seconds": before["seconds"],
        "after_seconds": after["seconds"],
        "ratio": round(after["seconds"] / before["seconds"], 3) if before["seconds"] and after["seconds"] else None,
        "before": {k: v for k, v in before.items() if k != "slowest"},
        "after": {k: v for k, v in after.items() if k != "slowest"},
        "slowest_20_after": after["slowest"][:20],
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("before_seconds", "after_seconds", "ratio")}))


if __name__ == "__main__":
    main()
