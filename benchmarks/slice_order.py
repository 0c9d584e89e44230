"""Which heads and units a sub-network keeps: the first k (the search spaces) or the most important k.

Finding (b) of the findings sweep: on STS-B importance pruning beat weight-sharing NAS on the same
super-network (error at <= 50% of the encoder 0.22 against 0.58), on the classification tasks it did
not. The `small` space differs from the importance baseline in two ways: it keeps the *first* h heads
and u units of every layer (the order the super-network was trained to), and it keeps the same count
in every layer. This benchmark separates the two, on one trained findings cell, at a few encoder
fractions, every layer kept:

- ``first``: the first h heads and u units of each layer (the `small` space's width-only sub-network);
- ``top_per_layer``: the same h and u in each layer, the most important ones (gradient importance);
- ``top_global``: the importance baseline, the top fraction of heads and of units over all layers.

    python benchmarks/slice_order.py runs/findings/cells/minilm-stsb-full-small-morea-cpu-seed0 \
        runs/findings/cells/minilm-rotten_tomatoes-full-small-morea-cpu-seed0

It needs the cells' checkpoints (a finished `prunebench sweep benchmarks/findings.toml`), which are not
committed. Writes benchmarks/results/slice_order.json; one torch thread.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from prunebench.config import TrainConfig
from prunebench.environment import environment
from prunebench.models import load_model
from prunebench.rundir import RunDir, read_run
from prunebench.search.evaluator import CandidateEvaluator
from prunebench.search.methods import keep_top
from prunebench.supernet.importance import gradient_importance
from prunebench.supernet.masking import Masks
from prunebench.supernet.spaces import get_space
from prunebench.tasks import make_collator
from prunebench.tasks.rows import load_run_task, subset, tokenised_rows, validation_rows

RESULTS = Path(__file__).parent / "results"
FRACTIONS = (0.3, 0.5, 0.7)
IMPORTANCE_EXAMPLES = 512  # as the search's importance baseline (SearchConfig.importance_examples)
TEST_EXAMPLES = 1000  # as the findings cells' scoring (score_max_examples)


def _top_k_per_row(scores: np.ndarray, k: int) -> torch.Tensor:
    mask = np.zeros_like(scores)
    np.put_along_axis(mask, np.argsort(-scores, axis=1, kind="stable")[:, :k], 1.0, axis=1)
    return torch.tensor(mask, dtype=torch.float32)


def _top_global(scores: np.ndarray, fraction: float) -> torch.Tensor:
    return torch.tensor(keep_top(scores, fraction), dtype=torch.float32)  # as the importance baseline keeps them


def measure(run_dir: Path) -> dict:
    train = TrainConfig.from_dict(read_run(run_dir)["train"])
    data = load_run_task(train)
    spec = data.spec
    loaded = load_model(RunDir(run_dir).checkpoint, task_kind=spec.kind, num_labels=spec.num_labels)
    rows = tokenised_rows(data, loaded, train.max_length)
    collator = make_collator(spec, loaded.tokenizer)
    started = time.perf_counter()
    heads, units = gradient_importance(loaded, subset(rows["train"], IMPORTANCE_EXAMPLES, train.seed), collator)
    importance_seconds = time.perf_counter() - started
    splits = {
        "validation": validation_rows(rows, train, train.max_eval_examples),
        "test": subset(rows["test"], TEST_EXAMPLES, 0),
    }
    space = get_space("small", loaded.dims)
    all_layers = torch.ones(loaded.dims.num_layers, dtype=torch.bool)
    found = []
    for fraction in FRACTIONS:
        config = space.at_fraction(fraction, "width")
        h, u = config["num_heads"], config["num_units"]
        head_share, unit_share = h / heads.shape[1], u / units.shape[1]
        variants = {
            "first": space.masks(config),
            "top_per_layer": Masks(_top_k_per_row(heads, h), _top_k_per_row(units, u), all_layers),
            "top_global": Masks(_top_global(heads, head_share), _top_global(units, unit_share), all_layers),
        }
        found.append(({"fraction": fraction, "num_heads": h, "num_units": u}, variants))
    full = {}
    for split, split_rows in splits.items():  # one evaluator per split: its batches are built once
        with CandidateEvaluator(loaded, spec, split_rows, collator) as evaluator:
            for row, variants in found:
                for name, masks in variants.items():
                    row[f"{split}_{name}"] = round(float(evaluator.evaluate(masks).metrics["metric"]), 4)
            full[split] = round(float(evaluator.evaluate(Masks.full(loaded.dims)).metrics["metric"]), 4)
    for row, _ in found:
        print(run_dir.name, json.dumps(row), flush=True)
    return {
        "cell": run_dir.name,
        "task": train.task,
        "strategy": train.strategy,
        "metric": spec.metric,
        "examples": {split: len(split_rows) for split, split_rows in splits.items()},
        "importance_seconds": round(importance_seconds, 1),
        "full_model": full,
        "fractions": [row for row, _ in found],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cells", nargs="+", type=Path, help="trained findings cells (run directories)")
    parser.add_argument("--out", type=Path, default=RESULTS / "slice_order.json")
    args = parser.parse_args()
    missing = [str(c) for c in args.cells if not RunDir(c).has_checkpoint()]
    if missing:
        raise SystemExit(f"no checkpoint in {', '.join(missing)}: run the findings sweep first")
    torch.set_num_threads(1)
    result = {
        "benchmark": "slice_order",
        "question": "do sub-networks lose more by keeping the first heads/units or by keeping equal counts per layer?",
        "fraction_note": "fraction: the share of heads and of FFN units kept in every layer (all layers kept), "
        "set by the small space's width-only sub-network; top_global keeps the same shares over all layers",
        "importance_examples": IMPORTANCE_EXAMPLES,
        "torch_threads": 1,
        "cells": [measure(cell) for cell in args.cells],
        "environment": environment(),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
