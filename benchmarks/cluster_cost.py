"""What the paper's full grid would cost on GPU nodes: an ESTIMATE, with every input named.

The grid: 8 tasks x 6 strategies x 3 seeds = 144 cells, BERT-base, each cell the whole pipeline
(super-network fine-tuning for 5 epochs, a 100-sample search, the two baselines, extraction, profiling,
scoring), one cell per GPU. Nothing here ran on a GPU: no GPU has been lent to this project.

Inputs and where they come from:
- work per sequence: exact MACs of BERT-base at sequence length 128 (``supernet/counting.py``, the same
  counts the tests check against the flop counter); a training step costs 3x a forward pass (forward +
  backward, the usual rule for dense layers);
- the sub-networks a strategy steps per batch, relative to standard fine-tuning: MEASURED as training
  minutes per strategy in the committed findings cells that ran one at a time (MiniLM, Rotten Tomatoes,
  SST-2 and MRPC, CPU, one thread), and the
  mean MAC fraction of the ``small`` space's random sub-networks for the strategies with no cell yet;
- the search: 100 forward passes of the validation split by sub-networks of the space's mean MAC fraction;
  the baselines: layer_drop (one pass per depth) + importance (10 budgets), both forward only;
- GPU throughput: the profile's dense peak x its eager efficiency (``profiles/<gpu>.toml``, each figure with
  its source), for fp16/bf16 mixed precision and for fp32; for training too, though they were set from
  inference figures (a further assumption);
- the fixed cost of a cell (loading, extraction, profiling, scoring): the committed cells' measured
  minutes outside training and search, taken to hold on a GPU node as well (its CPU work dominates);
- task sizes: the public training-set sizes, 70% of them for training and 30% for validation (the paper's
  split); SWAG's four choices are four sequences each.

    python benchmarks/cluster_cost.py     # writes benchmarks/results/cluster_cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from prunebench.hardware.profiles import get_profile
from prunebench.models.dims import ModelDims
from prunebench.supernet import get_space
from prunebench.supernet.counting import CostModel

RESULTS = Path(__file__).parent / "results"
CELLS = RESULTS / "findings" / "cells"

# The eight tasks of Klein et al. (TMLR 2024; GLUE, IMDB, SWAG) and their public training-set sizes
# (GLUE: Wang et al. 2019, Table 1; IMDB: Maas et al. 2011; SWAG: Zellers et al. 2018): sequences per example.
TASKS = {
    "rte": (2_490, 1),
    "mrpc": (3_668, 1),
    "cola": (8_551, 1),
    "stsb": (5_749, 1),
    "sst2": (67_349, 1),
    "qnli": (104_743, 1),
    "imdb": (25_000, 1),
    "swag": (73_546, 4),
}
STRATEGIES = ("standard", "sandwich", "kd", "full", "random", "random_linear")
SEEDS = 3
EPOCHS = 5  # the paper's
SEQ_LEN = 128
TRAIN_SHARE = 0.7
SEARCH_SAMPLES = 100
BASELINE_EVALUATIONS = 12 + 10  # layer_drop: one per depth of 12 layers; importance: 10 budgets
GPUS = ("t4", "a10", "v100", "a100", "h100")
NODES = 8
# the findings tasks whose cells ran one at a time; STS-B's ran two at a time beside other jobs on 2 cores,
# so their stage times say how long they took, not what a strategy costs
MEASURED_TASKS = ("rotten_tomatoes", "sst2", "mrpc")
BERT_BASE = ModelDims(num_layers=12, num_heads=12, hidden_size=768, intermediate_size=3072)


def _cell_minutes() -> dict[str, dict[str, float]]:
    """Measured stage minutes of the committed findings cells, per strategy (mean over seeds)."""
    found: dict[str, dict[str, list[float]]] = {}
    for pipeline in sorted(CELLS.glob("*/pipeline.json")):
        if not any(f"-{task}-" in pipeline.parent.name for task in MEASURED_TASKS):
            continue
        strategy = next(s for s in sorted(STRATEGIES, key=len, reverse=True) if f"-{s}-" in pipeline.parent.name)
        stages: dict[str, float] = {}
        for session in json.loads(pipeline.read_text())["sessions"]:
            for stage, entry in (session.get("stages") or {}).items():
                if entry.get("seconds") is not None:
                    stages[stage] = stages.get(stage, 0.0) + float(entry["seconds"]) / 60
        for stage, minutes in stages.items():
            found.setdefault(strategy, {}).setdefault(stage, []).append(minutes)
    return {s: {stage: statistics.fmean(v) for stage, v in stages.items()} for s, stages in found.items()}


def _mean_fraction(space_name: str, samples: int = 2000) -> float:
    """The mean MAC fraction of the space's random sub-networks (what a search or a random step computes)."""
    space = get_space(space_name, BERT_BASE)
    full = _macs(space.masks(space.largest()))
    rng = np.random.default_rng(0)
    return statistics.fmean(_macs(space.masks(space.sample(rng))) / full for _ in range(samples))


