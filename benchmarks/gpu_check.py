"""The one call to run on a lent GPU: proves prunebench's CUDA path and measures it, in at most 9 minutes.

    python benchmarks/gpu_check.py                 # on the GPU machine (benchmarks/README.md: preparation, the call)
    python benchmarks/gpu_check.py --dry-run       # here, on CPU: every step with tiny shapes, nothing on CUDA

Steps, each recorded in the JSON whether it passed or failed (one failing step does not stop the others):

1. ``environment``: Python, torch, CUDA, the GPU (NVML and torch), the hardware profile it matches, the packages
   the profiling path needs and the ones it must not need (syne-tune, pymoo, datasets: imported in a fresh process
   with them made unimportable).
2. ``profile-minilm`` and ``profile-bert-base``: ``shape:minilm`` and ``shape:bert-base``, each with two extracted
   sub-networks of the ``medium`` space (layers of different sizes; one with FFN widths that are not multiples of 4,
   so LLM.int8 falls back to fp32 in those linears), every variant, batch 1, 8, 32 and 128, sequence 128,
   calibrated (measured, and estimated for the same points from the GPU's profile).
3. ``train``: a few CUDA training steps of a super-network (``full`` strategy: sandwich + distillation), stopped
   and resumed from its checkpoint (the trainer state, RNG included, is read back).
4. ``search-eval``: the trained super-network's sub-networks scored on the validation split on CUDA, masked and
   sliced.
5. ``oom``: one point forced out of memory (a batch the GPU cannot hold); the row must say ``oom`` and the next
   point must still be measured.

Writes ``benchmarks/results/gpu/<gpu>.json`` (``--out`` to change): the measured rows, the estimate error per
variant and batch size (estimated / measured latency - 1), the steps and the environment. With ``--dry-run`` the
same steps run on the CPU with ``shape:bert-tiny`` and tiny points, the OOM is simulated (a forward hook raises
torch's out-of-memory error), and the file is ``dry-run-cpu.json`` in a temporary folder unless ``--out`` says.
Exit status: 0 when every step passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout's prunebench, installed or not

RESULTS = REPO / "benchmarks" / "results" / "gpu"
BUDGET_S = 9 * 60  # the whole check, on one lent GPU
NOT_THERE = ("syne_tune", "pymoo", "datasets")  # absent on the lent GPU machine; the profiling path must not need them
PACKAGES = ("torch", "transformers", "bitsandbytes", "accelerate", "nvidia-ml-py", "pandas", "pyarrow", "numpy",
            "scipy", "scikit-learn", "datasets", "safetensors", "tokenizers")  # fmt: skip


class Check:
    """The JSON being built, and the clock: every step is timed, and one that fails is recorded, not raised."""

    def __init__(self, dry_run: bool, budget_s: float):
        self.dry_run, self.budget_s, self.started = dry_run, budget_s, time.monotonic()
        self.record: dict = {
            "what": "benchmarks/gpu_check.py: prunebench's CUDA path on one GPU (see the script's docstring)",
            "dry_run": dry_run,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "budget_s": budget_s,
            "steps": {},
        }

    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def step(self, name: str, run, *, needs_s: float = 0.0) -> object:
        entry: dict = {"status": "ok"}
        if self.left_s() < needs_s:
            entry = {
                "status": "not run",
                "reason": f"{self.left_s():.0f} s left of the budget, the step needs {needs_s:.0f}",
            }
            self.record["steps"][name] = entry
            print(f"[{name}] not run: {entry['reason']}", flush=True)
            return None
        print(f"[{name}] ({self.left_s():.0f} s left)", flush=True)
        began = time.monotonic()
        result = None
        try:
            result = run()
            if isinstance(result, dict):
                entry |= result.pop("_check", {})
                entry["result"] = result
        except BaseException as error:  # noqa: BLE001 - a failing step is recorded, the check goes on
            if isinstance(error, KeyboardInterrupt):
                raise
            entry = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                     "traceback": traceback.format_exc()[-4000:]}  # fmt: skip
            print(entry["traceback"], file=sys.stderr, flush=True)
        entry["seconds"] = round(time.monotonic() - began, 2)
        self.record["steps"][name] = entry
        print(f"[{name}] {entry['status']} in {entry['seconds']} s", flush=True)
        return result

    def failed(self) -> list[str]:
        return [name for name, entry in self.record["steps"].items() if entry["status"] != "ok"]


# --- 1. environment ---------------------------------------------------------------------------------------------


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def import_without_stack() -> dict:
    """Import the profiling path (and the search evaluator, the trainer) in a fresh process with syne-tune, pymoo
    and datasets unimportable, as on the lent GPU machine (datasets travels for the training step only)."""
    code = (
        "import sys\n"
        f"for name in {NOT_THERE!r}: sys.modules[name] = None\n"
        "import prunebench.profiling, prunebench.hardware.estimate, prunebench.search.evaluator\n"
        "from prunebench.cli import main\n"
        "sys.argv = ['prunebench', 'profile', '--help']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"the profiling path needs {NOT_THERE}: {done.stderr.strip().splitlines()[-1:]}")
    return {"blocked": list(NOT_THERE), "imports": "prunebench.profiling, search.evaluator, cli profile --help"}


def environment_step(check: Check) -> dict:
    import torch

    from prunebench.environment import environment
    from prunebench.hardware.profiles import detect_devices, load_profiles

    report = detect_devices()
    gpus = [{"index": g.index, "name": g.name, "memory_total_bytes": g.memory_total_bytes,
             "compute_capability": g.compute_capability, "driver": g.driver_version, "source": g.source}
            for g in report.gpus]  # fmt: skip
    matched = [name for name, p in load_profiles().items() if report.gpus and p.matches(report.gpus[0].name)]
    found = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda,
        "gpus": gpus,
        "nvml_error": report.nvml_error,
        "cpu": report.cpu.model,
        "profile": matched[0] if matched else None,
        "prunebench": environment(),
    }
    check.record["environment"] = found
    if not check.dry_run and not gpus:
        raise RuntimeError(f"no GPU found: {report.found_text()}")
    if not check.dry_run and not matched:
        raise RuntimeError(f"{gpus[0]['name']} matches no profile in profiles/*.toml; add one (gpu_match family)")
    return {"gpu": gpus[0]["name"] if gpus else None, "profile": found["profile"]}


# --- 2. profiles ----------------------------------------------------------------------------------------------


def subnetwork_configs(dims) -> dict[str, dict]:
    """Two ``medium``-space sub-networks whose layers differ in size: ``odd`` keeps FFN widths that are not multiples
    of 4 (LLM.int8 runs those linears in fp32), ``half`` drops every other layer and keeps multiples of 8."""
    layers, heads, units = dims.num_layers, dims.num_heads, dims.intermediate_size
    odd, half = {}, {}
    for i in range(layers):
        odd[f"num_heads_{i}"] = max(1, heads - (i % 3))
        odd[f"num_units_{i}"] = units * (layers - i) // (layers + 1) // 4 * 4 + 1 + 2 * (i % 2)  # 1 or 3 mod 4
        half[f"num_heads_{i}"] = heads // 2 if i % 2 == 0 else 0
        half[f"num_units_{i}"] = (units // 2) // 8 * 8 if i % 2 == 0 else 0
    return {"odd-widths": odd, "half-layers": half}


def extract_family(shape: str, folder: Path) -> list:
    """``shape`` and its two sub-networks (written under ``folder``), as profiling takes them."""
    from prunebench.extract.export import export_subnetworks
    from prunebench.models import load_model
    from prunebench.supernet.spaces import get_space

    loaded = load_model(shape)
    space = get_space("medium", loaded.dims)
    configs = subnetwork_configs(loaded.dims)
    export_subnetworks(loaded, space, configs, folder, verify=True, overwrite=True, seq_len=16)
    return {"full": shape} | {name: folder / name for name in configs}


def profile_step(check: Check, shape: str, target: str, work: Path, points: dict) -> dict:
    from prunebench.config import TimingConfig
    from prunebench.profiling import profile_models

    models = extract_family(shape, work / f"models-{shape.split(':')[1]}")
    timing = TimingConfig(**points["timing"])
    folder = work / f"profile-{shape.split(':')[1]}"
    table = profile_models(
        models, folder, target=target, batch_sizes=points["batch_sizes"],
        seq_lens=points["seq_lens"], calibrate=True, timing=timing,
    )  # fmt: skip
    # the corrections later estimates for this GPU use (hardware/corrections.py): commit them as
    # profiles/corrections/<gpu>.json after the call
    check.record.setdefault("calibration", {})[shape] = json.loads((folder / "calibration.json").read_text())
    table = table.assign(family=shape)
    check.tables.append(table)
    measured = table[table["mode"] == "measured"]
    counts = measured["status"].value_counts().to_dict()
    bad = measured[measured["status"].isin(["error"])]
    result = {"rows": len(table), "measured_status": counts}
    if len(bad):
        first = bad.iloc[0]
        result["_check"] = {"status": "failed", "error": f"{len(bad)} error rows, e.g. {first['variant']} "
                                                         f"{first['model']}: {first['reason']}"}  # fmt: skip
    return result


# --- 3. training and 4. search evaluation -----------------------------------------------------------------------


def write_task_files(folder: Path, examples: int) -> tuple[Path, Path]:
    """A small two-class text task (seeded), as ``--task files`` reads it."""
    import random

    rng = random.Random(0)
    good, bad = ["fine", "great", "lovely", "superb"], ["awful", "dull", "poor", "tedious"]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, count in (("train.csv", examples), ("test.csv", examples // 4)):
        lines = ["text,label"]
        for i in range(count):
            label = i % 2
            words = [rng.choice(good if label else bad) for _ in range(rng.randint(3, 12))]
            lines.append(f"{' '.join(words)} example {name[:-4]} {i},{label}")
        (folder / name).write_text("\n".join(lines) + "\n")
        paths.append(folder / name)
    return paths[0], paths[1]


def train_config(model: str, device: str, work: Path, examples: int):
    from prunebench.config import TrainConfig

    train, test = write_task_files(work / "task", examples)
    return TrainConfig(
        model=model, task="files", train_file=str(train), test_file=str(test), text_columns=("text",),
        label_column="label", task_kind="classification", strategy="full", epochs=1, batch_size=8, max_length=64,
        device=device, threads=None if device != "cpu" else 1, checkpoint_every=2, max_eval_examples=32, seed=0,
    )  # fmt: skip


def train_step(check: Check, model: str, device: str, work: Path) -> dict:
    from prunebench.supernet.training import train_supernet

    config = train_config(model, device, work, examples=96)
    run = work / "run"
    first = train_supernet(config, run, show_progress=False, stop_after_steps=3)
    resumed = train_supernet(config, run, resume=True, show_progress=False)  # reads the trainer state back
    check.run_dir, check.train_config = run, config
    log = resumed.log  # the epoch's validation scores of the largest, middle and smallest sub-networks
    losses = [float(v) for v in log["train_loss"]] if "train_loss" in log else []
    if not resumed.finished or not losses or not all(math.isfinite(v) for v in losses):
        raise RuntimeError(f"training did not finish with finite losses: finished={resumed.finished} {losses[:5]}")
    return {"steps_before_stop": first.step, "steps": resumed.step, "total_steps": resumed.total_steps,
            "resumed": True, "log": json.loads(log.to_json(orient="records"))}  # fmt: skip


def search_eval_step(check: Check, device: str) -> dict:
    import numpy as np

    from prunebench.config import EvalSettings
    from prunebench.models import load_model
    from prunebench.rundir import RunDir
    from prunebench.search.evaluator import CandidateEvaluator
    from prunebench.supernet.spaces import get_space
    from prunebench.tasks import make_collator
    from prunebench.tasks.rows import load_run_task, tokenised_rows, validation_rows

    config = check.train_config
    data = load_run_task(config)
    loaded = load_model(RunDir(check.run_dir).checkpoint, task_kind=data.spec.kind, num_labels=data.spec.num_labels)
    rows = tokenised_rows(data, loaded, config.max_length)
    validation = validation_rows(rows, config)
    space = get_space("medium", loaded.dims)
    rng = np.random.default_rng(0)
    candidates = [space.sample(rng) for _ in range(4)]
    scores = {}
    for slicing in ("never", "always"):  # masked (hooks on the full model) and sliced
        settings = EvalSettings(device=device, slicing=slicing, batch_size=16)
        with CandidateEvaluator(loaded, data.spec, validation, make_collator(data.spec, loaded.tokenizer),
                                settings) as evaluator:  # fmt: skip
            scores[slicing] = [evaluator.evaluate(space.masks(c)) for c in candidates]
    masked = [e.metrics["error"] for e in scores["never"]]
    sliced = [e.metrics["error"] for e in scores["always"]]
    if not np.allclose(masked, sliced, atol=0.05):  # fp differences can flip a prediction or two
        raise RuntimeError(f"masked and sliced errors differ: {masked} vs {sliced}")
    seconds = [round(e.seconds, 4) for e in scores["never"]]
    modes = [e.mode for e in scores["always"]]
    return {"candidates": len(candidates), "errors_masked": masked, "errors_sliced": sliced, "modes": modes,
            "seconds_masked": seconds}  # fmt: skip


# --- 5. out of memory -------------------------------------------------------------------------------------------


def oom_step(check: Check, target: str, work: Path) -> dict:
    """One point that cannot fit, then one that can, in one sweep: ``oom``, then ``ok``."""
    import torch

    from prunebench.config import TimingConfig
    from prunebench.profiling import profile_models

    seq = 512
    if check.dry_run:  # nothing to exhaust safely on a shared CPU: torch's error, raised where a forward begins
        huge, model = 4096, "shape:bert-tiny"

        def hook(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if isinstance(ids, torch.Tensor) and ids.shape[0] >= huge:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 TiB (simulated by --dry-run)")

        handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, a: hook(m, a, {}))
    else:  # a batch whose attention scores of one layer alone are twice the GPU's memory
        total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        huge, model, handle = int(2 * total / (12 * seq * seq * 4)) + 1, "shape:bert-base", None
    try:
        table = profile_models(
            [model], work / "profile-oom", target=target, variants=["fp32"], batch_sizes=[huge, 1], seq_lens=[seq],
            timing=TimingConfig(warmup=1, min_repeats=2, max_repeats=5, max_seconds=0.5, remeasure_attempts=0),
        )  # fmt: skip
    finally:
        if handle is not None:
            handle.remove()
    status = table.set_index("batch_size")["status"].to_dict()
    reason = table.set_index("batch_size")["reason"].to_dict().get(huge)
    result = {"batch": huge, "seq_len": seq, "status": status, "oom_reason": reason}
    if status.get(huge) != "oom" or status.get(1) != "ok":
        result["_check"] = {"status": "failed", "error": f"expected oom at batch {huge} then ok at 1, got {status}"}
    if torch.cuda.is_available():
        result["memory_allocated_after_bytes"] = torch.cuda.memory_allocated()
    return result


# --- the results ----------------------------------------------------------------------------------------------

ROW_COLUMNS = ["family", "target", "model", "variant", "batch_size", "seq_len", "mode", "status", "reason", "latency_s",
               "latency_mean_s", "latency_p99_s", "latency_ratio", "stable", "memory_bytes", "peak_memory_growth_bytes",
               "peak_memory_total_bytes", "weight_bytes", "est_bound", "est_compute_s", "est_memory_s",
               "est_overhead_s", "estimate_error", "int8_fp32_fallback_linears", "int8_fallback_weight_share",
               "parameters", "macs_per_sequence", "device", "notes"]  # fmt: skip


def estimate_errors(frame) -> list[dict]:
    """Per variant and batch size: estimated / measured latency - 1 over the models profiled (estimates only)."""
    rows = frame[(frame["mode"] == "estimated") & frame["estimate_error"].notna()]
    if rows.empty:
        return []
    grouped = rows.groupby(["variant", "batch_size"])["estimate_error"]
    summary = grouped.agg(points="count", median_error="median", min_error="min", max_error="max").reset_index()
    bounds = rows.groupby(["variant", "batch_size"])["est_bound"].agg(lambda b: ",".join(sorted(set(b))))
    summary["est_bound"] = [bounds.loc[(v, b)] for v, b in zip(summary["variant"], summary["batch_size"], strict=True)]
    return json.loads(summary.to_json(orient="records"))


def corrections_of(frame, check: Check) -> dict | None:
    """The corrections of every family's calibrated points together: what to commit as
    ``profiles/corrections/<gpu>.json`` (``prunebench.hardware.corrections``; each family's call wrote its own)."""
    from prunebench.hardware.corrections import from_pairs

    rows = frame[(frame["mode"] == "estimated") & frame["estimate_error"].notna() & frame["est_bound"].notna()]
    gpus = check.record.get("environment", {}).get("gpus") or [{"name": "cpu (dry run)"}]
    if rows.empty:
        return None
    pairs = list(zip(rows["variant"], rows["est_bound"], rows["estimate_error"].astype(float), strict=True))
    return from_pairs(str(rows["target"].iloc[0]), gpus[0]["name"], pairs).to_dict()


def finish(check: Check, out: Path) -> Path:
    import pandas as pd

    frame = pd.concat(check.tables, ignore_index=True) if check.tables else pd.DataFrame(columns=ROW_COLUMNS)
    columns = [c for c in ROW_COLUMNS if c in frame.columns]
    check.record["rows"] = json.loads(frame[columns].to_json(orient="records"))
    check.record["estimate_error"] = estimate_errors(frame) if len(frame) else []
    check.record["corrections"] = corrections_of(frame, check) if len(frame) else None
    check.record["estimate_error_definition"] = "estimated / measured latency - 1 (roofline estimate vs measurement)"
    check.record["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    check.record["failed_steps"] = check.failed()
    gpu = check.record.get("environment", {}).get("profile")
    name = "dry-run-cpu" if check.dry_run else (gpu or "unknown-gpu")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(check.record, indent=1, default=str) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="every step on this CPU, tiny shapes, simulated OOM")
    parser.add_argument("--out", type=Path, help="folder for <gpu>.json (default: benchmarks/results/gpu; "
                        "--dry-run: a temporary folder)")  # fmt: skip
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="time for the whole check")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    check = Check(args.dry_run, args.budget_s)
    check.tables, check.run_dir, check.train_config = [], None, None
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        work = Path(scratch)
        out = args.out or (work / "results" if args.dry_run else RESULTS)
        if args.dry_run:
            import torch

            torch.set_num_threads(1)
            target, device, shapes, train_model = "cpu", "cpu", ["shape:bert-tiny"], "shape:bert-tiny"
            points = {"batch_sizes": [1, 4], "seq_lens": [16],
                      "timing": {"warmup": 1, "min_repeats": 2, "max_repeats": 4, "max_seconds": 0.05,
                                 "remeasure_attempts": 0}}  # fmt: skip
        else:
            target, device, shapes, train_model = None, "cuda", ["shape:minilm", "shape:bert-base"], "shape:minilm"
            points = {"batch_sizes": [1, 8, 32, 128], "seq_lens": [128],
                      "timing": {"warmup": 3, "min_repeats": 5, "max_repeats": 50, "max_seconds": 0.4,
                                 "remeasure_attempts": 0}}  # fmt: skip
        check.record["points"] = points
        check.step("imports-without-stack", import_without_stack)
        found = check.step("environment", lambda: environment_step(check))
        target = target or (found or {}).get("profile")
        if target is None:
            print("no GPU with a profile: nothing to measure", file=sys.stderr)
        else:
            first = f"profile-{shapes[0].split(':')[1]}"
            check.step(first, lambda: profile_step(check, shapes[0], target, work, points))
            check.step("train", lambda: train_step(check, train_model, device, work), needs_s=30)
            if check.run_dir is not None:
                check.step("search-eval", lambda: search_eval_step(check, device), needs_s=20)
            check.step("oom", lambda: oom_step(check, target, work), needs_s=20)
            for shape in shapes[1:]:
                name = f"profile-{shape.split(':')[1]}"
                check.step(name, lambda shape=shape: profile_step(check, shape, target, work, points), needs_s=120)
        path = finish(check, out)
        print(f"wrote {path}")
        if args.dry_run and args.out is None:
            print(json.dumps({k: v["status"] for k, v in check.record["steps"].items()}))
    failed = check.failed()
    print("all steps passed" if not failed else f"failed or not run: {', '.join(failed)}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
