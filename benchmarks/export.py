"""What ``prunebench export`` writes, measured: file sizes, onnxruntime latency alone against the profile's, and
agreement with ``load_model``.

Models: MiniLM (the real all-MiniLM-L6-v2, mean pooling, a fresh seeded 2-label head: not fine-tuned) and a
sub-network of it with layers of different sizes and a layer without heads (``PRUNED``, extracted with the
``medium`` space; no Pareto set of a trained run is at hand here, so this stands in for one). For each:

1. ``prunebench export --variant onnx-int8`` writes the folder (its own check: 8 sentences, separate process);
2. ``ROUNDS`` times, alternating: ``profile_models`` (the same code as ``prunebench profile``) measures fp32,
   onnx-fp32 and onnx-int8 at batch 1, sequence 128, 1 thread on this CPU (the profile's latency, p50 of one
   batch, is the reference); then a new process with ``import prunebench`` blocked times ``model.onnx`` and
   ``model-int8.onnx`` with onnxruntime alone (1 intra-op thread) on the profiler's own inputs for that
   point (``make_inputs``: random ids, batch 1 x 128, no padding): p50 of ``REPEATS`` calls after ``WARMUP``.
   The ratio alone / profile is taken per round (both saw the same stretch of load), and its median kept;
3. in the first round the same process also runs the first ``SENTENCES`` SST-2 dev sentences (GLUE TSV,
   ``--data-dir``) through the
   folder's tokenizer and both files, in batches of 32; this process compares them with ``load_model``'s
   logits: largest and mean absolute difference and argmax agreement. MiniLM's head is untrained, so its
   logits are small and close together: argmax agreement there is a harsh test of int8, not of accuracy.

The machine is shared by several engineers: latencies carry that noise (the JSON keeps the load average
before and after), and the ratio "alone / profile" is what to read, measured minutes apart.

    python benchmarks/export.py [--out benchmarks/results/export.json] [--data-dir /work/shared/data/glue]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prunebench.config import ExtractConfig
from prunebench.deploy.export import ExportConfig, export
from prunebench.environment import environment
from prunebench.extract import extract_subnetworks
from prunebench.hardware.measure import make_inputs
from prunebench.models import load_model
from prunebench.profiling import TimingConfig, profile_models

THREADS, BATCH, SEQ_LEN = 1, 1, 128
WARMUP, REPEATS, ROUNDS = 5, 60, 3
SENTENCES, CHUNK = 256, 32
PRUNED = {  # 6 layers of MiniLM (12 heads, 1536 units): uneven, one layer without heads
    "num_heads_0": 12, "num_units_0": 1536, "num_heads_1": 8, "num_units_1": 1024, "num_heads_2": 6,
    "num_units_2": 768, "num_heads_3": 0, "num_units_3": 512, "num_heads_4": 4, "num_units_4": 700,
    "num_heads_5": 2, "num_units_5": 300,
}  # fmt: skip
TIMING = TimingConfig(warmup=2, min_repeats=10, max_repeats=60, round_size=3, max_seconds=4.0, remeasure_attempts=0)

# Runs in a new process: prunebench blocked, then onnxruntime and tokenizers alone.
CLIENT = r"""
import importlib.abc, json, sys, time
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "prunebench":
            raise ImportError("blocked")
sys.meta_path.insert(0, Blocked())
import numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
folder, inputs_file, sentences_file, warmup, repeats, chunk, out_file = sys.argv[1:8]
timed = dict(np.load(inputs_file))
sentences = json.loads(open(sentences_file).read())
tokenizer = Tokenizer.from_file(folder + "/tokenizer.json")
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
found = {}
for name in ("model.onnx", "model-int8.onnx"):
    session = ort.InferenceSession(folder + "/" + name, options, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]
    feed = {n: timed[n] for n in wanted}
    for _ in range(int(warmup)):
        session.run(["logits"], feed)
    times = []
    for _ in range(int(repeats)):
        start = time.perf_counter()
        session.run(["logits"], feed)
        times.append(time.perf_counter() - start)
    logits = []
    for i in range(0, len(sentences), int(chunk)):
        encoded = tokenizer.encode_batch(sentences[i : i + int(chunk)])
        batch = {"input_ids": [e.ids for e in encoded], "attention_mask": [e.attention_mask for e in encoded],
                 "token_type_ids": [e.type_ids for e in encoded]}
        logits += session.run(["logits"], {n: np.array(batch[n], dtype=np.int64) for n in wanted})[0].tolist()
    found[name] = {"times_s": times, "logits": logits}
