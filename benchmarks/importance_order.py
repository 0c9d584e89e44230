"""Does ordering heads and units by importance before super-network training make NAS beat importance pruning?

Issue 28. Per task and seed, MiniLM with the quick preset's training budget (2000 training examples, length 64,
2 epochs, batch 16, lr 1e-4 with 10% warm-up, the `full` strategy, the `small` space), one torch thread:

- ``reference``: a standard fine-tune (strategy `standard`, same budget); its test error is the reference;
- ``without_ordering``: the super-network as `prunebench train` makes it;
- ``with_ordering``: the same with ``--order-by-importance --order-epochs 1``;
- ``importance_baseline``: the importance baseline searched on the ``without_ordering`` super-network (as the
  findings sweep does; ``importance_baseline_on_ordered`` is the same on the ordered one);
- ``layer_drop_baseline``: the top k layers of the ``without_ordering`` super-network dropped, every k.

Each super-network is searched with MO-REA (``SAMPLES`` evaluations on the validation split). ``error_at[f]`` is the
test error of the sub-network with the lowest *validation* error among those at <= f of the encoder's parameters
(chosen on validation, scored on the whole test split, the official GLUE dev set). ``chance_error``: the error of
always predicting the majority class (the mean score for regression) on the test split.

``order_epochs`` (a proxy, measured once per task on seed 0): orders taken after 0, 0.5 and 1 epoch(s) of the first
fine-tune, each judged on the 1-epoch fine-tuned model (the one `with_ordering` reorders): the validation metric when
every layer keeps the top 30% / 50% of its heads and units by that order, beside the first 30% / 50% (no order), and
the share of the 1-epoch order's top half that each order's top half holds. It costs no super-network training.

    python benchmarks/importance_order.py --tasks stsb --seeds 0 --work runs/importance_order

Every cell (task, variant, seed) is a run directory under --work; training and searches resume, and a finished
cell's numbers are kept in --work/cells/*.json, so running it again continues where it stopped. Writes
benchmarks/results/importance_order.json after each cell. ``--archive`` copies each finished cell's record and
tables (run settings, importance scores, every search's Pareto set with validation and test errors; no weights)
to benchmarks/results/importance_order/, where they are committed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from prunebench.config import EvalSettings, SearchConfig, TrainConfig
from prunebench.environment import environment
from prunebench.models import load_model
from prunebench.report.answer import relative_drop
from prunebench.report.sweep import member_chosen_on_validation
from prunebench.rundir import RunDir, read_run
from prunebench.search import run_search
from prunebench.search.evaluator import CandidateEvaluator
from prunebench.supernet.importance import gradient_importance, importance_order
from prunebench.supernet.masking import Masks
from prunebench.supernet.spaces import get_space
from prunebench.supernet.training import SupernetTrainer, read_importance_orders, start_at_label_mean, train_supernet
from prunebench.tasks import make_collator
from prunebench.tasks.rows import EvalSplit, load_run_task, subset, tokenised_rows, validation_rows

RESULT = Path(__file__).parent / "results" / "importance_order.json"
GLUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"  # ../shared beside the checkout
GLUE_TASKS = {"stsb", "sst2", "mrpc", "rte", "cola", "qnli"}
FRACTIONS = (0.3, 0.5, 0.7)
SAMPLES = 40  # MO-REA evaluations per super-network
IMPORTANCE_BUDGETS = 10  # points of the importance baseline
BASE = dict(
    model="minilm", space="small", epochs=2, batch_size=16, learning_rate=1e-4, warmup_ratio=0.1,
    max_train_examples=2000, max_eval_examples=300, max_length=64, threads=1,
)  # fmt: skip
WHOLE = dict(max_train_examples=None, epochs=5, max_length=128, learning_rate=5e-5)
VARIANTS = {
    "reference": dict(strategy="standard"),
    "without_ordering": dict(strategy="full"),
    "with_ordering": dict(strategy="full", order_by_importance=True, order_epochs=1.0),
}
EXTRA_VARIANTS = {  # run only when named in --variants; not in the base means (the *_whole ones: larger_recipe)
    # the first fine-tune as long as the reference's, then kept as the sub-networks' teacher
    "with_ordering_fixed_teacher": dict(strategy="full", order_by_importance=True, order_epochs=2.0,
                                        fixed_teacher=True),
    # the same at about the unordered run's training cost: the super-network trains 1 epoch from the fine-tune
    "fixed_teacher_1_epoch": dict(strategy="full", order_by_importance=True, order_epochs=2.0, fixed_teacher=True,
                                  epochs=1),
}  # fmt: skip
# a larger recipe (recipe_above_chance.py's `whole`) for MRPC, whose pruned models fall to the majority class under
# BASE's: VARIANTS again, named with LARGER, drops against its own reference; the summary's setup names both for
# the findings
LARGER = "_whole"
LARGER_IS = "the whole 70% training split, 5 epochs, length 128, lr 5e-5"  # WHOLE, in words
EXTRA_VARIANTS |= {variant + LARGER: {**settings, **WHOLE} for variant, settings in VARIANTS.items()}
REFERENCES = {"reference", "reference" + LARGER}  # standard fine-tunes: nothing searched


SEARCHES = {"nas": "morea", "importance_baseline": "importance", "layer_drop_baseline": "layer_drop"}  # record key


def train_config(task: str, seed: int, **changes) -> TrainConfig:
    data = {"data_dir": str(GLUE)} if task in GLUE_TASKS else {}
    return TrainConfig(**{**BASE, **changes}, **data, task=task, seed=seed)


def error_at(pareto, fraction: float) -> float | None:
    """Test error of the lowest-validation-error member at <= ``fraction`` of the encoder (None: none there)."""
    chosen = member_chosen_on_validation(pareto, fraction)
    return None if chosen is None else float(chosen["test_error"])


def accuracy_at(run: Path, name: str, pareto) -> dict[str, float | None]:
    """Test accuracy of ``error_at``'s model at each of ``FRACTIONS`` (classification; None for regression or
    nothing there): the chance rule asks it beside an F1 error (``compare.at_chance``). Read from the search's test
    log, keyed by config."""
    tested = [json.loads(line) for line in RunDir(run).search_dir(name).test_log.read_text().splitlines()]
    found: dict[str, float | None] = {}
    for fraction in FRACTIONS:
        chosen = member_chosen_on_validation(pareto, fraction)
        config = None if chosen is None else json.loads(chosen["config"])
        found[str(fraction)] = next((e["test"].get("accuracy") for e in tested if e["config"] == config), None)
    return found


def _search(run: Path, method: str, samples: int) -> dict:
    name = method
    config = SearchConfig(method=method, samples=samples, name=name, evaluation=EvalSettings(workers=1))
    resume = RunDir(run).search_dir(name).meta.is_file()
    started = time.perf_counter()
    result = run_search(run, config, resume=resume, show_progress=False)
    pareto = result.pareto
    return {
        "error_at": {str(f): error_at(pareto, f) for f in FRACTIONS},
        "accuracy_at": accuracy_at(run, name, pareto),
        "pareto_members": len(pareto),
        "seconds_this_session": round(time.perf_counter() - started, 1),
    }


def _full_model_test(run: Path, checkpoint: Path | None = None) -> dict:
    """The full model's test error and the test split's chance error."""
    train = TrainConfig.from_dict(read_run(run)["train"])
    data = load_run_task(train)
    loaded = load_model(checkpoint or RunDir(run).checkpoint, task_kind=data.spec.kind, num_labels=data.spec.num_labels)
    rows = tokenised_rows(data, loaded, train.max_length)
    collator = make_collator(data.spec, loaded.tokenizer)
    with CandidateEvaluator(loaded, data.spec, rows["test"], collator) as evaluator:
        metrics = evaluator.evaluate(Masks.full(loaded.dims)).metrics
    chance = EvalSplit.of(data.spec, rows["test"], collator).chance()
    return {
        "test_error": float(metrics["error"]),
        "chance_error": float(chance["error"]),
        "test_examples": len(rows["test"]),
        # classification: accuracy too, which judges chance beside an F1 metric (compare.at_chance)
        "test_accuracy": metrics.get("accuracy"),
        "chance_accuracy": chance.get("accuracy"),
    }


def cell(work: Path, task: str, variant: str, seed: int) -> dict:
    """Train (or resume) one cell and measure it; a finished cell's numbers are read back."""
    record = work / "cells" / f"{task}-{variant}-seed{seed}.json"
    run = work / f"{task}-{variant}-seed{seed}"
    if record.is_file():
        found = json.loads(record.read_text())
        if variant not in REFERENCES and "layer_drop_baseline" not in found:  # cells finished before it was measured
            found["layer_drop_baseline"] = _search(run, "layer_drop", 100)
            record.write_text(json.dumps(found, indent=1) + "\n")
        if variant not in REFERENCES and "accuracy_at" not in found["nas"]:  # recorded since 2026-12-06
            for key, name in SEARCHES.items():
                pareto = pd.read_parquet(RunDir(run).search_dir(name).pareto)
                found[key] = {**found[key], "accuracy_at": accuracy_at(run, name, pareto)}
            record.write_text(json.dumps(found, indent=1) + "\n")
        return found
    config = train_config(task, seed, **{**VARIANTS, **EXTRA_VARIANTS}[variant])
    started = time.perf_counter()
    train_supernet(config, run, resume=RunDir(run).is_run(), show_progress=False)
    found = {"task": task, "variant": variant, "seed": seed, "train_seconds_last_session": None}
    found["train_seconds_last_session"] = round(time.perf_counter() - started, 1)
    full = _full_model_test(run)
    found |= {"full_model_test_error": full["test_error"], "chance_error": full["chance_error"],
              "test_examples": full["test_examples"], "full_model_test_accuracy": full["test_accuracy"],
              "chance_accuracy": full["chance_accuracy"]}  # fmt: skip
    if variant not in REFERENCES:
        found["nas"] = _search(run, "morea", SAMPLES)
        found["importance_baseline"] = _search(run, "importance", IMPORTANCE_BUDGETS)
        found["layer_drop_baseline"] = _search(run, "layer_drop", 100)  # one per layer count: the list ends first
    if config.order_by_importance:
        found["first_fine_tune_test_error"] = _full_model_test(run, RunDir(run).order_checkpoint)["test_error"]
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(found, indent=1) + "\n")
    return found


