"""Does physical extraction deliver the speedup the MAC count promises?

For ``shape:bert-base`` and the real ``minilm``, on this CPU with 1 thread, batch 8,
sequence 128: latency of the full model, of the masked super-network (hooks on the
full model) and of the extracted model, for ``small``-space sub-networks at about
25%, 50% and 75% of the encoder parameters. Two ways to reach each fraction:
``depth`` (fewer layers, full width) and ``width`` (all layers, fewer heads and units).
Ideal speedup = full MACs / sub-network MACs; efficiency = achieved / ideal.
Target (issue 2): efficiency >= 0.85 at 50%.

    python benchmarks/extraction_speedup.py [--out benchmarks/results/extraction_speedup.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from prunebench.environment import environment
from prunebench.extract import extract
from prunebench.hardware.timing import LatencyStats
from prunebench.models import load_model
from prunebench.supernet import CostModel, MaskedSuperNetwork, get_space

THREADS, BATCH, SEQ_LEN = 1, 8, 128
FRACTIONS = (0.25, 0.5, 0.75)
TARGET_EFFICIENCY_AT_HALF = 0.85


def interleaved(calls: dict, repeats: int, warmup: int = 2) -> dict[str, dict]:
    """Time each ``name: (setup, fn)`` once per round, rounds repeated; setup is not timed."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch.inference_mode():
        for round_index in range(warmup + repeats):
            for name, (setup, fn) in calls.items():
                if setup is not None:
                    setup()
                start = time.perf_counter()
                fn()
                if round_index >= warmup:
                    times[name].append(time.perf_counter() - start)
    return {name: LatencyStats.from_times(t, warmup).to_dict() for name, t in times.items()}


def bench_model(spec: str, repeats: int) -> dict:
    loaded = load_model(spec)
    space, cost = get_space("small", loaded.dims), CostModel.for_model(loaded)
    inputs = {
        "input_ids": torch.randint(1000, 20000, (BATCH, SEQ_LEN), generator=torch.Generator().manual_seed(0)),
        "attention_mask": torch.ones(BATCH, SEQ_LEN, dtype=torch.long),
    }

    def forward(model):
        return lambda: model(**inputs)

    full_masks = space.masks(space.largest())
    supernet = MaskedSuperNetwork(loaded)
    rows = []
    for fraction in FRACTIONS:
        for shape in ("depth", "width"):
            config = space.at_fraction(fraction, shape)
            masks = space.masks(config)
            extracted_model = extract(loaded, masks).model
            # Full, masked and extracted take turns in every round, so a slow phase of a
            # shared machine slows all three alike instead of skewing one ratio.
            times = interleaved(
                {
                    "full": (supernet.reset, forward(loaded.model)),
                    "masked": (lambda masks=masks: supernet.apply(masks), forward(loaded.model)),
                    "extracted": (None, forward(extracted_model)),
                },
                repeats,
            )
            full, masked, extracted = times["full"], times["masked"], times["extracted"]
            ideal = cost.macs(full_masks, SEQ_LEN) / cost.macs(masks, SEQ_LEN)
            achieved = full["median"] / extracted["median"]
            rows.append(
                {
                    "target_fraction": fraction,
                    "shape": shape,
                    "config": config,
                    "encoder_parameter_fraction": cost.encoder_fraction(masks),
                    "parameter_fraction": cost.relative_parameters(masks),
                    "ideal_speedup_mac_ratio": ideal,
                    "masked_speedup": full["median"] / masked["median"],
                    "extracted_speedup": achieved,
                    "efficiency": achieved / ideal,
                    "latency_s": {"full": full, "masked": masked, "extracted": extracted},
                }
            )
            print(
                f"{spec:16s} {shape:5s} {fraction:.2f}: ideal {ideal:.2f}x, extracted {achieved:.2f}x, "
                f"masked {rows[-1]['masked_speedup']:.2f}x, efficiency {achieved / ideal:.2f}"
            )
    supernet.remove()
    at_half = [r for r in rows if r["target_fraction"] == 0.5]
    return {
        "model": spec,
        "dims": loaded.dims.to_dict(),
        "full_macs_per_sequence": cost.macs(full_masks, SEQ_LEN),
        "subnetworks": rows,
        "target_met_at_half": {r["shape"]: r["efficiency"] >= TARGET_EFFICIENCY_AT_HALF for r in at_half},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "extraction_speedup.json")
    parser.add_argument("--models", default="shape:bert-base,minilm")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    started = time.time()
    results = [bench_model(spec, args.repeats) for spec in args.models.split(",")]
    report = {
        "benchmark": "extraction_speedup",
        "measured": "CPU wall-clock latency of one forward pass (inference_mode, perf_counter), median of "
        "repeats; full, masked and extracted timed in turn in every round",
        "device": "cpu",
        "threads": THREADS,
        "batch_size": BATCH,
        "seq_len": SEQ_LEN,
        "target": f"extracted speedup >= {TARGET_EFFICIENCY_AT_HALF} x ideal (MAC ratio) at 50% encoder parameters",
        "environment": environment(),
        "wall_time_s": time.time() - started,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