json.dump(found, open(out_file, "w"))
"""


def _reference_logits(loaded, sentences: list[str]) -> np.ndarray:
    logits = []
    for i in range(0, len(sentences), CHUNK):
        inputs = loaded.tokenizer(sentences[i : i + CHUNK], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            logits.append(loaded.model(**inputs).logits.numpy())
    return np.concatenate(logits)


def _cpu() -> dict:
    info = {"machine": platform.machine(), "processor": platform.processor(), "cpu_count": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and "model" not in info:
            info["model"] = value.strip()
        if key.strip() == "flags" and "flags" not in info:
            flags = value.split()
            info["flags"] = [f for f in flags if f.startswith(("avx", "fma", "amx", "sse4", "f16c", "vnni"))]
    return info


def _alone(out: Path, work: Path, sentences: list[str]) -> dict:
    """The folder run by onnxruntime alone in a new process (prunebench blocked): times and logits."""
    (work / "sentences.json").write_text(json.dumps(sentences))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", CLIENT, str(out), str(work / "inputs.npz"), str(work / "sentences.json"),
                    str(WARMUP), str(REPEATS), str(CHUNK), str(work / "client.json")], check=True, env=env)  # fmt: skip
    return json.loads((work / "client.json").read_text())


def bench(label: str, model_path: str, sentences: list[str], work: Path) -> dict:
    loaded = load_model(model_path)
    out = work / f"export-{label}"
    started = time.perf_counter()
    result = export(model_path, out, ExportConfig(variant="onnx-int8"))
    export_seconds = time.perf_counter() - started
    inputs = {k: v.numpy() for k, v in make_inputs(loaded, BATCH, SEQ_LEN, torch.device("cpu")).items()}
    np.savez(work / "inputs.npz", **inputs)
    # The machine is shared: the profile and the standalone timing alternate, ROUNDS times, so both see the
    # same stretch of load; each round's profile is a fresh one (a profile folder resumes finished points).
    rounds = []
    for index in range(ROUNDS):
        load_before = os.getloadavg()
        table = profile_models({label: loaded}, work / f"profile-{label}-{index}", target="cpu",
                               variants=("fp32", "onnx-fp32", "onnx-int8"), batch_sizes=(BATCH,),
                               seq_lens=(SEQ_LEN,), threads=THREADS, timing=TIMING)  # fmt: skip
        profile = table[(table["model"] == label) & (table["status"] == "ok")].set_index("variant")
        client = _alone(out, work, sentences if index == 0 else [])
        if index == 0:
            logits = {name: np.array(found["logits"]) for name, found in client.items()}
        rounds.append({
            "profile_ms": {v: float(profile.loc[v, "latency_s"]) * 1e3 for v in profile.index},
            "alone_ms": {name: float(np.median(found["times_s"])) * 1e3 for name, found in client.items()},
            "alone_p90_ms": {name: float(np.percentile(found["times_s"], 90)) * 1e3 for name, found in client.items()},
            "load_average": [load_before, os.getloadavg()],
        })  # fmt: skip
    reference = _reference_logits(loaded, sentences)
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if not p.name.startswith(".")}
    rows = {}
    for variant, name in (("onnx-fp32", "model.onnx"), ("onnx-int8", "model-int8.onnx")):
        alone = [r["alone_ms"][name] for r in rounds]
        profiled = [r["profile_ms"].get(variant) for r in rounds]
        ratios = [a / p for a, p in zip(alone, profiled, strict=True) if p]
        rows[variant] = {
            "file": name,
            "file_mib": files[name] / 2**20,
            "latency_alone_ms_per_round": alone,
            "latency_profile_ms_per_round": profiled,
            "alone_over_profile_per_round": ratios,
            "alone_over_profile_median": float(np.median(ratios)) if ratios else None,
            "within_10_percent": bool(ratios) and abs(float(np.median(ratios)) - 1) <= 0.10,
            "max_abs_diff": float(np.abs(logits[name] - reference).max()),
            "mean_abs_diff": float(np.abs(logits[name] - reference).mean()),
            "argmax_agreement": float((logits[name].argmax(-1) == reference.argmax(-1)).mean()),
        }
    config = json.loads((out / "config.json").read_text())
    return {
        "model": label,
        "source": model_path,
        "layer_heads": config["layer_heads"],
        "layer_units": config["layer_units"],
        "pooling": config["pooling"],
        "files_bytes": files,
        "export_seconds": round(export_seconds, 1),
        "export_check": result.check,
        "reference_logit_scale": float(np.abs(reference).max()),
        "pytorch_fp32_profile_ms_per_round": [r["profile_ms"].get("fp32") for r in rounds],
        "variants": rows,
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "export.json")
    parser.add_argument("--data-dir", type=Path, default=Path("/work/shared/data/glue"))
    parser.add_argument("--note", action="append", default=[], help="A note to keep in the JSON (repeatable).")
    parser.add_argument(
        "--pareto-model", type=Path, default=None,
        help="Also a Pareto member of a trained run (RUN/search/NAME/models/pNN), fine-tuned: its head decides.",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    dev = pd.read_csv(args.data_dir / "SST-2" / "dev.tsv", sep="\t", quoting=3, keep_default_na=False)
    sentences = [str(s) for s in dev["sentence"].head(SENTENCES)]
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
        work = Path(folder)
        pruned = work / "pruned"
        extract_subnetworks("minilm", ExtractConfig(space="medium", config=json.dumps(PRUNED), verify=True), pruned)
        models = [("minilm", "minilm"), ("minilm-uneven", str(pruned))]
        if args.pareto_model is not None:
            models.append(("pareto-" + args.pareto_model.name, str(args.pareto_model)))
        for label, path in models:
            (work / label).mkdir()
            results.append(bench(label, path, sentences, work / label))
            print(json.dumps({"model": label, "variants": results[-1]["variants"]}, default=str), flush=True)
    record = {
        "what": __doc__.split("\n\n")[0],
        "how": __doc__.split("\n\n")[1:3],
        "threads": THREADS, "batch_size": BATCH, "seq_len": SEQ_LEN, "warmup": WARMUP, "repeats": REPEATS,
        "rounds": ROUNDS,
        "sentences": f"first {SENTENCES} SST-2 dev sentences, batches of {CHUNK}",
        "profile_timing": TIMING.__dict__,
        "cpu": _cpu(),
        "shared_machine": "2 cores shared with other engineers' jobs while this ran: latencies are disturbed",
        "seconds": round(time.perf_counter() - started, 1),
        "notes": args.note,
        "environment": environment(),
        "results": results,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