def order_epochs_study(work: Path, task: str, seed: int = 0) -> dict:
    """How good an order is after 0, 0.5 and 1 epoch(s) of the first fine-tune (see the module docstring)."""
    record = work / "cells" / f"{task}-order-epochs-seed{seed}.json"
    if record.is_file():
        return json.loads(record.read_text())
    ordered = RunDir(work / f"{task}-with_ordering-seed{seed}")
    config = train_config(task, seed, **VARIANTS["with_ordering"])
    data = load_run_task(config)
    spec = data.spec
    judge = load_model(ordered.order_checkpoint, task_kind=spec.kind, num_labels=spec.num_labels)
    rows = tokenised_rows(data, judge, config.max_length)
    collator = make_collator(spec, judge.tokenizer)
    scoring_rows = subset(rows["train"], config.order_examples, config.seed)
    orders = {"1": read_importance_orders(ordered.order_importance, judge.dims)}
    fresh = load_model(config.model, task_kind=spec.kind, num_labels=spec.num_labels, seed=seed)
    start_at_label_mean(fresh, rows["train"])
    heads, units = gradient_importance(fresh, scoring_rows, collator)
    orders["0"] = (importance_order(heads), importance_order(units))
    half = SupernetTrainer(train_config(task, seed, **{**VARIANTS["with_ordering"], "order_epochs": 0.5}),
                           work / f"{task}-order-0.5-seed{seed}", show_progress=False)  # fmt: skip
    tuning = half.order_tuning()
    if not tuning.load_checkpoint():
        torch.manual_seed(seed)
    tuning.run()
    heads, units = gradient_importance(half.loaded, scoring_rows, collator)
    orders["0.5"] = (importance_order(heads), importance_order(units))
    space = get_space("small", judge.dims)
    layers = torch.ones(judge.dims.num_layers, dtype=torch.bool)
    found = {"task": task, "seed": seed, "judged_on": "the 1-epoch first fine-tune, validation split",
             "validation_examples": None, "fractions": {}, "top_half_overlap_with_1_epoch": {}}  # fmt: skip
    validation = validation_rows(rows, config)
    found["validation_examples"] = len(validation)
    with CandidateEvaluator(judge, spec, validation, collator) as evaluator:
        found["full_model_validation_metric"] = float(evaluator.evaluate(Masks.full(judge.dims)).metrics["metric"])
        for fraction in (0.3, 0.5):
            width = space.at_fraction(fraction, "width")
            h, u = width["num_heads"], width["num_units"]
            row = {"first": float(evaluator.evaluate(space.masks(width)).metrics["metric"])}
            for epochs, (head_order, unit_order) in orders.items():
                masks = Masks(_keep_first(head_order, h), _keep_first(unit_order, u), layers)
                row[f"top_after_{epochs}_epochs"] = float(evaluator.evaluate(masks).metrics["metric"])
            found["fractions"][str(fraction)] = row
    for epochs, (head_order, unit_order) in orders.items():
        found["top_half_overlap_with_1_epoch"][epochs] = {
            "heads": _overlap(head_order, orders["1"][0]),
            "units": _overlap(unit_order, orders["1"][1]),
        }
    found["metric"] = spec.metric
    record.write_text(json.dumps(found, indent=1) + "\n")
    return found


