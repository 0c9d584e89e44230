"""A plausible run directory for the report tests, written without training anything.

``make_report_run`` writes every table a finished ``prunebench run`` leaves behind (fine-tuning
log, two search methods and a layer-drop baseline, profiles measured on the CPU and estimated
for an A10, and the pruning-vs-quantization comparison for both), with the column names and
types the producing stages use. Numbers are made up but shaped like real ones: error falls
with size, quantization shrinks weights but not parameters, estimates are marked as such.
The lead may later swap this for a real tiny pipeline run; callers only rely on the signature.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from helpers import profile_row
from prunebench.hardware.store import SCHEMA
from prunebench.report.compare import Budget, answer_budgets
from prunebench.rundir import RUN_KIND, RUN_VERSION, write_json_atomic, write_parquet_atomic

TASKS = {  # task -> (kind, metric, examples per split)
    "rotten_tomatoes": ("classification", "accuracy", {"train": 7000, "validation": 3000, "test": 2600}),
    "rte": ("classification", "accuracy", {"train": 1743, "validation": 747, "test": 277}),
    "stsb": ("regression", "spearman", {"train": 4025, "validation": 1724, "test": 1500}),
}
FULL_PARAMETERS = 22_713_216  # all-MiniLM-L6-v2 with a 2-label head
ENCODER_PARAMETERS = 10_646_784  # its six encoder layers
OUTSIDE_PARAMETERS = FULL_PARAMETERS - ENCODER_PARAMETERS  # embeddings, pooler, head: 53%
WEIGHT_BYTES = {"fp32": 4.0, "int8": 1.0, "nf4": 0.5}  # bytes per encoder parameter (the rest stays fp32)
# The best pruned option at no more than half the encoder; the report tests look for it by name.
HALF_OPTION = "nsga2-seed0/p2 fp32"
# the compared pruned models' test error above the full model's; their validation errors (the export index) follow it
PRUNED_ERROR_GAP = {"p0": 0.006, "p2": 0.028, "p4": 0.105}


def total_of(encoder_fraction):
    """The total fraction of a sub-network keeping ``encoder_fraction`` of the encoder."""
    return (OUTSIDE_PARAMETERS + encoder_fraction * ENCODER_PARAMETERS) / FULL_PARAMETERS


def _write_search(run: Path, name: str, method: str, rng: np.random.Generator, samples: int, base: float) -> None:
    folder = run / "search" / name
    folder.mkdir(parents=True)
    if method == "layer_drop":  # drops whole layers from the top: 6, 5, ... 1 layers
        params = np.array([1.0 - k * 0.13 for k in range(6)])
        error = base + 0.35 * (1 - params) ** 1.5 + 0.02
        configs = [{f"layer_{i}": int(i < 6 - k) for i in range(6)} for k in range(6)]
    else:
        params = np.concatenate([[1.0, 0.35, 0.68], rng.uniform(0.3, 1.0, samples - 3)])
        error = base + 0.3 * (1 - params) ** 2 + rng.uniform(0.0, 0.05, samples)
        configs = [
            {"num_layers": int(round(1 + 5 * p)), "num_heads": int(round(1 + 11 * p)), "num_units": int(1536 * p)}
            for p in params
        ]
    elapsed = np.cumsum(rng.uniform(0.5, 1.5, len(params)))
    frame = pd.DataFrame(
        {
            "index": np.arange(len(params)),
            "method": method,
            "seed": 0,
            "session": 0,
            "cached": False,
            "eval_seconds": rng.uniform(0.4, 1.2, len(params)),
            "elapsed_seconds": elapsed,
            "timestamp": [f"2026-11-24T10:{i // 60:02d}:{i % 60:02d}.000+00:00" for i in range(len(params))],
            "error": error,
            "encoder_params": params,  # the objective: the encoder fraction
            "metric": 1 - error,
            "mode": "sliced",
            "parameters": (total_of(params) * FULL_PARAMETERS).astype("int64"),
            "encoder_parameters": (params * ENCODER_PARAMETERS).astype("int64"),
            "encoder_fraction": params,
            "total_fraction": total_of(params),
            "macs_count": (params * 2.9e9).astype("int64"),
            "config": [json.dumps(c, sort_keys=True) for c in configs],
        }
    )
    order = np.lexsort((frame["error"], frame["encoder_params"]))
    best = np.inf
    front = np.zeros(len(frame), dtype=bool)
    for i in order:  # 2-d non-dominated: sorted by size, keep each new lowest error
        if frame["error"].iloc[i] < best:
            front[i], best = True, frame["error"].iloc[i]
    frame["pareto"] = front
    pareto = frame[front].sort_values("encoder_params").copy()
    pareto["test_metric"] = pareto["metric"] - rng.uniform(0.0, 0.02, len(pareto))
    pareto["test_error"] = 1 - pareto["test_metric"]
    hypervolume = pd.DataFrame(
        {
            "evaluations": np.arange(1, len(frame) + 1),
            "elapsed_seconds": elapsed,
            "hypervolume": np.maximum.accumulate(0.45 + 0.25 * (1 - np.exp(-np.arange(len(frame)) / 4))),
        }
    )
    for table, data in (("candidates", frame), ("pareto", pareto), ("hypervolume", hypervolume)):
        write_parquet_atomic(folder / f"{table}.parquet", data)
    meta = {
        "kind": "prunebench-search",
        "version": 1,
        "method": method,
        "seed": 0,
        "space": "layer" if method == "layer_drop" else "small",
        "objectives": ["error", "encoder_params"],
        "normalisation": "error = 1 - validation metric; encoder_params = encoder parameters / the full encoder's",
        "reference_point": [1.1, 1.1],
        "samples": len(frame),
        "status": "finished",
        "stop_reason": "samples",
        "evaluations": len(frame),
        "final_hypervolume": float(hypervolume["hypervolume"].iloc[-1]),
    }
    write_json_atomic(folder / "search.json", meta)
    if method == "nsga2":
        models = folder / "models"
        models.mkdir()
        labels = [f"p{i}" for i in range(len(pareto))]
        index = pd.DataFrame(
            {
                "label": labels,
                "config": pareto["config"].to_numpy(),
                "encoder_fraction": pareto["encoder_fraction"].to_numpy(),
                "total_fraction": pareto["total_fraction"].to_numpy(),
                "encoder_parameters": pareto["encoder_parameters"].to_numpy(),
                "parameters": pareto["parameters"].to_numpy(),
                "macs": pareto["macs_count"].to_numpy(),
                # the compared ones' validation error a little under their test error (base here is 0.005 lower)
                "error": [
                    base + PRUNED_ERROR_GAP[label] if label in PRUNED_ERROR_GAP else e
                    for label, e in zip(labels, pareto["error"], strict=True)
                ],
                "test_error": pareto["test_error"].to_numpy(),
                "test_metric": pareto["test_metric"].to_numpy(),
                "path": [str(models / label) for label in labels],
            }
        )
        write_parquet_atomic(models / "index.parquet", index)


def _profile_rows(target: str, estimated: bool, options: list[dict]) -> pd.DataFrame:
    rows = []
    for option in options:
        for batch in (1, 8):
            latency = option["latency_s"] * (batch if target == "cpu" else 1 + 0.1 * batch)
            row = profile_row(
                option["model"],
                model_source="pruned" if option["pruned"] else "minilm",
                pruned=option["pruned"],
                variant=option["variant"],
                quantization=option["quantization"],
                target=target,
                device="cpu" if target == "cpu" else "NVIDIA A10",
                batch_size=batch,
                seq_len=128,
                mode="estimated" if estimated else "measured",
                estimated=estimated,
                model_key=None,
                parameters=int(option["total_fraction"] * FULL_PARAMETERS),
                relative_parameters=option["total_fraction"],
                encoder_parameters=int(option["encoder_fraction"] * ENCODER_PARAMETERS),
                encoder_fraction=option["encoder_fraction"],
                weight_bytes=option["weight_bytes"],
                latency_mean_s=latency,
                latency_p50_s=latency * 0.99,
                latency_p99_s=latency * 1.08,
                peak_rss_growth_bytes=None if estimated else option["memory_bytes"],
                est_peak_memory_bytes=option["memory_bytes"] if estimated else None,
                torch_version="2.13.0+cpu",
                cpu_model="AMD EPYC",
                timestamp="2026-11-24T11:00:00+00:00",
            )
            rows.append(asdict(row))
    if target != "cpu":  # a combination the target cannot run is a skipped row with its reason
        skipped = profile_row(
            "full", model_source="minilm", variant="bf16", compute_dtype="bfloat16", target=target,
            device="NVIDIA A10", seq_len=128, mode="estimated", estimated=True, status="skipped",
            reason="example: bf16 is not estimated in this fixture", model_key=None,
        )  # fmt: skip
        rows.append(asdict(skipped))
    return pa.Table.from_pylist(rows, schema=SCHEMA).to_pandas()


def _options(target: str, base: float) -> list[dict]:
    """Un-pruned fp32, int8, nf4; three pruned sub-networks; two pruned + quantized."""
    scale = 1.0 if target == "cpu" else 0.08  # an A10 is far faster than one CPU core
    spec = [  # model, kind, pruned, quantization, encoder fraction, error, latency on cpu, memory MB
        ("full", "unpruned", False, None, 1.0, base, 0.0120, 96),
        ("full", "quantize", False, "int8", 1.0, base + 0.012, 0.0108, 52),
        ("full", "quantize", False, "nf4", 1.0, base + 0.041, 0.0131, 41),
        ("nsga2-seed0/p0", "prune", True, None, 0.82, base + PRUNED_ERROR_GAP["p0"], 0.0094, 80),
        ("nsga2-seed0/p2", "prune", True, None, 0.48, base + PRUNED_ERROR_GAP["p2"], 0.0058, 52),
        ("nsga2-seed0/p4", "prune", True, None, 0.33, base + PRUNED_ERROR_GAP["p4"], 0.0031, 36),
        ("nsga2-seed0/p0", "both", True, "int8", 0.82, base + 0.019, 0.0090, 46),
        ("nsga2-seed0/p2", "both", True, "nf4", 0.48, base + 0.071, 0.0070, 30),
    ]
    options = []
    for model, kind, pruned, quantization, rel, error, latency, memory in spec:
        per_param = WEIGHT_BYTES[quantization or "fp32"]
        weight_bytes = int(OUTSIDE_PARAMETERS * 4 + rel * ENCODER_PARAMETERS * per_param)
        options.append(
            {
                "option": f"{model} {quantization or 'fp32'}",  # "model variant", as compare labels them
                "model": model,
                "variant": quantization or "fp32",
                "kind": kind,
                "pruned": pruned,
                "quantization": quantization,
                "encoder_fraction": rel,
                "total_fraction": total_of(rel),
                "weight_bytes": weight_bytes,
                "error": round(error, 4),
                "latency_s": latency * scale,
                "memory_bytes": int(memory * 2**20),
            }
        )
    return options


def _front(values: pd.DataFrame, column: str) -> list[bool]:
    front = []
    for _, row in values.iterrows():
        better = (values[column] <= row[column]) & (values["error"] <= row["error"])
        strictly = (values[column] < row[column]) | (values["error"] < row["error"])
        front.append(not bool((better & strictly).any()))
    return front


def _write_compare(run: Path, target: str, estimated: bool, options: list[dict], metric: str) -> None:
    folder = run / "compare" / target
    folder.mkdir(parents=True)
    frame = pd.DataFrame(options)
    frame.insert(0, "target", target)
    frame["metric_name"] = metric
    frame["metric"] = 1 - frame["error"]
    frame["estimated"] = estimated
    frame["batch_size"] = 1
    frame["seq_len"] = 128
    frame["front_latency"] = _front(frame, "latency_s")
    frame["front_memory"] = _front(frame, "memory_bytes")
    frame["chance_error"] = 0.5
    frame["test_examples"] = 2600
    frame["chance"] = False
    for axis, column in (("latency", "latency_s"), ("memory", "memory_bytes")):
        frame[f"{axis}_ratio"] = frame[column] / float(frame.loc[frame["option"] == "full fp32", column].iloc[0])
    write_parquet_atomic(folder / "options.parquet", frame)
    budgets = [
        Budget("latency", value, f"{value * 1e3:.2f} ms")
        for value in sorted(frame["latency_s"].quantile([0.3, 0.7]).tolist())
    ] + [Budget("memory", value * 2**20, f"{value} MiB") for value in (48, 100)]
    answers = answer_budgets(frame, budgets)  # the real answers, so the report shows what compare writes
    answers.insert(0, "target", target)
    write_parquet_atomic(folder / "budgets.parquet", answers)
    notes = ["memory on the CPU is peak RSS growth during the passes"] if target == "cpu" else []
    if estimated:
        notes.append("no A10 here: every latency and memory figure is a roofline estimate")
    write_json_atomic(
        folder / "compare.json",
        {
            "target": target,
            "device": "cpu" if target == "cpu" else "NVIDIA A10 (estimated)",
            "batch_size": 1,
            "seq_len": 128,
            "threads": 1,
            "memory_definition": "peak RSS growth" if target == "cpu" else "estimated peak device memory",
            "latency_definition": "mean seconds per forward pass of one batch",
            "estimated": estimated,
            "chance_error": 0.5,
            "notes": notes,
            "missing": [],
        },
    )


def make_report_run(
    path: Path,
    *,
    task: str = "rotten_tomatoes",
    model: str = "minilm",
    strategy: str = "full",
    with_training_log: bool = True,
    with_search: bool = True,
    with_profile: bool = True,
    with_compare: bool = True,
    seed: int = 0,
) -> Path:
    """Write a finished-looking run directory at ``path`` and return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    kind, metric, examples = TASKS[task]
    rng = np.random.default_rng(seed)
    base = {"rotten_tomatoes": 0.19, "rte": 0.31, "stsb": 0.13}[task]
    train = {"model": model, "task": task, "space": "small", "strategy": strategy, "learning_rate": 2e-5}
    train |= {"epochs": 3, "batch_size": 4, "num_random_sub_nets": 2, "temperature": 10.0, "seed": seed}
    train |= {"max_length": 128, "device": "cpu", "threads": 1}
    run = {"kind": RUN_KIND, "version": RUN_VERSION, "status": "finished", "train": train, "total_steps": 5250}
    run["task"] = {"name": task, "kind": kind, "metric": metric, "num_labels": 1 if kind == "regression" else 2}
    run["task"]["examples"] = examples
    write_json_atomic(path / "run.json", run)
    environment = {"python": "3.11.7", "platform": "Linux-6.1-x86_64", "cpu": "AMD EPYC", "cpu_count": 2}
    environment |= {"torch_threads": 1, "cuda_available": False, "device": "cpu", "git_revision": "0123abcd"}
    environment["packages"] = {"prunebench": "0.1.0", "torch": "2.13.0+cpu", "transformers": "5.23.0"}
    write_json_atomic(path / "environment.json", environment)
    if with_training_log:
        rows = []
        for epoch in (1, 2, 3):
            for name, rel, penalty in (("largest", 1.0, 0.0), ("middle", 0.65, 0.03), ("smallest", 0.34, 0.11)):
                error = base + penalty + 0.12 / epoch
                rows.append(
                    {
                        "epoch": epoch,
                        "step": epoch * 1750,
                        "subnetwork": name,
                        "encoder_fraction": rel,
                        "relative_parameters": total_of(rel),
                        "metric_name": metric,
                        "metric": 1 - error,
                        "error": error,
                        "train_loss": 210.0 - 4 * epoch,
                        "epoch_seconds": 610.0 + epoch,
                        "validation_examples": 2000,
                    }
                )
        write_parquet_atomic(path / "training_log.parquet", pd.DataFrame(rows))
    if with_search:
        _write_search(path, "random_search-seed0", "random_search", rng, 24, base)
        _write_search(path, "nsga2-seed0", "nsga2", rng, 24, base - 0.005)
        _write_search(path, "layer_drop-seed0", "layer_drop", rng, 6, base)
    cpu_options, a10_options = _options("cpu", base), _options("a10", base)
    if with_profile:
        for target, estimated, options in (("cpu", False, cpu_options), ("a10", True, a10_options)):
            folder = path / "profile" / target
            folder.mkdir(parents=True)
            write_parquet_atomic(folder / "profile.parquet", _profile_rows(target, estimated, options))
        scores = pd.DataFrame(
            {
                "model": "full",
                "variant": ["fp32", "int8", "nf4"],
                "split": "test",
                "metric_name": metric,
                "metric": [1 - base, 1 - base - 0.012, 1 - base - 0.041],
                "error": [base, base + 0.012, base + 0.041],
                "examples": examples["test"],
                "device": "cpu",
                "seconds": [41.0, 55.2, 63.9],
                "status": "ok",
                "reason": None,
            }
        )
        write_parquet_atomic(path / "profile" / "cpu" / "scores.parquet", scores)
    if with_compare:
        _write_compare(path, "cpu", False, cpu_options, metric)
        _write_compare(path, "a10", True, a10_options, metric)
    return path
