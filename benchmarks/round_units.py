"""How much of a pruned MiniLM would run LLM.int8 as an fp32 matmul, with and without ``--round-units``?

On CUDA, bitsandbytes computes an int8 linear whose input width is not a multiple of 4 with an fp32
matmul instead (``hardware.variants``; ``plan_linears`` names them). Searched FFN unit counts are any
integer, so about three quarters of pruned FFN down-projections fall back. This benchmark samples random
configs of the ``small`` and ``medium`` spaces of the packaged MiniLM (the same draws for every rounding),
cuts each out (``shared_extract``) and counts, with the project's own ``plan_linears``:

- the share of LLM.int8 linears, and of FFN down-projections, that fall back to fp32;
- the share of the quantized weights they hold (``int8_fallback_weight_share``);
- the share of configs with at least one such linear;
- how far rounding moves each config's encoder parameter fraction (the search's default cost).

Nothing is timed: this counts shapes, which decide the fallback on any GPU. GPU latency was not measured
(no GPU was lent to this work); ``benchmarks/gpu_check.py`` measures int8 rows with their fallback counts.

    python benchmarks/round_units.py [--samples 200] [--out benchmarks/results/round_units.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from prunebench.environment import environment
from prunebench.extract import shared_extract
from prunebench.hardware.variants import BNB_INT8_INNER_MULTIPLE, VARIANTS, plan_linears
from prunebench.models import load_model
from prunebench.supernet import CostModel, get_space

THREADS = 1
SPACES = ("small", "medium")
ROUNDINGS = (1, 4, 8)  # 1: today's search, no rounding


def _is_ffn_down_projection(name: str) -> bool:
    """BERT's FFN output linear (``layer.N.output.dense``), whose input width is the layer's unit count."""
    return name.endswith(".output.dense") and ".attention." not in name


def measure_space(loaded, space_name: str, samples: int, seed: int) -> dict:
    cost = CostModel.for_model(loaded)
    plain = get_space(space_name, loaded.dims)
    rng = np.random.default_rng(seed)
    draws = [plain.sample(rng) for _ in range(samples)]  # the same configs, rounded each way below
    int8 = VARIANTS["int8"]
    plain_fractions = np.array([cost.encoder_fraction(plain.masks(config)) for config in draws])
    results = {}
    for step in ROUNDINGS:
        space = get_space(space_name, loaded.dims, round_units=step)
        linears = fallback = ffn = ffn_fallback = configs_hit = 0
        weight_shares, fractions = [], []
        for config in draws:
            masks = space.masks(config)
            fractions.append(cost.encoder_fraction(masks))
            plan = plan_linears(shared_extract(loaded, masks), int8, "cuda")  # shapes only: any device kind
            falling = set(plan.int8_fp32_fallback)
            down = [name for name in plan.quantized if _is_ffn_down_projection(name)]
            linears, fallback = linears + len(plan.quantized), fallback + len(falling)
            ffn, ffn_fallback = ffn + len(down), ffn_fallback + len(falling.intersection(down))
            configs_hit += bool(falling)
            weight_shares.append(plan.int8_fallback_weight_share or 0.0)
        moved = np.array(fractions) - plain_fractions
        results[str(step)] = {
            "round_units": step,
            "distinct_sub_networks_log10": round(float(np.log10(float(space.size()))), 2),
            "fallback_linear_share": fallback / linears,
            "fallback_ffn_down_projection_share": ffn_fallback / ffn if ffn else 0.0,
            "fallback_weight_share_mean": float(np.mean(weight_shares)),
            "configs_with_a_fallback_linear": configs_hit / samples,
            "encoder_fraction_mean": float(np.mean(fractions)),
            "encoder_fraction_moved_mean_points": float(np.mean(moved) * 100),
            "encoder_fraction_moved_max_points": float(np.max(moved) * 100),
            "encoder_params_moved_mean_relative": float(np.mean(moved / np.maximum(plain_fractions, 1e-12))),
            "configs_moved": float(np.mean(moved > 0)),
        }
        row = results[str(step)]
        print(
            f"{space_name:6s} --round-units {step}: {row['fallback_linear_share']:.1%} of LLM.int8 linears "
            f"({row['fallback_ffn_down_projection_share']:.1%} of FFN down-projections, "
            f"{row['fallback_weight_share_mean']:.1%} of weights) fall back to fp32; encoder fraction moved "
            f"+{row['encoder_fraction_moved_mean_points']:.2f} points on average "
            f"(max +{row['encoder_fraction_moved_max_points']:.2f})"
        )
    return {"space": space_name, "samples": samples, "seed": seed, "by_round_units": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "round_units.json")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    started = time.time()
    loaded = load_model("minilm")
    spaces = [measure_space(loaded, name, args.samples, args.seed) for name in SPACES]
    report = {
        "benchmark": "round_units",
        "measured": "shapes only: for random configs of each space (the same draws for every rounding), the "
        f"LLM.int8 linears whose input width is not a multiple of {BNB_INT8_INNER_MULTIPLE} (an fp32 matmul on "
        "CUDA; hardware.variants.plan_linears) and the encoder parameter fraction (supernet.CostModel)",
        "not_measured": "GPU latency: no GPU was lent to this work, so how much the fallback costs (and what "
        "rounding wins back) in milliseconds is not measured here",
        "model": "minilm",
        "dims": loaded.dims.to_dict(),
        "threads": THREADS,
        "environment": environment(),
        "wall_time_s": time.time() - started,
        "spaces": spaces,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out} in {report['wall_time_s']:.0f} s")


if __name__ == "__main__":
    main()