def _keep_first(order: np.ndarray, k: int) -> torch.Tensor:
    """A (layers, n) mask keeping, in every layer, the first ``k`` indices of ``order``."""
    mask = np.zeros(order.shape, dtype=np.float32)
    np.put_along_axis(mask, order[:, :k], 1.0, axis=1)
    return torch.tensor(mask)


def _overlap(order: np.ndarray, reference: np.ndarray) -> float:
    """Mean over layers of the share of ``reference``'s top half that ``order``'s top half holds."""
    k = order.shape[1] // 2
    shares = [len(set(a[:k].tolist()) & set(b[:k].tolist())) / k for a, b in zip(order, reference, strict=True)]
    return round(float(np.mean(shares)), 4)


def mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 4) if values else None


def _seeds_with(cells: list[dict], variants) -> list[int]:
    """The seeds of which every one of ``variants`` has a finished cell."""
    return sorted(s for s in {c["seed"] for c in cells} if all(
        any(c["seed"] == s and c["variant"] == v for c in cells) for v in variants))  # fmt: skip


def _drop(reference: float | None, error: float | None) -> float | None:
    """``relative_drop_note``, to 4 digits; None where either error is not known."""
    drop = None if reference is None or error is None else relative_drop(reference, error)
    return None if drop is None else round(drop, 4)