def _macs(masks) -> int:
    # the encoder's MACs (the pooler and head are a rounding error at length 128)
    return CostModel(BERT_BASE, outside_parameters=0, outside_macs=0).macs(masks, SEQ_LEN)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster_cost.json")
    args = parser.parse_args()

    flop_forward = 2 * _macs(get_space("small", BERT_BASE).masks(get_space("small", BERT_BASE).largest()))
    mean_fraction = _mean_fraction("small")
    measured = _cell_minutes()
    standard_train = measured["standard"]["train"]
    # one full-network step = 1; a strategy that steps the largest, the smallest and random sub-networks costs more
    factors = {s: measured[s]["train"] / standard_train for s in measured}
    assumed = {s: mean_fraction for s in ("random", "random_linear") if s not in factors}  # one random sub-network
    factors |= assumed
    fixed_minutes = statistics.fmean(
        sum(v for k, v in stages.items() if k not in ("train", "search", "baselines")) for stages in measured.values()
    )

    sequences = {t: n * per for t, (n, per) in TASKS.items()}
    train_sequences = sum(sequences.values()) * TRAIN_SHARE
    validation_sequences = sum(sequences.values()) * (1 - TRAIN_SHARE)
    strategy_sum = sum(factors[s] for s in STRATEGIES)
    train_flop = SEEDS * strategy_sum * EPOCHS * train_sequences * 3 * flop_forward
    search_flop_full = (
        len(STRATEGIES) * SEEDS * (SEARCH_SAMPLES + BASELINE_EVALUATIONS) * validation_sequences * mean_fraction
    ) * flop_forward
    capped = 2_000  # validation examples a search would use per task when capped, as the findings sweep caps
    search_flop_capped = search_flop_full * min(1.0, len(TASKS) * capped / validation_sequences)
    cells = len(TASKS) * len(STRATEGIES) * SEEDS
    fixed_hours = cells * fixed_minutes / 60

    # the longest cell bounds the wall time however many nodes: SWAG (4 sequences an example), full strategy
    longest = max(sequences.values()) * TRAIN_SHARE * EPOCHS * 3 * flop_forward * max(factors.values())

    per_gpu = {}
    for name in GPUS:
        profile = get_profile(name)
        rates = {}
        for dtype in ("fp16", "fp32"):
            peak, efficiency = profile.peak_flops(dtype), profile.efficiency(dtype)
            if peak is None or efficiency is None:
                continue
            rate = peak * efficiency
            hours = {
                "train": train_flop / rate / 3600,
                "search_full_validation": search_flop_full / rate / 3600,
                "search_validation_capped": search_flop_capped / rate / 3600,
                "fixed": fixed_hours,
            }
            total_full = hours["train"] + hours["search_full_validation"] + hours["fixed"]
            total_capped = hours["train"] + hours["search_validation_capped"] + hours["fixed"]
            rates[dtype] = {
                "sustained_tflops": rate / 1e12,
                "assumption": f"{profile.peak_tflops[dtype].value} TFLOPS peak x {efficiency} eager efficiency",
                "gpu_hours": {k: round(v, 1) for k, v in hours.items()}
                | {"total_full_validation": round(total_full, 1), "total_validation_capped": round(total_capped, 1)},
                f"wall_hours_on_{NODES}_nodes": {
                    "full_validation": round(max(total_full / NODES, longest / rate / 3600), 1),
                    "validation_capped": round(max(total_capped / NODES, longest / rate / 3600), 1),
                },
                "longest_cell_hours": round(longest / rate / 3600, 2),
            }
        per_gpu[name] = rates

    result = {
        "benchmark": "cluster_cost",
        "kind": "ESTIMATE: arithmetic over measured CPU ratios and datasheet-based GPU rates; no GPU ran",
        "grid": f"{len(TASKS)} tasks x {len(STRATEGIES)} strategies x {SEEDS} seeds = {cells} cells, BERT-base, "
        f"{EPOCHS} epochs, sequence length {SEQ_LEN}, {SEARCH_SAMPLES} search samples + {BASELINE_EVALUATIONS} "
        f"baseline evaluations per cell, one cell per GPU, {NODES} single-GPU nodes",
        "tasks": {t: {"train_examples": n, "sequences_per_example": per} for t, (n, per) in TASKS.items()},
        "flop_forward_per_sequence": flop_forward,
        "small_space_mean_mac_fraction": round(mean_fraction, 3),
        "strategy_train_factor": {s: round(f, 2) for s, f in factors.items()},
        "strategy_factor_source": {
            s: "assumed: one random sub-network per step, the small space's mean MAC fraction (no cell yet)"
            if s in assumed
            else "measured: train minutes of the committed findings cells over standard's (MiniLM, CPU, 1 thread)"
            for s in factors
        },
        "fixed_minutes_per_cell": round(fixed_minutes, 2),
        "train_sequences_per_epoch": round(train_sequences),
        "validation_sequences": round(validation_sequences),
        "train_pflop": round(train_flop / 1e15),
        "search_pflop_full_validation": round(search_flop_full / 1e15),
        "search_pflop_validation_capped": round(search_flop_capped / 1e15, 1),
        "per_gpu": per_gpu,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"ESTIMATE (no GPU ran): {result['grid']}")
    print(f"strategy factors: {result['strategy_train_factor']}")
    for name, rates in per_gpu.items():
        for dtype, r in rates.items():
            g, w = r["gpu_hours"], r[f"wall_hours_on_{NODES}_nodes"]
            print(f"  {name:5s} {dtype}: {g['total_validation_capped']:7.1f} GPU-h (capped validation), "
                  f"{g['total_full_validation']:7.1f} (full validation); {w['validation_capped']} h / "
                  f"{w['full_validation']} h on {NODES} nodes")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
