"""How long the `prunebench` command takes to answer `--help` and to refuse a wrong argument.

Times the whole process (interpreter start, imports, argument checks, the error line), the median of
N runs per command, and records the exit code and the first line of stderr, so the figure is what a
user waits for. The goal is under 1 s for every argument error on the 2-core development machine.

    python benchmarks/cli_start.py --label after               # the installed prunebench
    python benchmarks/cli_start.py --label before --source /path/to/old/checkout   # its prunebench/ first
    python benchmarks/cli_start.py --label after_fast_start --source . --note "commit ..."

Results are merged into benchmarks/results/cli_start.json under the label.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "cli_start.json"

# name -> arguments; each is refused before any work (or is --help)
COMMANDS = {
    "help": ["--help"],
    "profile help": ["profile", "--help"],
    "unknown flag": ["search", "--no-such-flag"],
    "missing run": ["search", "/nonexistent/run"],
    "unknown gpu": ["profile", "--gpu", "nosuch"],
    "unknown task": ["train", "--out", "{tmp}/run", "--task", "nosuch"],
    "unknown model shape": [
        "extract",
        "--model",
        "shape:nosuch",
        "--space",
        "small",
        "--random",
        "1",
        "--out",
        "{tmp}/x",
    ],
    "unknown variant": ["profile", "--model", "minilm", "--device", "cpu", "--variants", "fp64", "--out", "{tmp}/p"],
    "unknown method": ["search", "/nonexistent/run", "--method", "nosuch"],
}


def time_command(python: str, source: str | None, args: list[str], runs: int) -> dict:
    seconds, codes, first_lines = [], set(), set()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "120"}
    if source:
        env["PYTHONPATH"] = source
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            command = [python, "-m", "prunebench.cli", *(a.replace("{tmp}", tmp) for a in args)]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
            seconds.append(time.perf_counter() - started)
        codes.add(done.returncode)
        lines = done.stderr.strip().splitlines()
        first_lines.add(lines[-1][:160] if lines else "")
    return {
        "args": args,
        "median_s": round(statistics.median(seconds), 3),
        "min_s": round(min(seconds), 3),
        "max_s": round(max(seconds), 3),
        "runs": runs,
        "exit_codes": sorted(codes),
        "stderr_last_line": sorted(first_lines),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="name of this measurement, e.g. before or after")
    parser.add_argument("--python", default=sys.executable, help="interpreter whose prunebench is timed")
    parser.add_argument("--source", help="a checkout whose prunebench/ is imported instead of the installed one")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated command names (default: all)")
    parser.add_argument("--note", default="", help="what code was timed (kept with the label as 'code')")
    options = parser.parse_args()
    chosen = [n for n in COMMANDS if not options.only or n in options.only.split(",")]
    load_before = os.getloadavg()
    results = {}
    for name in chosen:
        results[name] = time_command(options.python, options.source, COMMANDS[name], options.runs)
        print(f"{name:22s} median {results[name]['median_s']:.2f} s  exit {results[name]['exit_codes']}", flush=True)
    record = {
        "python": options.python,
        "source": options.source or "installed",
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commands": results,
    }
    if options.note:
        record["code"] = options.note
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"benchmark": "cli_start"}
    data["what"] = "whole-process wall time of `python -m prunebench.cli ARGS`, median of N runs"
    data[options.label] = record
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {RESULTS} [{options.label}]")


if __name__ == "__main__":
    main()