def _extra_variant(mine: list[dict], variant: str) -> dict:
    """An ``EXTRA_VARIANTS`` variant of one task beside the reference of the same seeds."""
    seeds = _seeds_with(mine, ("reference", variant))
    found = [c for c in mine if c["variant"] == variant and c["seed"] in seeds]
    reference = mean([c["full_model_test_error"] for c in mine if c["variant"] == "reference" and c["seed"] in seeds])
    nas = {str(f): mean([c["nas"]["error_at"].get(str(f)) for c in found]) for f in FRACTIONS}
    return {
        "seeds": seeds,
        "settings": EXTRA_VARIANTS[variant],
        "nas_error_at": nas,
        "importance_baseline_error_at": {
            str(f): mean([c["importance_baseline"]["error_at"].get(str(f)) for c in found]) for f in FRACTIONS
        },
        "reference_error": reference,
        "relative_drop_at_half_vs_reference": _drop(reference, nas["0.5"]),
        "super_network_full_model_test_error": mean([c["full_model_test_error"] for c in found]),
        "first_fine_tune_test_error": mean([c.get("first_fine_tune_test_error") for c in found]),
    }  # fmt: skip


def _recipe_summary(mine: list[dict], suffix: str = "") -> dict | None:
    """One task's reference, both super-networks and the baselines of one recipe (``suffix``: "" for ``VARIANTS``,
    ``LARGER`` for the ``*_whole`` variants), means over the seeds finished in all three; None before one has."""
    names = {v: v + suffix for v in VARIANTS}
    done_seeds = _seeds_with(mine, names.values())  # means over the same seeds in every variant
    if not done_seeds:
        return None
    by = {v: [c for c in mine if c["variant"] == name and c["seed"] in done_seeds] for v, name in names.items()}
    reference = mean([c["full_model_test_error"] for c in by["reference"]])
    arms = {
        "with_ordering": [c["nas"]["error_at"] for c in by["with_ordering"]],
        "without_ordering": [c["nas"]["error_at"] for c in by["without_ordering"]],
        "importance_baseline": [c["importance_baseline"]["error_at"] for c in by["without_ordering"]],
        "importance_baseline_on_ordered": [c["importance_baseline"]["error_at"] for c in by["with_ordering"]],
        "layer_drop_baseline": [  # {} until an older cell's layer dropping is measured
            c.get("layer_drop_baseline", {}).get("error_at", {}) for c in by["without_ordering"]
        ],
    }
    error_at = {arm: {str(f): mean([e.get(str(f)) for e in found]) for f in FRACTIONS} for arm, found in arms.items()}
    return {
        "seeds": done_seeds,
        "metric": "1 - error",
        "reference_error": reference,
        "chance_error": mean([c["chance_error"] for c in by["reference"]]),
        "error_at": error_at,
        "relative_drop_at_half_vs_reference": {
            arm: _drop(reference, error_at[arm]["0.5"]) for arm in ("with_ordering", "without_ordering")
        },
        "super_network_full_model_test_error": {
            arm: mean([c["full_model_test_error"] for c in by[arm]]) for arm in ("with_ordering", "without_ordering")
        },
        "first_fine_tune_test_error": mean([c.get("first_fine_tune_test_error") for c in by["with_ordering"]]),
    }


