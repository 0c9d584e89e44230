"""Issue 14's findings of Klein et al. (TMLR 2024), measured: keep a sweep's results across sessions, and
write ``reports/findings/`` (report.html, report.md, summary.json) from them.

The sweep (``benchmarks/findings.toml``) runs in ``runs/findings``, which no session keeps. Finished cells
are committed, without checkpoints and model weights (``rundir.copy_results``), to
``benchmarks/results/findings/`` (sweep.json, grid.toml, cells/, logs/: a sweep folder that reports), and
put back before the next session's sweep so that it skips them:

    python benchmarks/findings.py restore      # committed cells -> runs/findings (finished: the sweep skips them)
    prunebench sweep benchmarks/findings.toml --out runs/findings --workers 1
    python benchmarks/findings.py collect      # finished cells -> benchmarks/results/findings (commit it)
    python benchmarks/findings.py report       # reports/findings/ from what is committed
    python benchmarks/findings.py cost         # (e): standard NAS, 10 trials -> results/findings_cost.json
    python benchmarks/findings.py methods      # (d): from the two spaces' search_methods.py reports (it prints
                                               #      the train and search commands while they are missing)

A restored cell is finished only where its settings are the grid's (``pipeline.pipeline_finished``): the
grid's data folder is an absolute path in them, so a clone elsewhere runs the cells again.

Findings (the issue's list) and where their numbers come from:
  (a) strategies: per task, the main search's final hypervolume and the lowest test error of its Pareto set
      at <= 50% of the encoder, mean and standard deviation over seeds, per training strategy;
  (b) baselines: the same two numbers of layer_drop and importance, searched on the same super-network as
      the cell's NAS search (every cell);
  (c) compression: per task, the best extracted, profiled and test-scored pruned model at <= 50% of the
      encoder and its relative drop in the task metric from the standard fine-tune of the same task and seed
      (the grid's 'standard' cell: the verdict's), beside the drop from the super-network's own full model;
  (d) search methods on the medium and large spaces: ``benchmarks/results/findings_methods.json``;
  (e) cost of weight-sharing NAS against standard NAS: ``benchmarks/results/findings_cost.json``.
A finding without its numbers yet says so ("not measured yet") instead of a verdict.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIVE = ROOT / "runs" / "findings"
COMMITTED = ROOT / "benchmarks" / "results" / "findings"
REPORT = ROOT / "reports" / "findings"
GRID = ROOT / "benchmarks" / "findings.toml"
RESULTS_DIR = ROOT / "benchmarks" / "results"
METHODS_RESULTS = RESULTS_DIR / "findings_methods.json"
COST_RESULTS = ROOT / "benchmarks" / "results" / "findings_cost.json"
TASKS = ("rotten_tomatoes", "sst2", "mrpc", "stsb")
STRATEGIES = ("standard", "random", "random_linear", "sandwich", "kd", "full")
WEIGHT_SHARING = ("sandwich", "full")  # finding (a): these keep their sub-networks better than standard
MAIN_STRATEGY = "full"  # findings (b) and (c): the strategy prunebench trains with by default
TARGET_DROP = 0.05  # finding (c): about 50% compression at less than 5% relative drop
MIN_SEEDS = 2  # a task's verdict waits for this many finished seeds of every strategy it compares


# -- keeping the cells across sessions -----------------------------------------------------------------------


def restore() -> None:
    """Committed cells into the live sweep folder, where a cell there is not finished already."""
    from prunebench.rundir import SweepDir, copy_results

    committed, live = SweepDir(COMMITTED), SweepDir(LIVE)
    if not committed.cells.is_dir():
        print(f"nothing committed yet in {COMMITTED}")
        return
    restored, configs = 0, _configs()
    for cell in sorted(p for p in committed.cells.iterdir() if p.is_dir()):
        target = live.cell(cell.name)
        if _finished(target.path, configs.get(cell.name)) or not _finished(cell, configs.get(cell.name)):
            continue  # finished here already, or committed with other settings than the grid's
        copy_results(cell, target.path)
        if committed.log(cell.name).is_file():
            live.log(cell.name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(committed.log(cell.name), live.log(cell.name))
        restored += 1
    print(f"restored {restored} finished cell(s) into {LIVE}")


def collect() -> None:
    """The live sweep's finished cells into the committed folder, with a copy of its record naming only them."""
    from prunebench.rundir import SweepDir, copy_results, write_json_atomic

    live, committed = SweepDir(LIVE), SweepDir(COMMITTED)
    record = live.read()
    kept, copied, configs = set(), 0, _configs()
    for entry in record["cells"]:
        name = entry["name"]
        source = live.cell(name).path
        if not _finished(source, configs.get(name)):
            continue
        kept.add(name)
        same = committed.cell(name).pipeline_file
        if same.is_file() and same.read_bytes() == live.cell(name).pipeline_file.read_bytes():
            continue  # committed already, as it is
        copy_results(source, committed.cell(name).path)
        if live.log(name).is_file():
            committed.log(name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(live.log(name), committed.log(name))
        copied += 1
    for entry in record["cells"]:
        if entry["name"] in kept:
            entry["status"] = "done"  # a cell restored and skipped this session is recorded without its seconds
            entry["seconds"] = entry.get("seconds") or _pipeline_seconds(committed.cell(entry["name"]).path)
        else:  # running or failed in the live folder: not part of the committed results
            entry.update(status="waiting", error=None, seconds=None)
        entry["log"] = str(committed.log(entry["name"]).relative_to(COMMITTED)) if entry["name"] in kept else None
    record.pop("sessions", None)  # the live sessions' bookkeeping (pids, hosts) is not a result
    committed.path.mkdir(parents=True, exist_ok=True)
    write_json_atomic(committed.record, record)
    shutil.copy2(live.grid, committed.grid)
    print(f"{len(kept)} finished cell(s) in {COMMITTED} ({copied} copied now)")


def _configs() -> dict:
    """Each cell's pipeline settings, by name, from the grid file."""
    from prunebench.sweep.grid import load_grid

    return {cell.name: cell.config for cell in load_grid(GRID).cells}


def _finished(run: Path, config) -> bool:
    from prunebench.pipeline import pipeline_finished

    return config is not None and pipeline_finished(config, run)


def _pipeline_seconds(run: Path) -> float | None:
    """Every stage's seconds over every session of the cell's pipeline (its compute, resumed sessions summed)."""
    from prunebench.rundir import RunDir

    try:
        sessions = json.loads(RunDir(run).pipeline_file.read_text())["sessions"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sum(float(s.get("seconds") or 0.0) for s in sessions if s.get("seconds") is not None) or None


def stage_seconds(run: Path) -> dict[str, float]:
    from prunebench.rundir import RunDir

    sessions = json.loads(RunDir(run).pipeline_file.read_text())["sessions"]
    found: dict[str, float] = {}
    for session in sessions:
        for stage, entry in (session.get("stages") or {}).items():
            if entry.get("seconds") is not None:
                found[stage] = found.get(stage, 0.0) + float(entry["seconds"])
    return found


# -- the findings ------------------------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    return {
        "mean": statistics.fmean(values) if values else None,
        "sd": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def _mean(stats: dict) -> str:
    return "-" if stats["mean"] is None else f"{stats['mean']:.3f}"


def _show(stats: dict, percent: bool = False) -> str:
    if stats["mean"] is None:
        return "-"
    text = f"{stats['mean']:+.1%}" if percent else f"{stats['mean']:.3f}"
    if stats["sd"] is not None:
        text += " ± " + (f"{stats['sd']:.1%}" if percent else f"{stats['sd']:.3f}")
    return text + f" (n={stats['n']})"


def _beats(better: dict, worse: dict, higher: bool) -> bool | None:
    """``better`` is ahead of ``worse`` by more than the larger of their standard deviations (None: not measured
    on ``MIN_SEEDS`` seeds each yet)."""
    if better["n"] < MIN_SEEDS or worse["n"] < MIN_SEEDS:
        return None
    margin = max(better["sd"] or 0.0, worse["sd"] or 0.0)
    gap = better["mean"] - worse["mean"] if higher else worse["mean"] - better["mean"]
    return gap > margin


def _at_or_below(errors: dict, other: dict) -> bool | None:
    """Mean test errors (``_stats``) at or below another's, a gap inside the larger standard deviation over seeds
    counting as a tie; None where either is not measured."""
    if errors["mean"] is None or other["mean"] is None:
        return None
    return errors["mean"] <= other["mean"] + max(errors["sd"] or 0.0, other["sd"] or 0.0)


def _verdict(outcomes: list[bool | None], wanted: int, at_chance: list[str] = ()) -> str:
    """``at_chance``: tasks measured but not judged, their models being no better than chance."""
    judged = [o for o in outcomes if o is not None]
    if not judged:
        return f"not measured yet (each needs {MIN_SEEDS} finished seeds)"
    measured = f" ({len(judged)} of {wanted} tasks measured)" if len(judged) < wanted else ""
    if at_chance:
        measured = f" ({len(judged)} of {wanted} tasks judged; {', '.join(at_chance)}: at chance)"
    if all(judged):
        return "reproduced" + measured
    return ("partly reproduced" if any(judged) else "not reproduced") + measured


def strategies(cells: list) -> dict:
    """(a): per task and strategy, hypervolume and error at half the encoder over seeds."""
    table, outcomes = {}, []
    for task in TASKS:
        per = {}
        for strategy in STRATEGIES:
            done = [c for c in cells if c.axes.get("task") == task and c.axes.get("strategy") == strategy]
            per[strategy] = {
                "hypervolume": _stats([c.hypervolume for c in done]),
                "error_at_half_encoder": _stats([c.error_at_half for c in done]),
            }
        table[task] = per
        checks = [
            _beats(per[s][key], per["standard"][key], higher=key == "hypervolume")
            for s in WEIGHT_SHARING
            for key in ("hypervolume", "error_at_half_encoder")
        ]
        outcomes.append(None if any(c is None for c in checks) else all(checks))
    verdict = _verdict(outcomes, len(TASKS))
    return {
        "claim": "super-networks trained with full or sandwich keep their sub-networks far better than standard "
        "fine-tuning",
        "rule": "per task: full and sandwich both have a higher mean hypervolume and a lower mean error at <= 50% "
        "of the encoder than standard, each by more than the larger standard deviation over seeds",
        "by_task": table,
        "reproduced_by_task": dict(zip(TASKS, outcomes, strict=True)),
        "verdict": verdict,
        "sentence": _strategies_sentence(table, outcomes, verdict),
    }


def _strategies_sentence(table: dict, outcomes: list, verdict: str) -> str:
    parts = []
    for task, outcome in zip(TASKS, outcomes, strict=True):
        if outcome is None:
            continue
        per = table[task]
        parts.append(
            f"{task}: error at <= 50% of the encoder {per['standard']['error_at_half_encoder']['mean']:.3f} "
            f"(standard) against {per['sandwich']['error_at_half_encoder']['mean']:.3f} (sandwich) and "
            f"{per['full']['error_at_half_encoder']['mean']:.3f} (full), hypervolume "
            f"{per['standard']['hypervolume']['mean']:.3f} against {per['sandwich']['hypervolume']['mean']:.3f} and "
            f"{per['full']['hypervolume']['mean']:.3f}"
        )
    return f"(a) {verdict}" + (": " + "; ".join(parts) + "." if parts else ".")


def baselines(cells: list) -> dict:
    """(b): the cell's NAS search against layer_drop and importance on the same super-network."""
    table, outcomes = {}, []
    for task in TASKS:
        done = [c for c in cells if c.axes.get("task") == task and c.axes.get("strategy") == MAIN_STRATEGY]
        row = {
            "nas": {
                "hypervolume": _stats([c.hypervolume for c in done]),
                "error_at_half_encoder": _stats([c.error_at_half for c in done]),
            }
        }
        for method in ("layer_drop", "importance"):
            row[method] = {
                key: _stats([(c.baselines.get(method) or {}).get(key) for c in done])
                for key in ("hypervolume", "error_at_half_encoder")
            }
        # every strategy: in how many cells NAS's hypervolume is above each baseline's
        every = [c for c in cells if c.axes.get("task") == task and c.hypervolume is not None]
        row["cells_nas_above"] = {
            m: f"{sum(c.hypervolume > ((c.baselines.get(m) or {}).get('hypervolume') or 0) for c in every)}"
            f"/{len(every)}"
            for m in ("layer_drop", "importance")
        }
        table[task] = row
        checks = [_beats(row["nas"]["hypervolume"], row[m]["hypervolume"], higher=True) for m in row if m != "nas"
                  and m != "cells_nas_above"]  # fmt: skip
        outcomes.append(None if any(c is None for c in checks) else all(checks))
    verdict = _verdict(outcomes, len(TASKS))
    parts = [
        f"{task}: hypervolume {t['nas']['hypervolume']['mean']:.3f} (NAS, {MAIN_STRATEGY}) against "
        f"{t['layer_drop']['hypervolume']['mean']:.3f} (layer_drop) and {t['importance']['hypervolume']['mean']:.3f} "
        f"(importance), NAS above them in {t['cells_nas_above']['layer_drop']} and "
        f"{t['cells_nas_above']['importance']} cells of every strategy; error at <= 50% of the encoder "
        f"{_mean(t['nas']['error_at_half_encoder'])} against {_mean(t['layer_drop']['error_at_half_encoder'])} "
        f"and {_mean(t['importance']['error_at_half_encoder'])}"
        for task, t, o in zip(TASKS, table.values(), outcomes, strict=True)
        if o is not None
    ]
    return {
        "claim": "weight-sharing NAS beats layer dropping and importance pruning",
        "rule": f"per task, on the {MAIN_STRATEGY}-strategy cells: the NAS search's mean hypervolume is above each "
        "baseline's by more than the larger standard deviation over seeds (the baselines searched on the same "
        "super-network, same objectives)",
        "by_task": table,
        "reproduced_by_task": dict(zip(TASKS, outcomes, strict=True)),
        "verdict": verdict,
        "sentence": f"(b) {verdict}" + (": " + "; ".join(parts) + "." if parts else "."),
    }


FAIR_SEEDS = 3  # the minimum for a verdict on a comparison over seeds
COMPARED = ("nas", "layer_drop", "importance")


def _fair(cell) -> dict:
    """One cell's fair numbers, as the sweep report reads them (``report.sweep.cell_facts``): per compared method
    its test error at each matched budget, chosen on validation, and its hypervolume over the common range."""
    from prunebench.report.sweep import BUDGETS

    methods = {"nas": {"error_at": cell.error_at, "hypervolume_common_range": cell.hypervolume_common},
               **{m: cell.baselines.get(m) or {} for m in ("layer_drop", "importance")}}  # fmt: skip
    return {
        "chance": cell.chance,
        "common_low": cell.common_low,
        "error_at": {m: {str(f): (v.get("error_at") or {}).get(str(f)) for f in BUDGETS} for m, v in methods.items()},
        "hypervolume_common_range": {m: v.get("hypervolume_common_range") for m, v in methods.items()},
    }


def baselines_fair(facts: list) -> dict:
    """(b), measured fairly: matched budgets chosen on validation, hypervolume over the common range, chance cells
    left out, ties within the spread over seeds, and no verdict below ``FAIR_SEEDS`` seeds."""
    from prunebench.report.sweep import BUDGETS

    table, outcomes = {}, []
    for task in TASKS:
        mine = [c for c in facts if c.axes.get("task") == task and c.axes.get("strategy") == MAIN_STRATEGY]
        cells = {c.name: _fair(c) for c in mine if c.error_at and c.baselines}
        chance = [name for name, found in cells.items() if (found["chance"] or {}).get("at_chance")]
        judged = {name: found for name, found in cells.items() if name not in chance}
        row = {
            "cells": sorted(cells), "at_chance": sorted(chance), "seeds": len(judged),
            "error_at": {m: {str(f): _stats([c["error_at"][m][str(f)] for c in judged.values()]) for f in BUDGETS}
                         for m in COMPARED},
            "hypervolume_common_range": {m: _stats([c["hypervolume_common_range"][m] for c in judged.values()])
                                         for m in COMPARED},
            "per_cell": cells,
        }  # fmt: skip
        ties_or_wins = [_at_or_below(row["error_at"]["nas"][str(f)], row["error_at"]["importance"][str(f)])
                        for f in BUDGETS]  # fmt: skip
        row["nas_at_or_below_importance"] = dict(zip(map(str, BUDGETS), ties_or_wins, strict=True))
        enough = len(judged) >= FAIR_SEEDS and None not in ties_or_wins
        table[task] = row
        outcomes.append(all(ties_or_wins) if enough else None)
    judged_tasks = [o for o in outcomes if o is not None]
    if judged_tasks:
        verdict = _verdict(outcomes, len(TASKS))
    else:
        verdict = f"no verdict: no task has {FAIR_SEEDS} finished seeds above chance"
    parts = []
    for task, row in table.items():
        if not row["cells"]:
            continue
        nas, imp = row["error_at"]["nas"], row["error_at"]["importance"]
        budgets = ", ".join(f"{float(f):.0%}: {_mean(nas[str(f)])} against {_mean(imp[str(f)])}" for f in BUDGETS)
        text = f"{task} ({row['seeds']} seed(s) above chance"
        text += f"; at chance, left out: {len(row['at_chance'])}" if row["at_chance"] else ""
        parts.append(text + f"): test error NAS against importance at {budgets}")
    return {
        "claim": "weight-sharing NAS is at or below importance pruning's test error at matched encoder budgets",
        "rule": f"per task, on the {MAIN_STRATEGY}-strategy cells whose full model is above chance (compare's rule: "
        "more than 1/sqrt(n) below the majority class's test error): at 30%, 50% and 70% of the encoder, each "
        "method's model chosen on the validation split among its Pareto members at that budget and scored on the "
        "test split; NAS's mean test error is at or below importance's, a gap within the larger standard deviation "
        f"over seeds counting as a tie; a verdict needs {FAIR_SEEDS} seeds. Hypervolume (validation error against "
        "encoder fraction) is taken over the range every compared method covers, from the largest of their "
        "smallest Pareto members to the full encoder",
        "by_task": table,
        "reproduced_by_task": dict(zip(TASKS, outcomes, strict=True)),
        "verdict": verdict,
        "sentence": f"(b, fair) {verdict}" + (": " + "; ".join(parts) + "." if parts else "."),
    }


def compression(cells: list) -> dict:
    """(c): per task, the best pruned model at <= 50% of the encoder and its relative drop: against the standard
    fine-tune of the same task and seed (the verdict's), and against the super-network's own full model."""
    table, outcomes = {}, []
    for task in TASKS:
        main = [c for c in cells if c.axes.get("task") == task and c.axes.get("strategy") == MAIN_STRATEGY]
        drops = [(c.best_at_half or {}).get("relative_accuracy_drop") for c in main]
        against = [(c.reference or {}).get("relative_drop_at_half_encoder") for c in main]
        anywhere = [c for c in cells if c.axes.get("task") == task and c.best_at_half]
        # chosen on validation, as each cell's own best is: the test split only scores it
        best = min(anywhere, key=lambda c: c.best_at_half["validation_error"], default=None)
        stats, versus = _stats(drops), _stats(against)
        table[task] = {
            "relative_drop_vs_standard_fine_tune": versus,
            "relative_drop_full_strategy": stats,
            "best_cell": None if best is None else best.name,
            "best": None if best is None else best.best_at_half,
            "full_test_error": None if best is None else best.full_test_error,
        }
        outcomes.append(None if versus["n"] < MIN_SEEDS else versus["mean"] < TARGET_DROP)
    verdict = _verdict(outcomes, len(TASKS))
    parts = []
    for task, outcome in zip(TASKS, outcomes, strict=True):
        if outcome is None:
            continue
        row = table[task]
        text = (
            f"{task}: {row['relative_drop_vs_standard_fine_tune']['mean']:+.1%} against the standard fine-tune "
            f"({row['relative_drop_full_strategy']['mean']:+.1%} against the super-network's own full model; "
            f"{MAIN_STRATEGY}, means over seeds)"
        )
        if row["best"] is not None:
            text += (
                f", best of every cell {row['best']['relative_accuracy_drop']:+.1%} at "
                f"{row['best']['encoder_fraction']:.0%} of the encoder"
            )
        parts.append(text + ("" if outcome else f", not under {TARGET_DROP:.0%}"))
    return {
        "claim": "about 50% of the encoder removed at less than 5% relative accuracy drop",
        "rule": f"per task: the {MAIN_STRATEGY}-strategy cells' best scored pruned model at <= 50% of the encoder "
        f"drops less than {TARGET_DROP:.0%} from the test metric of the standard fine-tune of the same task and seed "
        "(the grid's 'standard' cell), on average over seeds; the drop against the super-network's own full model "
        "is shown beside it",
        "by_task": table,
        "reproduced_by_task": dict(zip(TASKS, outcomes, strict=True)),
        "verdict": verdict,
        "sentence": f"(c) {verdict}" + (": " + "; ".join(parts) + "." if parts else "."),
    }


ORDER_RESULTS = RESULTS_DIR / "importance_order.json"  # issue 28's cells: full strategy with and without ordering
ORDER_ARMS = {  # the name in the findings: (the importance_order cell's variant, its search)
    "nas_with_ordering": ("with_ordering", "nas"),
    "nas_without_ordering": ("without_ordering", "nas"),
    "importance": ("without_ordering", "importance_baseline"),
    "layer_drop": ("without_ordering", "layer_drop_baseline"),
    "importance_on_ordered": ("with_ordering", "importance_baseline"),  # shown and tested, not the verdict's
    # the quick preset's recipe (a 2-epoch fine-tune as fixed teacher, 1 super-network epoch), on the seeds run
    "nas_fixed_teacher": ("fixed_teacher_1_epoch", "nas"),
}
VARIANTS_ORDERED = ("with_ordering", "without_ordering")


def _at_chance_on(split: dict, error: float, accuracy: float | None) -> bool:
    """``compare.at_chance`` of a model's test error and accuracy (None: not recorded) against the chance scores an
    importance_order cell recorded for its test split."""
    from prunebench.report.compare import at_chance

    known = [math.nan if v is None else v for v in (accuracy, split.get("chance_accuracy"))]
    return at_chance(error, split["chance_error"], split["test_examples"], *known)


def _reference_at_chance(cell: dict) -> bool:
    """``compare.at_chance`` of an importance_order cell's full model (accuracy: cells measured since it is kept)."""
    return _at_chance_on(cell, cell["full_model_test_error"], cell.get("full_model_test_accuracy"))


def _order_seeds(cells: list[dict], task: str, larger: str | None, recipe: str = "") -> dict[int, dict]:
    """Per seed of ``task`` whose reference and both super-networks finished: its cells by variant, of one recipe
    (``recipe`` = ``larger``, the suffix importance_order names its larger recipe's variants with: those, read under
    their base names; "": the others)."""
    by_seed: dict[int, dict] = {}
    for cell in cells:
        variant = cell["variant"]
        if cell["task"] != task or bool(larger and variant.endswith(larger)) != bool(recipe):
            continue
        by_seed.setdefault(cell["seed"], {})[variant.removesuffix(recipe) if recipe else variant] = cell
    return {seed: found for seed, found in sorted(by_seed.items()) if {"reference", *VARIANTS_ORDERED} <= set(found)}


def _chosen_at_chance(cell: dict | None, search: str, fraction: float, reference: dict) -> bool:
    """``compare.at_chance`` of the model ``_error_at`` names, against its test split's chance scores (the
    reference cell's); its accuracy where the cell recorded it (``accuracy_at``)."""
    error = _error_at(cell, search, fraction)
    if error is None:
        return False
    accuracy = (((cell or {}).get(search) or {}).get("accuracy_at") or {}).get(str(fraction))
    return _at_chance_on(reference, error, accuracy)


def _error_at(cell: dict | None, search: str, fraction: float) -> float | None:
    """An importance_order cell's test error of ``search`` at ``fraction`` (None: not run, or nothing there)."""
    return (((cell or {}).get(search) or {}).get("error_at") or {}).get(str(fraction))


def ordering(path: Path = ORDER_RESULTS) -> dict:
    """(b) and (c) measured again with importance-ordered super-networks (issue 28), with the ordering as an
    ablation: per task and seed, NAS on the super-network trained with and without ordering, the importance and
    layer-dropping baselines on the one without, and the standard fine-tune as the reference."""
    from prunebench.report.answer import relative_drop
    from prunebench.report.paired import lower_errors_p
    from prunebench.report.sweep import BUDGETS

    claim = "with importance ordering, NAS is at or below importance pruning's test error at matched encoder budgets"
    if not path.is_file():
        return {"claim": claim, "verdict": "not measured yet", "sentence": f"(b, ordered) not measured yet: {path}."}
    found = json.loads(path.read_text())
    larger = found["setup"].get("larger_recipe")  # {"variants_end_with", "is", "settings"}; None: no larger recipe
    suffix = larger and larger["variants_end_with"]
    table, outcomes, drop_outcomes, pooled = {}, [], [], {a: [] for a in ORDER_ARMS}
    for task in TASKS:
        # a task measured with the larger recipe on enough seeds is judged on it (MRPC: the base recipe's pruned
        # models fall to the majority class)
        seeds, recipe = (_order_seeds(found["cells"], task, suffix, suffix) if suffix else {}), "larger"
        if len(seeds) < FAIR_SEEDS:
            seeds, recipe = _order_seeds(found["cells"], task, suffix), "base"
        chance = sorted(s for s, c in seeds.items() if _reference_at_chance(c["reference"]))
        judged = {s: c for s, c in seeds.items() if s not in chance}

        def errors(arm, f, among):
            variant, search = ORDER_ARMS[arm]
            return [_error_at(c.get(variant), search, f) for c in among.values()]

        def at_chance_seeds(arm, f, judged=judged) -> list[int]:
            variant, search = ORDER_ARMS[arm]
            return [s for s, c in judged.items() if _chosen_at_chance(c.get(variant), search, f, c["reference"])]

        def drops(arm, judged=judged):
            """Against the reference, the seeds whose model at <= 50% is above chance only: on an F1 task a model
            always answering the majority class drops little (MRPC: F1 0.812 against 0.834)."""
            variant, search = ORDER_ARMS[arm]
            found, at_chance = [], at_chance_seeds(arm, 0.5)
            for seed, c in judged.items():
                error, reference = _error_at(c.get(variant), search, 0.5), c["reference"]["full_model_test_error"]
                if error is not None and seed not in at_chance:
                    found.append(relative_drop(reference, error))
            return found

        drop_arms = ("nas_with_ordering", "nas_without_ordering", "nas_fixed_teacher")
        row = {
            "recipe": recipe, "seeds": sorted(judged), "seeds_at_chance": chance,
            "reference_error": _stats([c["reference"]["full_model_test_error"] for c in judged.values()]),
            "chance_error": _stats([c["reference"]["chance_error"] for c in seeds.values()]),
            "error_at": {arm: {str(f): _stats(errors(arm, f, judged)) for f in BUDGETS} for arm in ORDER_ARMS},
            # seeds whose chosen model is no better than chance (compare's rule, accuracy asked too)
            "models_at_chance": {arm: {str(f): at_chance_seeds(arm, f) for f in BUDGETS} for arm in ORDER_ARMS},
            "relative_drop_at_half_vs_reference": {arm: _stats(drops(arm)) for arm in drop_arms},
        }  # fmt: skip
        enough = len(judged) >= FAIR_SEEDS
        ties_or_wins, left_out = [], {}
        for f in BUDGETS:
            # a seed where both compared models are at chance says nothing about which is better
            both = set(at_chance_seeds("nas_with_ordering", f)) & set(at_chance_seeds("importance", f))
            among = {s: c for s, c in judged.items() if s not in both}
            if enough and len(among) < FAIR_SEEDS:
                left_out[str(f)] = sorted(both)
                ties_or_wins.append(None)
                continue
            ties_or_wins.append(_at_or_below(_stats(errors("nas_with_ordering", f, among)),
                                             _stats(errors("importance", f, among))))  # fmt: skip
            if ties_or_wins[-1] is not None:
                for arm in ORDER_ARMS:
                    pooled[arm] += errors(arm, f, among)
        row["nas_with_ordering_at_or_below_importance"] = dict(zip(map(str, BUDGETS), ties_or_wins, strict=True))
        row["budgets_left_out_at_chance"] = left_out  # budget: the seeds where both models are at chance
        decided = [o for f, o in zip(BUDGETS, ties_or_wins, strict=True) if str(f) not in left_out]
        outcomes.append(all(decided) if enough and decided and None not in decided else None)
        half = row["relative_drop_at_half_vs_reference"]["nas_with_ordering"]
        drop_outcomes.append(half["mean"] <= TARGET_DROP if half["n"] >= FAIR_SEEDS else None)
        table[task] = row
    judged_tasks = [o for o in outcomes if o is not None]
    verdict = _verdict(outcomes, len(TASKS)) if judged_tasks else (
        f"no verdict: no task has {FAIR_SEEDS} finished seeds above chance")  # fmt: skip
    # measured, but its models at <= 50% are at chance on too many seeds to claim a drop
    unjudged = [t for t, o in zip(TASKS, drop_outcomes, strict=True) if o is None and len(table[t]["seeds"]) >=
                FAIR_SEEDS and table[t]["models_at_chance"]["nas_with_ordering"]["0.5"]]  # fmt: skip
    drop_verdict = _verdict(drop_outcomes, len(TASKS), unjudged) if any(o is not None for o in drop_outcomes) else (
        verdict)  # fmt: skip
    tests = {
        "pairs": sum(v is not None for v in pooled["nas_with_ordering"]),
        **{
            f"nas_with_ordering_below_{arm}_p": lower_errors_p(pooled["nas_with_ordering"], pooled[arm])
            for arm in ORDER_ARMS
            if arm != "nas_with_ordering"
        },
        **{
            f"{arm}_below_nas_with_ordering_p": lower_errors_p(pooled[arm], pooled["nas_with_ordering"])
            for arm in ("importance", "importance_on_ordered", "nas_fixed_teacher")
        },
        "pairs_are": "(task, seed, budget) of the tasks and seeds above chance, each arm's test error",
    }
    parts = []
    for task, row in table.items():
        if not row["seeds"] and not row["seeds_at_chance"]:
            continue
        e = row["error_at"]
        budgets = ", ".join(f"{float(f):.0%}: {_mean(e['nas_with_ordering'][str(f)])} ordered, "
                            f"{_mean(e['nas_without_ordering'][str(f)])} unordered, {_mean(e['importance'][str(f)])} "
                            f"importance" for f in BUDGETS)  # fmt: skip
        recipe = "larger recipe; " if row["recipe"] == "larger" else ""
        text = f"{task} ({recipe}{len(row['seeds'])} seed(s) above chance"
        text += f"; {len(row['seeds_at_chance'])} at chance, left out" if row["seeds_at_chance"] else ""
        drop = row["relative_drop_at_half_vs_reference"]["nas_with_ordering"]
        text += f"): test error {budgets}"
        if row["budgets_left_out_at_chance"]:
            text += "; left out, both models at chance: " + ", ".join(
                f"{float(f):.0%} ({len(s)} of {len(row['seeds'])} seeds)"
                for f, s in row["budgets_left_out_at_chance"].items()
            )
        at_half = len(row["models_at_chance"]["nas_with_ordering"]["0.5"])
        if drop["n"] >= FAIR_SEEDS:
            text += f"; drop at 50% {drop['mean']:+.1%}"
        elif at_half:
            text += f"; no drop at 50%: the ordered model there is at chance in {at_half} of {len(row['seeds'])} seeds"
        parts.append(text)
    p, q = tests["nas_with_ordering_below_importance_p"], tests["importance_below_nas_with_ordering_p"]
    p2, q2 = (tests["nas_with_ordering_below_importance_on_ordered_p"],
              tests["importance_on_ordered_below_nas_with_ordering_p"])  # fmt: skip
    pooled_text = "" if p is None else (
        f" Pooled over {tests['pairs']} (task, seed, budget) pairs, one-sided Wilcoxon signed-rank: ordered NAS below "
        f"importance p = {p:.2g}, importance below ordered NAS p = {q:.2g}; against importance pruning of the "
        f"ordered super-network: p = {p2:.2g} and {q2:.2g}")  # fmt: skip
    teacher = tests["nas_fixed_teacher_below_nas_with_ordering_p"]
    pooled_text += "" if p is None else (
        "." if teacher is None else f"; the quick preset's recipe (fixed teacher, 1 epoch) below ordered NAS "
        f"p = {teacher:.2g}.")  # fmt: skip
    return {
        "claim": claim,
        "rule": f"per task, on the seeds whose standard fine-tune is above chance (compare's rule): at 30%, 50% and "
        "70% of the encoder, each method's model chosen on the validation split among its Pareto members at that "
        "budget and scored on the whole test split; NAS on the ordered super-network has a mean test error at or "
        "below the importance baseline's, a gap within the larger standard deviation over seeds counting as a tie; "
        f"a verdict needs {FAIR_SEEDS} seeds. A seed where both compared models are at chance is left out of that "
        f"budget (and of the pooled tests); a budget left with fewer than {FAIR_SEEDS} seeds has no verdict. "
        f"Compression: the ordered NAS model at <= 50% drops at most {TARGET_DROP:.0%} of the standard fine-tune's "
        f"test metric (same task and seed), mean over the seeds where that model is above chance, at least "
        f"{FAIR_SEEDS}. The "
        "importance and layer-dropping baselines run on the super-network without ordering, as in the grid; the "
        "importance baseline on the ordered super-network is shown and tested beside them"
        + (
            ""
            if larger is None
            else f". A task with {FAIR_SEEDS} seeds of the larger recipe ({larger['is']}) is judged on those alone"
        ),  # fmt: skip
        "setup": found["setup"],
        "source": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "by_task": table,
        "reproduced_by_task": dict(zip(TASKS, outcomes, strict=True)),
        "verdict": verdict,
        "compression_by_task": dict(zip(TASKS, drop_outcomes, strict=True)),
        "compression_verdict": drop_verdict,
        "rank_tests": tests,
        "seeds": min((len(r["seeds"]) for r in table.values() if r["seeds"]), default=0),
        "sentence": f"(b, ordered) {verdict}; (c, ordered) {drop_verdict}"
        + (": " + "; ".join(parts) + "." if parts else ".")
        + pooled_text,
    }


def _measured_elsewhere(path: Path, letter: str, claim: str) -> dict:
    if not path.is_file():
        return {"claim": claim, "verdict": "not measured yet", "source": str(path.relative_to(ROOT)),
                "sentence": f"({letter}) not measured yet: {path.relative_to(ROOT)} does not exist."}  # fmt: skip
    found = json.loads(path.read_text())
    return {"claim": claim, **found["finding"], "source": str(path.relative_to(ROOT))}


# How each task's cells ran on the 2-core development VM (from the sessions' notes); stage times of
# cells that shared the cores are what the cells took, not what they cost.
CONDITIONS = {
    "rotten_tomatoes": "one worker; full's two cells beside the standard-NAS job of finding (e)",
    "sst2": "one worker; other load on the VM not recorded",
    "mrpc": "one worker; other load on the VM not recorded",
    "stsb": "two workers beside the full test suite and the demo: slowed by sharing the 2 cores",
}


def sweep_cost(cells: list) -> dict:
    """What the committed cells cost: per stage and cell, summed over the sessions that ran them."""
    stages: dict[str, list[float]] = {}
    totals = []
    by_task: dict[str, list[float]] = {}
    for cell in cells:
        seconds = stage_seconds(COMMITTED / "cells" / cell.name)
        for stage, value in seconds.items():
            stages.setdefault(stage, []).append(value)
        totals.append(sum(seconds.values()))
        by_task.setdefault(cell.axes["task"], []).append(sum(seconds.values()) / 60)
    return {
        "cells": len(cells),
        "cell_minutes": _stats([t / 60 for t in totals]),
        "stage_minutes": {s: _stats([v / 60 for v in values]) for s, values in stages.items()},
        # per task, since the tasks ran under different loads (CONDITIONS says how)
        "cell_minutes_by_task": {t: _stats(v) | {"ran": CONDITIONS.get(t, "")} for t, v in by_task.items()},
        "total_cell_hours": round(sum(totals) / 3600, 2),
        "note": "summed stage seconds of each cell's pipeline (wall time of its stages, one torch thread per "
        "cell), over every session that ran it; not the sweep's wall time when cells ran side by side",
    }


def report() -> None:
    from prunebench.report.answer import json_safe
    from prunebench.report.render import Bullets, Document, Section, Text, check_out, write_document
    from prunebench.report.sweep import attach_references, cell_facts
    from prunebench.rundir import SweepDir

    sweep = SweepDir(COMMITTED)
    record = sweep.read()
    facts = [cell_facts(sweep, entry) for entry in record["cells"]]
    attach_references(facts)
    done = [c for c in facts if c.status == "done"]
    # a cell whose full model is no better than the majority class says nothing about pruning it: out of the verdicts
    at_chance = sorted(c.name for c in done if (c.chance or {}).get("at_chance"))
    above = [c for c in done if c.name not in at_chance]
    summary = {
        "schema_version": 1,
        "kind": "prunebench-findings",
        "grid": "benchmarks/findings.toml",
        "cells_done": len(done),
        "cells": len(facts),
        "cells_at_chance": at_chance,
        "strategies": strategies(above),
        "baselines": baselines(above),
        "baselines_fair": baselines_fair(done),
        "ordering": ordering(),
        "compression": compression(above),
        "methods": _measured_elsewhere(
            METHODS_RESULTS, "d", "multi-objective search methods reach a higher hypervolume than random search"
        ),  # fmt: skip
        "cost": _measured_elsewhere(COST_RESULTS, "e", "weight-sharing NAS costs a fraction of standard NAS"),
        "sweep_cost": sweep_cost(done),
    }
    findings = Section("findings", "Findings", [Bullets([summary[k]["sentence"] for k in FINDING_KEYS])])
    findings.blocks.append(Text(
        f"{len(done)} of {len(facts)} cells of benchmarks/findings.toml are finished and committed "
        "(benchmarks/results/findings/). MiniLM (all-MiniLM-L6-v2), training capped at 2000 seeded examples, "
        "2 epochs, length 64; searches of 100 samples on 300 validation examples; each Pareto set scored on the "
        "task's whole test split (Rotten Tomatoes: the packaged corpus's held-out movies, 2605 snippets; GLUE: the "
        "official dev set), the extracted models on up to 1000 of its examples. Each verdict's rule is in "
        f"summary.json. {len(at_chance)} finished cells have a full model no better than the majority class on the "
        "test split (compare's rule): they are left out of every verdict (cells_at_chance in summary.json).",
        note=True,
    ))  # fmt: skip
    sections = [findings, _strategy_section(summary["strategies"]), _baseline_section(summary["baselines"]),
                _fair_section(summary["baselines_fair"]), _ordering_section(summary["ordering"]),
                _compression_section(summary["compression"]), _methods_section(summary["methods"]),
                _cost_section(summary["sweep_cost"])]  # fmt: skip
    source = str(COMMITTED.relative_to(ROOT))
    document = Document("prunebench findings: Klein et al. (TMLR 2024), measured", [source], sections)
    check_out(REPORT, [COMMITTED], overwrite=True)
    written = write_document(document, json_safe(summary), REPORT, ("html", "md"), [source])
    print("\n".join(summary[k]["sentence"] for k in FINDING_KEYS))
    print(f"wrote {', '.join(str(REPORT / w) for w in written)}")


FINDING_KEYS = ("strategies", "baselines", "baselines_fair", "ordering", "compression", "methods", "cost")


def _strategy_section(found: dict):
    from prunebench.report.render import Section, Table

    rows = [
        [task, strategy, _show(v["hypervolume"]), _show(v["error_at_half_encoder"])]
        for task, per in found["by_task"].items()
        for strategy, v in per.items()
        if v["hypervolume"]["n"]
    ]
    table = Table(["task", "strategy", "hypervolume", "error ≤50% encoder"], rows, "Per task and strategy, over seeds",
                  [found["rule"]])  # fmt: skip
    return Section("strategies", "(a) Training strategies", [table])


def _baseline_section(found: dict):
    from prunebench.report.render import Section, Table

    rows = []
    for task, row in found["by_task"].items():
        if not row["nas"]["hypervolume"]["n"]:
            continue
        for method in ("nas", "layer_drop", "importance"):
            above = "" if method == "nas" else row["cells_nas_above"][method]
            rows.append([task, method, _show(row[method]["hypervolume"]),
                         _show(row[method]["error_at_half_encoder"]), above])  # fmt: skip
    table = Table(["task", "method", "hypervolume", "error ≤50% encoder", "cells where NAS is above"], rows,
                  "NAS against the baselines on the same super-network", [found["rule"]])  # fmt: skip
    return Section("baselines", "(b) NAS against layer dropping and importance pruning", [table])


def _fair_section(found: dict):
    from prunebench.report.render import Section, Table
    from prunebench.report.sweep import BUDGETS

    rows = []
    for task, row in found["by_task"].items():
        if not row["cells"]:
            continue
        for f in BUDGETS:
            at = row["nas_at_or_below_importance"][str(f)]
            rows.append([task, f"{f:.0%}", *[_show(row["error_at"][m][str(f)]) for m in COMPARED],
                         "-" if at is None else ("yes" if at else "no")])  # fmt: skip
        rows.append([task, "hypervolume, common range", *[_show(row["hypervolume_common_range"][m]) for m in COMPARED],
                     f"{len(row['at_chance'])} of {len(row['cells'])} cells at chance, left out"])  # fmt: skip
    columns = ["task", "encoder budget", "NAS test error", "layer_drop", "importance", "NAS at or below importance"]
    title = "Mean ± standard deviation over the seeds above chance"
    table = Table(columns, rows, title, [found["rule"]])
    return Section("baselines-fair", "(b) measured fairly: matched budgets, chosen on validation", [table])


def _ordering_section(found: dict):
    from prunebench.report.render import Section, Table, Text
    from prunebench.report.sweep import BUDGETS

    if "by_task" not in found:
        return Section("ordering", "(b) and (c) with importance-ordered super-networks", [Text(found["sentence"])])
    rows = []
    for task, row in found["by_task"].items():
        if not row["seeds"]:
            continue
        task = task if row["recipe"] == "base" else f"{task} (larger recipe)"
        for f in BUDGETS:
            at, errors = row["nas_with_ordering_at_or_below_importance"][str(f)], row["error_at"]
            tie = at and errors["nas_with_ordering"][str(f)]["mean"] > errors["importance"][str(f)]["mean"]
            answer = "-" if at is None else ("tie: above, inside the spread" if tie else "yes" if at else "no")
            rows.append([task, f"{f:.0%}", *[_show(errors[arm][str(f)]) for arm in ORDER_ARMS], answer])
        drops = row["relative_drop_at_half_vs_reference"]
        rows.append([task, "drop at 50% vs standard fine-tune", _show(drops["nas_with_ordering"], percent=True),
                     _show(drops["nas_without_ordering"], percent=True), "", "", "",
                     _show(drops["nas_fixed_teacher"], percent=True),
                     f"reference error {_show(row['reference_error'])}"])  # fmt: skip
    columns = ["task", "encoder budget", "NAS, ordered", "NAS, not ordered (ablation)", "importance", "layer_drop",
               "importance on the ordered one", "NAS, ordered, fixed teacher, 1 epoch (quick preset)",
               "ordered NAS at or below importance"]  # fmt: skip
    title = "Test error, mean ± standard deviation over the seeds above chance"
    return Section("ordering", "(b) and (c) with importance-ordered super-networks (issue 28)",
                   [Table(columns, rows, title, [found["rule"]])])  # fmt: skip


def _compression_section(found: dict):
    from prunebench.report.render import Section, Table

    rows = []
    for task, row in found["by_task"].items():
        best = row["best"] or {}
        if not row["relative_drop_full_strategy"]["n"] and not best:
            continue
        rows.append([
            task, _show(row["relative_drop_vs_standard_fine_tune"], percent=True),
            _show(row["relative_drop_full_strategy"], percent=True), str(row["best_cell"] or "-"),
            str(best.get("option", "-")),
            "-" if best.get("encoder_fraction") is None else f"{best['encoder_fraction']:.0%}",
            "-" if best.get("relative_accuracy_drop") is None else f"{best['relative_accuracy_drop']:+.1%}",
        ])  # fmt: skip
    columns = ["task", f"drop vs standard fine-tune ({MAIN_STRATEGY}, over seeds)", "drop vs own full model",
               "best cell", "its model", "encoder", "drop vs own full"]  # fmt: skip
    return Section("compression", "(c) Compression at half the encoder",
                   [Table(columns, rows, "Best pruned model at ≤ 50% of the encoder", [found["rule"]])])  # fmt: skip


def _methods_section(found: dict):
    from prunebench.report.render import Section, Table

    def at(stats: dict, n: str) -> str:
        v = stats[n]
        return "-" if v["mean"] is None else f"{v['mean']:.3f}" + ("" if v["sd"] is None else f" ± {v['sd']:.3f}")

    def p(value: float | None) -> str:
        return "-" if value is None else f"{value:.2g}"

    rows = [
        [space, method, str(row["seeds"]), at(row["hypervolume"], "25"), at(row["hypervolume"], "50"),
         at(row["hypervolume"], "100"), at(row["hypervolume"], "final"), p(row["above_random_p"]),
         p(row["above_random_p_holm"])]
        for space, per in found.get("by_space", {}).items()
        for method, row in per["methods"].items()
    ]  # fmt: skip
    notes = [found.get("rule", ""), "hypervolume: mean ± standard deviation over seeds; layer_drop and "
             "importance are deterministic, one run each, shown for reference and not tested",
             f"with {METHOD_SEEDS} seeds a side, the smallest one-sided p a rank test can give is 1/252 = 0.004 "
             "(every run above every random-search run), times the number of methods tested after Holm (0.02 for "
             "five)"]  # fmt: skip
    notes += [f"{space}: Kruskal-Wallis across the search methods p = {p(per['kruskal_wallis_p'])}"
              for space, per in found.get("by_space", {}).items()]  # fmt: skip
    columns = ["space", "method", "seeds", "HV @25", "HV @50", "HV @100", "HV final", "p > random", "p (Holm)"]
    return Section("methods", "(d) Search methods on the medium and large spaces",
                   [Table(columns, rows, "Hypervolume over evaluations", notes)])  # fmt: skip


def _cost_section(found: dict):
    from prunebench.report.render import Section, Table, Text

    rows = [[stage, _show(v)] for stage, v in found["stage_minutes"].items()]
    rows.append(["whole cell", _show(found["cell_minutes"])])
    task_rows = [[task, _show(v), v["ran"]] for task, v in found.get("cell_minutes_by_task", {}).items()]
    return Section("cost", "What the sweep cost", [
        Text(f"{found['cells']} cells, {found['total_cell_hours']} cell-hours in all: {found['note']}."),
        Table(["stage", "minutes per cell"], rows, "Measured stage times (2-core development VM, 1 thread per cell)"),
        Table(["task", "minutes per cell", "how its cells ran"], task_rows, "Measured cell times per task"),
    ])  # fmt: skip


# -- (e): standard NAS against weight sharing ----------------------------------------------------------------

COST_CELL = "minilm-rotten_tomatoes-full-small-morea-cpu-seed0"  # the weight-sharing side: one finished cell
NAS_OUT = ROOT / "runs" / "findings-nas"
NAS_RATIO_REPRODUCED = 3.0  # (e) holds when standard NAS for as many samples costs at least this many times more


def _finished_nas(nas):
    """The standard NAS already in NAS_OUT when it finished with exactly these settings, else None."""
    from prunebench.rundir import RunDir
    from prunebench.search.runner import SearchResult

    try:
        record = json.loads(RunDir(NAS_OUT).run_file.read_text())
    except (OSError, ValueError):
        return None
    wanted = {k: v for k, v in nas.__dict__.items() if k != "train"}
    same = record.get("status") == "finished" and record.get("train") == nas.train.to_dict()
    if not same or json.loads(json.dumps(wanted)) != record.get("nas"):
        return None
    found = SearchResult.load(NAS_OUT, nas.name)
    return found if found.meta.get("status") == "finished" and not found.hypervolume.empty else None


def cost(trials: int) -> None:
    """Standard NAS (MO-ASHA, each sub-network fine-tuned from the pre-trained model with the cell's settings)
    for ``trials`` trials, against the committed weight-sharing cell: wall time and hypervolume."""
    import pandas as pd

    from prunebench.config import NasConfig
    from prunebench.environment import environment
    from prunebench.rundir import SearchDir, SweepDir
    from prunebench.search.nas import run_nas

    cell = SweepDir(COMMITTED).cell(COST_CELL)
    if not _finished(cell.path, _configs().get(COST_CELL)):
        sys.exit(f"{COST_CELL} is not committed yet; run the sweep and 'collect' first")
    config = _configs()[COST_CELL]
    train = replace(config.train, strategy="standard")  # each trial: plain fine-tuning of its sub-network
    nas = NasConfig(train=train, method="moasha", samples=trials, workers=1, objectives=config.search.objectives.names,
                    seq_len=config.train.max_length, score_test=False)  # fmt: skip
    found = _finished_nas(nas)
    if found is None:  # standard NAS is the slow side (~45 min for 10 trials here): run it only once
        found = run_nas(nas, NAS_OUT, overwrite=True)
    else:
        print(f"standard NAS: reusing the finished run in {NAS_OUT} (same settings)")
    # the search's own clock (first proposal to last result) on both sides; model loading is outside both
    nas_seconds = float(found.hypervolume["elapsed_seconds"].iloc[-1])
    shared = stage_seconds(cell.path)
    search_dir = SearchDir(cell.path / "search" / config.search.main().search_name)
    curve = pd.read_parquet(search_dir.hypervolume)
    ws_seconds = shared["train"] + shared["search"]

    def at(evaluations: int) -> float:
        return float(curve.loc[curve["evaluations"] <= evaluations, "hypervolume"].iloc[-1])

    samples = config.search.samples
    nas_extrapolated = nas_seconds * samples / trials
    ratio = nas_extrapolated / ws_seconds
    nas_hv = float(found.hypervolume["hypervolume"].iloc[-1])
    verdict = "reproduced" if ratio >= NAS_RATIO_REPRODUCED and at(trials) >= nas_hv - 0.02 else "not reproduced"
    sentence = (
        f"(e) {verdict}: weight-sharing NAS (super-network training {shared['train'] / 60:.1f} min + {samples} "
        f"evaluations {shared['search'] / 60:.1f} min = {ws_seconds / 60:.1f} min) against standard NAS, "
        f"{trials} MO-ASHA trials measured in {nas_seconds / 60:.1f} min, EXTRAPOLATED linearly to {samples} "
        f"samples: {nas_extrapolated / 60:.0f} min, {ratio:.1f}x the weight-sharing time; hypervolume after "
        f"{trials} samples {nas_hv:.3f} (standard) against {at(trials):.3f} (weight sharing; {at(samples):.3f} "
        f"after {samples})."
    )
    result = {
        "benchmark": "findings_cost",
        "finding": {
            "rule": f"standard NAS for the same number of samples ({samples}) costs at least "
            f"{NAS_RATIO_REPRODUCED:.0f}x the weight-sharing NAS's wall time, and its hypervolume after {trials} "
            "samples is not above weight sharing's after as many by more than 0.02",
            "verdict": verdict,
            "sentence": sentence,
            "wall_time_ratio_extrapolated": ratio,
        },
        "weight_sharing": {
            "cell": COST_CELL,
            "train_seconds": shared["train"],
            "search_seconds": shared["search"],
            "hypervolume_by_evaluations": {n: at(n) for n in (trials, samples)},
        },  # fmt: skip
        "standard_nas": {
            "trials": trials,
            "seconds": nas_seconds,
            "final_hypervolume": nas_hv,
            "extrapolated_seconds_for_samples": nas_extrapolated,
            "extrapolation": f"ESTIMATE: {trials} trials' wall time x {samples}/{trials}; MO-ASHA's share of "
            "trials stopped early is taken to stay the same",
            "settings": {
                "method": nas.method,
                "workers": nas.workers,
                "epochs": train.epochs,
                "max_train_examples": train.max_train_examples,
                "max_eval_examples": train.max_eval_examples,
                "max_length": train.max_length,
                "learning_rate": train.learning_rate,
                "batch_size": train.batch_size,
            },
        },  # fmt: skip
        "machine": "2-core development VM, one torch thread per trial and per cell; other work shared the cores "
        "(see environment and the note): both wall times are stretched alike only roughly",
        "environment": environment(),
    }
    COST_RESULTS.write_text(json.dumps(result, indent=2, default=str))
    print(sentence)
    print(f"wrote {COST_RESULTS}")


# -- (d): search methods on the medium and large spaces ---------------------------------------------------------

METHOD_SPACES = ("medium", "large")
METHODS_OUT = ROOT / "runs" / "findings-methods"  # METHODS_OUT/SPACE: a full-strategy super-network per space
METHOD_SEEDS = 5
SIGNIFICANCE = 0.05
HYPERVOLUME_AT = ("25", "50", "100", "final")  # evaluations (search_methods.CHECKPOINTS) and the last
BASELINE_METHODS = ("layer_drop", "importance")  # one deterministic run each; shown, not tested
# ehvi and lsbo fit one GP input per hyperparameter and refuse spaces of more than 64 (MiniLM's large: 9288)
SPACE_METHODS = {"large": "layer_drop,importance,random_search,local_search,morea,nsga2"}


def methods_plan() -> list[str]:
    """The commands behind (d), in order; each resumes where it stopped (training with --resume, given once its
    folder exists)."""
    train = _configs()[COST_CELL].train
    commands = []
    for space in METHOD_SPACES:
        run = (METHODS_OUT / space).relative_to(ROOT)
        commands.append(
            f"prunebench train --out {run} --model minilm --task {train.task} --strategy full --space {space} "
            f"--seed 0 --epochs {train.epochs} --batch-size {train.batch_size} --learning-rate {train.learning_rate} "
            f"--warmup-ratio {train.warmup_ratio} --max-train-examples {train.max_train_examples} "
            f"--max-eval-examples {train.max_eval_examples} --max-length {train.max_length}"
            + (" --resume" if (METHODS_OUT / space).exists() else "")
        )
        only = f" --methods {SPACE_METHODS[space]}" if space in SPACE_METHODS else ""
        commands.append(
            f"python benchmarks/search_methods.py {run}{only} --part methods --seeds "
            f"{','.join(map(str, range(METHOD_SEEDS)))} --evaluations 100 --workers 1 "
            f"--out benchmarks/results/findings_methods_{space}.json"
        )
        commands.append(
            f"python benchmarks/search_methods.py {run}{only} --part report --seeds "
            f"{','.join(map(str, range(METHOD_SEEDS)))} --out benchmarks/results/findings_methods_{space}.json"
        )
    return commands


def _holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of a family of p-values (one per method against random search)."""
    adjusted, running = {}, 0.0
    ordered = sorted(pvalues.items(), key=lambda kv: kv[1])
    for rank, (name, p) in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - rank) * p))
        adjusted[name] = running
    return adjusted


def _space_methods(table: dict) -> dict:
    """One space: each method's hypervolume over evaluations (mean ± sd over seeds), a one-sided Mann-Whitney U
    test of its final hypervolumes against random search's (Holm-adjusted over the methods), and a Kruskal-Wallis
    test across the search methods."""
    from scipy import stats

    random = [r["final_hypervolume"] for r in table["random_search"]["runs"]]
    searched = {m: [r["final_hypervolume"] for r in found["runs"]] for m, found in table.items()
                if m not in BASELINE_METHODS}  # fmt: skip
    tested = {m: finals for m, finals in searched.items() if m != "random_search" and len(finals) >= 2}
    raw = {m: float(stats.mannwhitneyu(finals, random, alternative="greater").pvalue)
           for m, finals in tested.items() if len(random) >= 2}  # fmt: skip
    adjusted = _holm(raw)
    rows = {}
    for method, found in table.items():
        rows[method] = {
            "hypervolume": {
                n: _stats([r["final_hypervolume"] if n == "final" else r["hypervolume"].get(n) for r in found["runs"]])
                for n in HYPERVOLUME_AT
            },
            "seeds": len(found["runs"]),
            "above_random_p": raw.get(method),
            "above_random_p_holm": adjusted.get(method),
            "significant": None if method not in adjusted else bool(adjusted[method] < SIGNIFICANCE),
        }
    groups = [finals for finals in searched.values() if len(finals) >= 2]
    kruskal = float(stats.kruskal(*groups).pvalue) if len(groups) >= 2 else None
    return {"methods": rows, "kruskal_wallis_p": kruskal}


def methods() -> None:
    """(d) from the spaces' search_methods reports; a space whose report is missing is 'not measured yet' and the
    plan to measure it is printed."""
    by_space, outcomes, parts = {}, [], []
    for space in METHOD_SPACES:
        path = RESULTS_DIR / f"findings_methods_{space}.json"
        if not path.is_file():
            print(f"{path.relative_to(ROOT)} is missing")
            parts.append(f"{space}: not measured yet")
            outcomes.append(None)
            continue
        found = _space_methods(json.loads(path.read_text())["methods"])
        by_space[space] = found
        rows = found["methods"]
        significant = [m for m, r in rows.items() if r["significant"]]
        outcomes.append(bool(significant))
        random_at_100 = rows["random_search"]["hypervolume"]["100"]
        best = max((m for m in rows if m not in BASELINE_METHODS),
                   key=lambda m: rows[m]["hypervolume"]["100"]["mean"] or float("-inf"))  # fmt: skip
        best_at_100 = rows[best]["hypervolume"]["100"]
        parts.append(
            f"{space}: " + (", ".join(significant) + " above random search" if significant
                            else "no method significantly above random search")
            + f" (hypervolume at 100 evaluations: best {best} {_show(best_at_100)}, random search "
            f"{_show(random_at_100)}"
            + ("" if found["kruskal_wallis_p"] is None else
               f"; Kruskal-Wallis across the methods p = {found['kruskal_wallis_p']:.2g}")
            + "".join(f"; {b} (deterministic) {rows[b]['hypervolume']['final']['mean']:.3f}"
                      for b in BASELINE_METHODS if b in rows and rows[b]["hypervolume"]["final"]["mean"] is not None)
            + ")"
        )  # fmt: skip
    if None in outcomes:
        print("the plan:\n  " + "\n  ".join(methods_plan()))
    judged = [o for o in outcomes if o is not None]
    if not judged:
        verdict = "not measured yet"
    else:
        verdict = _verdict(outcomes, len(METHOD_SPACES)).replace("tasks", "spaces")
    finding = {
        "rule": f"on each space, at least one method's final hypervolumes (100 evaluations, {METHOD_SEEDS} seeds) "
        f"are above random search's by a one-sided Mann-Whitney U test, Holm-adjusted over the methods, at "
        f"p < {SIGNIFICANCE}",
        "verdict": verdict,
        "sentence": f"(d) {verdict}: " + "; ".join(parts) + ".",
        "by_space": by_space,
    }
    METHODS_RESULTS.write_text(json.dumps({"benchmark": "findings_methods", "finding": finding}, indent=2))
    print(finding["sentence"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["restore", "collect", "report", "cost", "methods"])
    parser.add_argument("--trials", type=int, default=10, help="cost: standard-NAS trials to measure")
    args = parser.parse_args()
    steps = {"restore": restore, "collect": collect, "report": report, "cost": lambda: cost(args.trials),
             "methods": methods}  # fmt: skip
    try:
        steps[args.step]()
    except Exception as error:  # a PrunebenchError (missing or damaged sweep record): one line
        from prunebench.errors import PrunebenchError

        if not isinstance(error, PrunebenchError):
            raise
        print(error, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
