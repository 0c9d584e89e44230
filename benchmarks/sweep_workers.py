"""How a sweep's wall time grows with its cells and falls with its workers: the tiny grid of the tests
(bert-tiny, two strategies x two seeds, each cell the whole pipeline in seconds) on a local Ray with 1 and
then 2 workers, each into a fresh folder, and a third time into the 2-worker folder (every cell finished:
what skipping costs).

Recorded per run: the wall time of ``run_sweep`` (Ray's start and stop, each worker's imports, the cells,
the report), the cells' own seconds (their pipelines, from ``sweep.json``), the machine's load average
before and after (other processes share the cores), the CPU count and the torch threads per cell (1).

    python benchmarks/sweep_workers.py --out runs/bench-sweep     # writes benchmarks/results/sweep_workers.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from prunebench.environment import environment
from prunebench.rundir import SweepDir
from prunebench.sweep.grid import load_grid
from prunebench.sweep.runner import run_sweep

GRID = """
preset = "quick"
max_models = 2
[axes]
model = "shape:bert-tiny"
strategy = ["standard", "full"]
seed = [0, 1]
method = "random_search"
[train]
epochs = 1
max_train_examples = 64
max_eval_examples = 32
max_length = 32
[search]
samples = 6
baselines = ["layer_drop"]
[search.evaluation]
workers = 1
[profile]
variants = ["fp32"]
batch_sizes = [1]
seq_lens = [32]
score_max_examples = 32
[profile.timing]
max_seconds = 0.1
[resources]
cpus = 1
"""


def _measure(grid_path: Path, out: Path, workers: int) -> dict:
    load_before = os.getloadavg()
    started = time.perf_counter()
    result = run_sweep(load_grid(grid_path), out, workers=workers, show_progress=False)
    wall = time.perf_counter() - started
    cells = SweepDir(out).read()["cells"]
    seconds = [c["seconds"] for c in cells if c.get("seconds") is not None]
    return {
        "workers": workers, "cells": len(cells), "ran": len(result.ran), "skipped": len(result.skipped),
        "failed": len(result.failed), "wall_seconds": round(wall, 1),
        "cell_seconds": seconds, "cell_seconds_sum": round(sum(seconds), 1),
        "load_average_before_1_5_15min": [round(x, 2) for x in load_before],
        "load_average_after_1_5_15min": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-sweep"))
    parser.add_argument("--result", type=Path, default=Path(__file__).parent / "results" / "sweep_workers.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    grid = args.out / "grid.toml"
    grid.write_text(GRID)
    runs = []
    for workers in (1, 2):
        folder = args.out / f"workers-{workers}"
        shutil.rmtree(folder, ignore_errors=True)
        runs.append(_measure(grid, folder, workers))
        print(json.dumps(runs[-1]))
    runs.append({**_measure(grid, args.out / "workers-2", 2), "note": "again: every cell finished, none started"})
    print(json.dumps(runs[-1]))
    one, two = runs[0]["wall_seconds"], runs[1]["wall_seconds"]
    data = {
        "benchmark": "sweep_workers",
        "grid": GRID.strip(),
        "runs": runs,
        "speedup_2_workers": round(one / two, 2) if two else None,
        "torch_threads_per_cell": 1,
        "environment": environment(),
        "note": "wall_seconds includes starting and stopping the local Ray (~10 s here) and each worker's imports "
        "of torch, transformers and the search stack; other sessions shared the 2 cores (see the load averages)",
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {args.result}")


if __name__ == "__main__":
    main()