def summarise(cells: list[dict], studies: list[dict], seeds: list[int]) -> dict:
    tasks = {}
    for task in dict.fromkeys(c["task"] for c in cells):
        mine = [c for c in cells if c["task"] == task]
        base = _recipe_summary(mine)
        if base is None:
            tasks[task] = {"incomplete": sorted({c["variant"] for c in mine})}
            continue
        larger = _recipe_summary(mine, LARGER)
        tasks[task] = {
            **base,
            "order_epochs_study": next((s for s in studies if s["task"] == task), None),
            # the same three variants with WHOLE's recipe (MRPC), summarised the same way
            **({} if larger is None else {"larger_recipe": {"settings": WHOLE, **larger}}),
            "extra_variants": {
                v: _extra_variant(mine, v)
                for v in EXTRA_VARIANTS
                if not v.endswith(LARGER) and any(c["variant"] == v for c in mine)
            },
        }
    return {
        "benchmark": "importance_order",
        "question": "with importance ordering, is NAS's test error at or below the importance baseline's at 30/50/70% "
        "of the encoder?",
        "seeds": seeds,
        "seeds_note": "per task, the seeds finished in every variant are tasks[*].seeds, and its numbers are means "
        "over them (one seed says nothing about the spread); each seed's numbers: cells",
        "setup": {
            **BASE,
            "strategy": "full (reference: standard)",
            "order_epochs": 1.0,
            "order_examples": 512,
            "search": f"morea, {SAMPLES} evaluations",
            "importance_budgets": IMPORTANCE_BUDGETS,
            "selection": "lowest validation error at <= f of the encoder; scored on the whole test split",
            "larger_recipe": {"variants_end_with": LARGER, "is": LARGER_IS, "settings": WHOLE},
        },
        "relative_drop_note": "(reference metric - sub-network metric) / reference metric, metric = 1 - error; every "
        "chosen model counts here, also one no better than chance (on MRPC a majority-class model drops 2.6% in F1): "
        "the findings' ordering section judges each by compare's chance rule (accuracy_at) and leaves those out",
        "timing_note": "seconds measured on a shared 2-core VM (other processes running), 1 torch thread: "
        "indicative only",
        "tasks": tasks,
        "cells": cells,
        "environment": environment(),
    }


