"""More ways to deploy, on the same axes (issue 15): ONNX Runtime, a trimmed vocabulary, and their combinations.

For MiniLM (the real all-MiniLM-L6-v2) and ``shape:bert-base`` (random weights: latency and memory do not depend
on trained weights), on this CPU at 1 thread, sequence length 128: PyTorch fp32, torch dynamic int8,
bitsandbytes int8 and nf4, ONNX Runtime fp32 and int8, and a 50%-encoder sub-network (the first half of the
layers) in fp32, dynamic int8 and ONNX Runtime int8, each with and without a vocabulary trimmed to the
Rotten Tomatoes training split (``extract.vocab``). Measured in one ``profile_models`` call per model (the
same timing, memory and interleaved ratio definitions as ``prunebench profile``). Latency and memory are given
as ratios to PyTorch fp32 of the same model: latency as the interleaved ``latency_ratio``, memory as
``memory_bytes`` (weights + peak RSS growth) over fp32's.

Batches: 1 and 8 for MiniLM; bert-base at batch 8 takes seconds per pass on one core, so it is measured at the
batches in ``BERT_BASE_BATCHES`` (see the JSON's ``left_out``).

    python benchmarks/deploy_options.py [--out benchmarks/results/deploy_options.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from prunebench.environment import environment
from prunebench.extract import extract
from prunebench.extract.vocab import TrimCounts, trim_summary, trim_with_counts
from prunebench.hardware.machine import machine_state
from prunebench.models import load_model
from prunebench.profiling import TimingConfig, profile_models
from prunebench.supernet import get_space
from prunebench.tasks import load_task
from prunebench.tasks.rows import tokenised_rows

THREADS, SEQ_LEN = 1, 128
MINILM_BATCHES, BERT_BASE_BATCHES = (1, 8), (1,)
FULL_VARIANTS = ("fp32", "dynamic-int8", "int8", "nf4", "onnx-fp32", "onnx-int8")
HALF_VARIANTS = ("fp32", "dynamic-int8", "onnx-int8")
TIMING = TimingConfig(warmup=1, min_repeats=6, max_repeats=40, round_size=3, max_seconds=3.0, remeasure_attempts=0)


def _trim_counts(loaded) -> TrimCounts:
    from collections import Counter

    data = load_task("rotten_tomatoes", seed=0)
    rows = tokenised_rows(data, loaded, SEQ_LEN)
    counts = Counter(t for row in rows["train"] for t in row["input_ids"])
    test = [t for row in rows["test"] for t in row["input_ids"]]
    return TrimCounts(counts, test, f"Rotten Tomatoes training split ({len(rows['train'])} texts, max_length 128)")


def bench_model(name: str, batches: tuple[int, ...], counts: TrimCounts, folder: Path) -> dict:
    loaded = load_model(name)
    space = get_space("small", loaded.dims)
    half = extract(loaded, space.masks({"num_layers": loaded.dims.num_layers // 2,
                                        "num_heads": loaded.dims.num_heads,
                                        "num_units": loaded.dims.intermediate_size}))  # fmt: skip
    trimmed = trim_with_counts(loaded, counts)
    half_trimmed = trim_with_counts(half, counts)
    started = time.perf_counter()
    before = machine_state()
    out = folder / name.replace(":", "-")
    frames = []
    for models, variants in (
        ({"full": loaded, "full+vocab": trimmed.loaded}, FULL_VARIANTS),
        ({"full": loaded, "half": half, "half+vocab": half_trimmed.loaded}, HALF_VARIANTS),
    ):
        frames.append(
            profile_models(
                models,
                out,
                target="cpu",
                variants=variants,
                batch_sizes=batches,
                seq_lens=(SEQ_LEN,),
                threads=THREADS,
                timing=TIMING,
            )  # fmt: skip
        )
    table = frames[-1]
    after = machine_state()
    rows = []
    measured = table[(table["mode"] == "measured")]
    for batch in batches:
        at = measured[measured["batch_size"] == batch]
        reference = at[(at["model"] == "full") & (at["variant"] == "fp32")].iloc[0]
        for record in at.to_dict("records"):
            ok = record["status"] == "ok"
            rows.append(
                {
                    "model": record["model"], "variant": record["variant"], "batch_size": batch,
                    "status": record["status"], "reason": record["reason"] if ok is False else None,
                    "latency_ms": record["latency_s"] * 1e3 if ok else None,
                    "latency_ratio": record["latency_ratio"] if ok else None,
                    "latency_ratio_interval": (
                        [record["latency_ratio_low"], record["latency_ratio_high"]] if ok else None
                    ),
                    "memory_mib": record["memory_bytes"] / 2**20 if ok else None,
                    "memory_ratio": record["memory_bytes"] / reference["memory_bytes"] if ok else None,
                    "weight_mib": record["weight_bytes"] / 2**20 if ok else None,
                    "stable": record["stable"],
                }
            )  # fmt: skip
    return {
        "model": name,
        "batches": list(batches),
        "seconds": round(time.perf_counter() - started, 1),
        "load_before": _plain(before),
        "load_after": _plain(after),
        "trim": {"full": trim_summary(trimmed), "half": trim_summary(half_trimmed)},
        "rows": rows,
    }


def _plain(state) -> dict:
    return dataclasses.asdict(state) if dataclasses.is_dataclass(state) else dict(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "deploy_options.json")
    parser.add_argument("--models", default="minilm,shape:bert-base")
    parser.add_argument(
        "--work", type=Path, default=None,
        help="Keep the profile folders here (default: a temporary folder); a rerun resumes finished points.",
    )  # fmt: skip
    parser.add_argument("--note", action="append", default=[], help="A note to keep in the JSON (repeatable).")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    counts = _trim_counts(load_model("minilm"))  # shape:bert-base uses MiniLM's tokenizer
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="deploy-options-") as folder:
        for name in args.models.split(","):
            batches = MINILM_BATCHES if name == "minilm" else BERT_BASE_BATCHES
            results.append(bench_model(name, batches, counts, args.work or Path(folder)))
            print(json.dumps({"model": name, "seconds": results[-1]["seconds"]}), flush=True)
            _write(
                args.out, _record(results, started) | {"notes": args.note}
            )  # after each model: a timeout keeps what was measured


def _write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {path}")


def _record(results: list[dict], started: float) -> dict:
    return {
        "what": __doc__.split("\n\n")[0],
        "threads": THREADS,
        "torch_threads": torch.get_num_threads(),
        "seq_len": SEQ_LEN,
        "cpu_count": os.cpu_count(),
        "load_average_end": os.getloadavg(),
        "seconds": round(time.perf_counter() - started, 1),
        "timing": TIMING.__dict__,
        "definitions": {
            "latency_ratio": "median pass over PyTorch fp32's (same model, same point), timed in interleaved rounds",
            "memory_ratio": "memory_bytes (exact weight bytes + peak RSS growth during the passes) over fp32's",
        },
        "left_out": [
            "shape:bert-base at batch 8: about 3-4 s per fp32 pass on one shared core (bnb int8 several times "
            "that), too slow for this machine's time budget; measured at batch "
            + ", ".join(map(str, BERT_BASE_BATCHES)),
            "test error: the benchmark's models are not fine-tuned (MiniLM has a fresh head); the test-split error "
            "before and after trimming comes from 'prunebench profile RUN --score' on a run",
        ],
        "environment": environment(),
        "results": results,
    }


if __name__ == "__main__":
    main()
