"""A sweep on a real two-node Ray cluster, with and without losing a node mid-sweep: does anything get lost, and
what does the retry cost?

The tiny grid of ``sweep_workers.py`` (bert-tiny, two strategies x two seeds, each cell the whole pipeline in
seconds) on a cluster of two nodes of one CPU each (``ray.cluster_utils.Cluster``: a head and a worker, two
raylets on this host). First the sweep runs on both nodes undisturbed; then, into a fresh folder, again, and
the worker node is killed (its raylet and workers, -9) a few seconds into the first cell it runs. Ray runs
that cell again on the head, where it resumes from its run directory.

Recorded per run: the wall time of the sweep (connecting, the cells, the report; not the cluster's start),
the cells each node finished, the attempts lost and retried, the cells done and failed, and whether every
cell's pipeline is finished (``pipeline_finished``: nothing lost). The machine's load average before and
after: other processes share its cores, so the wall times are indicative only.

    python benchmarks/sweep_cluster.py --out runs/bench-sweep-cluster   # writes benchmarks/results/sweep_cluster.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

from prunebench.environment import environment
from prunebench.pipeline import pipeline_finished
from prunebench.rundir import SweepDir
from prunebench.sweep.grid import load_grid
from prunebench.sweep.runner import LOST, read_attempt_lines, run_sweep

GRID = Path(__file__).with_name("sweep_workers.py")
KILL_AFTER_S = 3.0  # into the worker node's first cell: past the imports, inside the pipeline


def _grid_text() -> str:
    import importlib.util

    spec = importlib.util.spec_from_file_location("sweep_workers", GRID)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GRID


def _killer(cluster, worker, out: Path, killed: list) -> threading.Thread:
    def watch():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            for path in (out / "logs").glob("*.attempts.jsonl"):
                if any(a.get("event") == "start" and a.get("node") == worker.node_id for a in read_attempt_lines(path)):
                    time.sleep(KILL_AFTER_S)
                    cluster.remove_node(worker, allow_graceful=False)
                    killed.append({"cell": path.name.split(".")[0], "at": time.time()})
                    return
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _measure(cluster, grid, out: Path, kill: bool) -> dict:
    nodes = {n.node_id: ("head" if n.head else "worker") for n in cluster.list_all_nodes()}
    killed: list = []
    thread = _killer(cluster, next(n for n in cluster.list_all_nodes() if not n.head), out, killed) if kill else None
    load_before = os.getloadavg()
    started = time.perf_counter()
    result = run_sweep(grid, out, address=cluster.address, show_progress=False)
    wall = time.perf_counter() - started
    if thread is not None:
        thread.join(timeout=5)
    record = SweepDir(out).read()
    attempts = [a for c in record["cells"] for a in c["attempts"]]
    per_node = Counter(nodes.get(a["node"], a["node"][:12]) for a in attempts if a["why"] == "done")
    return {
        "node_killed": kill, "killed": killed[0]["cell"] if killed else None,
        "wall_seconds": round(wall, 1),
        "cells_seconds": {c["name"]: c["seconds"] for c in record["cells"]},
        "cells_finished_per_node": dict(per_node),
        "attempts": len(attempts), "attempts_lost": sum(a["why"] == LOST for a in attempts),
        "cells_retried": len(result.retried), "done": sum(c["status"] == "done" for c in record["cells"]),
        "failed": len(result.failed),
        "nothing_lost": all(pipeline_finished(c.config, SweepDir(out).cell(c.name).path) for c in grid.cells),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-sweep-cluster"))
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    grid_path = args.out / "grid.toml"
    grid_path.write_text(_grid_text())
    grid = load_grid(grid_path)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        runs = [_measure(cluster, grid, args.out / "undisturbed", kill=False),
                _measure(cluster, grid, args.out / "node-killed", kill=True)]  # fmt: skip
    finally:
        cluster.shutdown()
    results = {
        "what": "the tests' 4-cell bert-tiny grid on two 1-CPU Ray nodes (one host), undisturbed and with the worker "
        f"node killed {KILL_AFTER_S:g} s into its first cell",
        "cluster": "ray.cluster_utils.Cluster: head (1 CPU) + worker (1 CPU), both raylets on this host",
        "grid": _grid_text(), "runs": runs, "environment": environment(), "cpu_count": os.cpu_count(),
        "torch_threads_per_cell": 1,
        "note": args.note or "the 2 cores were shared with other engineers' jobs: wall times are indicative only",
    }  # fmt: skip
    path = Path(__file__).parent / "results" / "sweep_cluster.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    for run in runs:
        print(json.dumps({k: run[k] for k in ("node_killed", "wall_seconds", "cells_finished_per_node",
                                                "attempts_lost", "done", "failed", "nothing_lost")}))  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