def write(out: Path, work: Path, studies: list[dict]) -> None:
    """The summary of every finished cell under ``work`` (also those another process of this script finished);
    ``seeds`` lists the seeds of which every variant of every task finished."""
    records = sorted((work / "cells").glob("*-seed*.json"))
    cells = [json.loads(p.read_text()) for p in records if "-order-epochs-" not in p.name]
    found = [json.loads(p.read_text()) for p in records if "-order-epochs-" in p.name]  # also a --no-study run's
    studies = [*studies, *(s for s in found if all(s["task"] != t["task"] for t in studies))]
    # a seed some task finished in every variant (per task: tasks[*].seeds)
    by_task = {task: [c for c in cells if c["task"] == task] for task in {c["task"] for c in cells}}
    done = sorted({s for mine in by_task.values() for s in _seeds_with(mine, VARIANTS)})
    out.write_text(json.dumps(summarise(cells, studies, done), indent=1, default=str) + "\n")


ARCHIVE = RESULT.with_suffix("")  # benchmarks/results/importance_order/: each finished cell's tables
# the test logs of NAS and layer dropping (accuracy_at's source); the importance baseline's configs are per-head
# masks, megabytes a log, so its accuracies are in the record only
ARCHIVED = ("run.json", "order/importance.parquet", "search/*/search.json", "search/*/pareto.parquet",
            "search/morea/test.jsonl", "search/layer_drop/test.jsonl")  # fmt: skip


def archive(work: Path, dest: Path) -> int:
    """Copy each finished cell's tables (no weights) to ``dest/CELL/``: what its record's numbers are read from
    (each search's Pareto set with validation and test errors), so they can be checked without re-running it."""
    copied = 0
    for record in sorted((work / "cells").glob("*-seed*.json")):
        run = work / record.stem
        if "-order-epochs-" in record.name or not run.is_dir():
            continue
        for pattern in ARCHIVED:
            for source in run.glob(pattern):
                target = dest / record.stem / source.relative_to(run)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(source.read_bytes())
                copied += 1
        (dest / record.stem / "cell.json").write_bytes(record.read_bytes())
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="stsb", help="comma-separated task names")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--work", type=Path, default=Path("runs/importance_order"))
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated: run only these (several "
        "processes may run different variants side by side; each writes the summary of all finished)",
    )
    parser.add_argument("--no-study", action="store_true", help="skip the order-epochs study")
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument(
        "--archive", type=Path, nargs="?", const=ARCHIVE, help=f"copy the finished cells' tables there and stop "
        f"(default {ARCHIVE.relative_to(RESULT.parents[2])})",
    )  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="bert-tiny, 64 examples, 4 samples: checks the script")
    args = parser.parse_args()
    if args.smoke:
        global SAMPLES, IMPORTANCE_BUDGETS
        BASE.update(model="shape:bert-tiny", max_train_examples=64, max_eval_examples=32, max_length=32, epochs=1)
        SAMPLES, IMPORTANCE_BUDGETS = 4, 3
    if args.archive is not None:
        print(f"copied {archive(args.work, args.archive)} tables to {args.archive}")
        return
    torch.set_num_threads(1)
    tasks, seeds = args.tasks.split(","), [int(s) for s in args.seeds.split(",")]
    studies = []
    for task in tasks:
        for seed in seeds:
            for variant in [v for v in args.variants.split(",") if v]:  # --variants '': the study alone
                started = time.perf_counter()
                cell(args.work, task, variant, seed)
                print(f"{task} {variant} seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
                write(args.out, args.work, studies)
        if not args.no_study:
            studies.append(order_epochs_study(args.work, task, seeds[0]))
            write(args.out, args.work, studies)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
