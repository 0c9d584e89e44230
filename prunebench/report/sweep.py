"""The report of a sweep folder (``prunebench sweep``): every cell in one table, and each group of cells that
differ only in their seed summarised as mean ± standard deviation.

Per cell, read from its run directory (``report.load``) and the sweep's record (``rundir.SweepDir``):
the main search's final hypervolume, its error at half the encoder (the lowest test error of its Pareto
set at <= 50% of the encoder's parameters; the validation error when the set was not scored on the
test split), the same two numbers of every baseline, and the best pruned model at <= 50% of the
encoder with its relative drop from the full model (``report.answer``, the figure a single run's
report gives). A cell that failed shows its error; one not run yet shows its status.

Latency is shown per machine, one table each (the node that profiled the cell, by host and CPU model with
its instruction-set flags, as ``sweep.json`` records it): a CPU latency measured on one machine is never
compared with one measured on another. Each table gives, at the smallest profiled batch x length, the full
model's fp32 latency and that of the best pruned model at <= 50% of the encoder.

The document goes through the same templates as a run's report (values escaped in HTML and
Markdown alike), and ``summary.json`` holds the same numbers for scripts.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from prunebench.errors import PrunebenchError
from prunebench.profiling.scoring import PerExample
from prunebench.report.answer import HALF_ENCODER, json_safe, relative_drop, run_summary
from prunebench.report.compare import accuracy_and_chance, at_chance, chance_of
from prunebench.report.load import RunData, SearchData, encoder_fraction, load_run
from prunebench.report.paired import MIN_RANK_PAIRS, lower_errors_p
from prunebench.report.render import (
    FORMATS,
    Bullets,
    Document,
    ReportResult,
    Section,
    Table,
    Text,
    check_formats,
    check_out,
    write_document,
)
from prunebench.rundir import RunDir, SweepDir

SCHEMA_VERSION = 1
GROUP_AXES = ("model", "task", "strategy", "space", "method", "target")  # a group: every axis but the seed


@dataclass
class CellFacts:
    name: str
    axes: dict
    status: str
    error: str | None
    seconds: float | None
    log: str | None
    hypervolume: float | None = None
    # the main search's member chosen on validation at <= 50% of the encoder, scored on ``error_split``
    error_at_half: float | None = None
    error_split: str | None = None  # "test" or "validation"
    error_at: dict = field(default_factory=dict)  # budget ("0.3", "0.5", "0.7") -> the same at that budget
    hypervolume_common: float | None = None  # the main search's hypervolume over [common_low, 1]
    common_low: float | None = None  # the largest of the compared searches' smallest Pareto members
    # method -> {"hypervolume", "error_at_half_encoder", "error_at", "hypervolume_common_range"}
    baselines: dict = field(default_factory=dict)
    chance: dict | None = None  # cell_chance: its full model against the majority class
    best_at_half: dict | None = None  # report.answer's best pruned model at <= 50% of the encoder
    full_test_error: float | None = None
    notes: list[str] = field(default_factory=list)
    machine: str | None = None  # where it profiled: host · CPU model [ISA flags] (None: not recorded)
    latency: dict | None = None  # {"shape", "full_ms", "best_ms"} of its profile, on ``machine``
    # The standard fine-tune of its model, task and seed (the grid's 'standard' cell; see attach_references):
    # {"cell", "full_test_error", "relative_drop_at_half_encoder"}; None without one
    reference: dict | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name, "axes": self.axes,
            "status": self.status, "error": self.error, "seconds": self.seconds, "log": self.log,
            "hypervolume": self.hypervolume, "error_at_half_encoder": self.error_at_half,
            "error_at_half_encoder_split": self.error_split, "error_at": self.error_at,
            "hypervolume_common_range": self.hypervolume_common, "common_range_low": self.common_low,
            "at_chance": (self.chance or {}).get("at_chance"), "chance": self.chance, "baselines": self.baselines,
            "full_test_error": self.full_test_error, "best_at_half_encoder": self.best_at_half, "missing": self.notes,
            "machine": self.machine, "latency": self.latency, "reference": self.reference,
        }  # fmt: skip


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


BUDGETS = (0.3, HALF_ENCODER, 0.7)  # matched encoder budgets: every method is compared at the same sizes


def error_chosen_on_validation(pareto: pd.DataFrame, fraction: float) -> tuple[float | None, str | None]:
    """The member with the lowest *validation* error at <= ``fraction`` of the encoder, scored by its test error
    where the set was scored on test (else its validation error, the split named second); None: no member there.

    Choosing on test would pick the luckiest of several members on the very split that scores it. The lowest
    validation error at a budget is always on the Pareto front, so the front is enough.
    """
    if not len(pareto):
        return None, None
    split = "test" if "test_error" in pareto.columns else "validation"
    chosen = member_chosen_on_validation(pareto, fraction)
    if chosen is None:
        return None, split
    return _finite(chosen["test_error" if split == "test" else "error"]), split


def member_chosen_on_validation(pareto: pd.DataFrame, fraction: float) -> pd.Series | None:
    """``error_chosen_on_validation``'s member: the lowest validation error at <= ``fraction`` of the encoder, the
    smaller of equals (None: no member there)."""
    inside = pareto[encoder_fraction(pareto) <= fraction + 1e-9]
    if not len(inside):
        return None
    return inside.assign(_enc=encoder_fraction(inside)).sort_values(["error", "_enc"]).iloc[0]


def errors_at_budgets(pareto: pd.DataFrame) -> tuple[dict[str, float | None], str | None]:
    """``error_chosen_on_validation`` at each of ``BUDGETS`` (keyed "0.3", "0.5", "0.7"), and the split scored."""
    chosen = {str(f): error_chosen_on_validation(pareto, f) for f in BUDGETS}
    return {f: error for f, (error, _) in chosen.items()}, next(iter(chosen.values()))[1]


def hypervolume_over(pareto: pd.DataFrame, low: float) -> float | None:
    """The share of [low, 1] x [0, 1] (encoder fraction x validation error) that the set dominates.

    At each budget x in [low, 1] the best validation error of a member no larger than x counts (a smaller model
    meets a larger budget); nothing below ``low`` counts. With ``low`` the largest of the compared sets' smallest
    members, a method that samples smaller models than another gains nothing from that coverage alone.
    """
    if not len(pareto) or low >= 1:
        return None
    points = sorted(zip(encoder_fraction(pareto).tolist(), pareto["error"].astype(float).tolist(), strict=True))
    edges = sorted({low, 1.0, *(x for x, _ in points if low < x < 1)})
    area = 0.0
    for left, right in zip(edges[:-1], edges[1:], strict=True):
        best = min((error for x, error in points if x <= left + 1e-12), default=1.0)
        area += (right - left) * (1 - min(best, 1.0))
    return area / (1 - low)


def cell_chance(run_dir: Path, target: str | None = "cpu") -> dict | None:
    """The run's full model against the majority class on the test split (``compare.at_chance``); None where its
    scores do not say."""
    scores = RunDir(run_dir).profile_dir(target or "cpu").read_scores("run its profile with --score again")
    if scores is None:
        return None
    chance_error, examples = chance_of(scores)
    full = scores[(scores["model"] == "full") & (scores["variant"] == "fp32")]
    if not len(full) or math.isnan(chance_error):
        return None
    error = float(full["error"].iloc[0])
    accuracy = accuracy_and_chance(PerExample.of(full.iloc[0]))
    return {"full_test_error": error, "chance_error": chance_error,
            "examples": int(examples) if math.isfinite(examples) else None,
            "full_test_accuracy": None if math.isnan(accuracy[0]) else accuracy[0],
            "chance_accuracy": None if math.isnan(accuracy[1]) else accuracy[1],
            "at_chance": at_chance(error, chance_error, examples, *accuracy)}  # fmt: skip


def _main_search(run: RunData, axes: dict) -> SearchData | None:
    name = f"{axes.get('method')}-seed{axes.get('seed')}"  # SearchConfig.search_name of the pipeline's search
    named = [s for s in run.searches if s.name == name]
    return named[0] if named else (run.search_methods[0] if run.search_methods else None)


def machine_label(machine: dict | None, target: str | None) -> str | None:
    """The machine a cell profiled on, as the report names it: host, CPU model and ISA flags (and a GPU target)."""
    if not machine:
        return None
    cpu = machine.get("cpu") or {}
    isa = ", ".join(cpu.get("isa") or []) or "no AVX2"
    kind = " ".join(
        str(part)
        for part in (
            cpu.get("vendor"),
            cpu.get("family") and f"family {cpu['family']}",
            cpu.get("model_number") and f"model {cpu['model_number']}",
        )
        if part
    )
    label = f"{machine.get('host', '?')} · {cpu.get('model', '?')}{f' ({kind})' if kind else ''} [{isa}]"
    return label if target in (None, "cpu") else f"{label} · {target}"


def _latency(run: RunData, target: str | None, best: dict | None) -> dict | None:
    """The full model's and the best pruned model's fp32 latency at the smallest profiled shape (ms)."""
    profile = next((p for p in run.profiles if p.target == target), None)
    if profile is None or not len(profile.table):
        return None
    table = profile.table
    table = table[(table["status"] == "ok") & (table["variant"] == "fp32")] if "status" in table else table
    if not len(table):
        return None
    batch, length = table.sort_values(["batch_size", "seq_len"]).iloc[0][["batch_size", "seq_len"]]
    shaped = table[(table["batch_size"] == batch) & (table["seq_len"] == length)]

    def ms(model: str) -> float | None:
        rows = shaped[shaped["model"] == model]
        return _finite(rows["latency_s"].iloc[0] * 1000) if len(rows) else None

    model, _, variant = str((best or {}).get("option") or "").rpartition(" ")
    return {"shape": f"batch {int(batch)} x {int(length)}", "full_ms": ms("full"),
            "best_ms": ms(model) if variant == "fp32" else None}  # fmt: skip


def cell_facts(sweep: SweepDir, entry: dict) -> CellFacts:
    """What the report shows of one cell: its record entry, and its run's numbers when it has a run."""
    facts = CellFacts(entry["name"], dict(entry.get("axes") or {}), entry["status"], entry.get("error"),
                      _finite(entry.get("seconds")), entry.get("log"))  # fmt: skip
    facts.machine = machine_label(entry.get("machine"), facts.axes.get("target"))
    folder = sweep.cell(entry["name"])
    if not folder.is_run():
        return facts
    try:
        run = load_run(folder.path)
    except PrunebenchError as error:  # a damaged run.json: shown on the cell, the other cells still report
        facts.notes.append(str(error))
        return facts
    facts.notes = list(run.missing)
    main = _main_search(run, facts.axes)
    compared = [s for s in ([main] if main is not None else []) + list(run.baselines) if len(s.pareto)]
    # the range every compared set covers: from the largest of their smallest members to the full encoder
    low = max((float(encoder_fraction(s.pareto).min()) for s in compared), default=None)
    facts.common_low = None if low is None else round(low, 4)
    if main is not None:
        facts.hypervolume = _finite(main.final_hypervolume)
        facts.error_at, facts.error_split = errors_at_budgets(main.pareto)
        facts.error_at_half = facts.error_at[str(HALF_ENCODER)]
        facts.hypervolume_common = None if low is None else _finite(hypervolume_over(main.pareto, low))
    for baseline in run.baselines:
        error_at, _ = errors_at_budgets(baseline.pareto)
        facts.baselines[baseline.method] = {
            "hypervolume": _finite(baseline.final_hypervolume),
            "error_at_half_encoder": error_at[str(HALF_ENCODER)],
            "error_at": error_at,
            "hypervolume_common_range": None if low is None else _finite(hypervolume_over(baseline.pareto, low)),
        }
    try:
        facts.chance = cell_chance(folder.path, facts.axes.get("target"))
    except PrunebenchError as error:  # a damaged scores table: said on the cell, the other numbers still shown
        facts.notes.append(str(error))
    summary = run_summary(run)
    facts.best_at_half = summary["best_at_half_encoder"]
    facts.full_test_error = (summary["full"] or {}).get("test_error")
    facts.latency = _latency(run, facts.axes.get("target"), facts.best_at_half)
    return facts


REFERENCE_STRATEGY = "standard"  # a plain fine-tune of the whole model: what a user would ship without pruning
REFERENCE_AXES = ("model", "task", "seed", "space", "target")  # what a cell shares with its reference


def attach_references(cells: list[CellFacts]) -> None:
    """Each cell's drop at half the encoder against the standard fine-tune of the same model, task and seed.

    A cell's own drop is taken against its super-network's full model, which the sub-network training weakens; the
    standard fine-tune is the model a user has before pruning. The reference is the finished 'standard' cell that
    shares ``REFERENCE_AXES`` (a standard cell is its own reference); none in the grid: None.
    """
    references = {
        tuple(c.axes.get(a) for a in REFERENCE_AXES): c
        for c in cells
        if c.axes.get("strategy") == REFERENCE_STRATEGY and c.status == "done" and c.full_test_error is not None
    }
    for cell in cells:
        found = references.get(tuple(cell.axes.get(a) for a in REFERENCE_AXES))
        best = _finite((cell.best_at_half or {}).get("test_error"))
        if found is None:
            continue
        drop = None if best is None else relative_drop(found.full_test_error, best)
        cell.reference = {"cell": found.name, "full_test_error": found.full_test_error,
                          "relative_drop_at_half_encoder": drop}  # fmt: skip


def _reference_drop(facts: CellFacts) -> float | None:
    return _finite((facts.reference or {}).get("relative_drop_at_half_encoder"))


def by_machine(cells: list[CellFacts]) -> dict[str, list[CellFacts]]:
    """The cells with a measured latency, grouped by the machine that measured it."""
    found: dict[str, list[CellFacts]] = {}
    for cell in cells:
        if cell.latency is not None:
            found.setdefault(cell.machine or "machine not recorded", []).append(cell)
    return found


def _latency_tables(cells: list[CellFacts]) -> list:
    blocks: list = [Text("One table per machine: latencies measured on different machines are not compared.")]
    for machine, members in by_machine(cells).items():
        rows = []
        for c in members:
            full, best = c.latency.get("full_ms"), c.latency.get("best_ms")
            speedup = f"{full / best:.2f}x" if full and best else "-"
            rows.append([c.name, str(c.axes.get("target", "-")), c.latency["shape"], _num(full, 3), _num(best, 3),
                         speedup])  # fmt: skip
        columns = ["cell", "target", "shape", "full fp32 ms", "best ≤50% enc. fp32 ms", "speed-up"]
        blocks.append(Table(columns, rows, machine))
    return blocks


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _drop(facts: CellFacts) -> float | None:
    best = facts.best_at_half or {}
    return _finite(best.get("relative_accuracy_drop"))


def _baseline_error_at(facts: CellFacts, method: str, fraction: float) -> float | None:
    return ((facts.baselines.get(method) or {}).get("error_at") or {}).get(str(fraction))


def groups(cells: list[CellFacts]) -> list[dict]:
    """Cells that differ only in their seed, with the mean and standard deviation of their numbers."""
    found: dict[tuple, list[CellFacts]] = {}
    for cell in cells:
        found.setdefault(tuple(cell.axes.get(a) for a in GROUP_AXES), []).append(cell)
    out = []
    for key, members in found.items():
        done = [c for c in members if c.status == "done"]

        def values(get, done=done) -> list[float]:
            return [v for v in (get(c) for c in done) if v is not None]

        def stats(numbers: list[float]) -> dict:
            return {"mean": statistics.mean(numbers) if numbers else None,
                    "sd": statistics.stdev(numbers) if len(numbers) > 1 else None, "n": len(numbers)}  # fmt: skip

        methods = sorted({m for c in done for m in c.baselines})
        above = [c for c in done if not (c.chance or {}).get("at_chance")]

        def rank_test(method: str, above=above) -> dict:
            """NAS against one baseline, paired by seed and budget over the cells above chance."""
            nas = [c.error_at.get(str(f)) for c in above for f in BUDGETS]
            other = [_baseline_error_at(c, method, f) for c in above for f in BUDGETS]
            pairs = sum(a is not None and b is not None for a, b in zip(nas, other, strict=True))
            return {"pairs": pairs, "nas_below_p": lower_errors_p(nas, other),
                    "baseline_below_nas_p": lower_errors_p(other, nas)}  # fmt: skip

        out.append({
            **dict(zip(GROUP_AXES, key, strict=True)), "cells": len(members), "done": len(done),
            "seeds": sorted(c.axes.get("seed") for c in done),
            "hypervolume": stats(values(lambda c: c.hypervolume)),
            "error_at_half_encoder": stats(values(lambda c: c.error_at_half)),
            "relative_drop_at_half_encoder": stats(values(_drop)),
            "relative_drop_vs_reference_at_half_encoder": stats(values(_reference_drop)),
            "error_at": {str(f): stats(values(lambda c, f=f: c.error_at.get(str(f)))) for f in BUDGETS},
            "hypervolume_common_range": stats(values(lambda c: c.hypervolume_common)),
            "at_chance": sum(bool((c.chance or {}).get("at_chance")) for c in done),
            "baselines": {m: {key: stats(values(lambda c, m=m, key=key: (c.baselines.get(m) or {}).get(key)))
                              for key in ("hypervolume", "error_at_half_encoder", "hypervolume_common_range")}
                          | {"error_at": {str(f): stats(values(lambda c, m=m, f=f: _baseline_error_at(c, m, f)))
                                          for f in BUDGETS}, "rank_test": rank_test(m)}
                          for m in methods},
        })  # fmt: skip
    return out


def _cells_table(cells: list[CellFacts], baselines: list[str]) -> Table:
    columns = ["cell", "task", "strategy", "method", "space", "seed", "status", "hypervolume", "error ≤50% enc."]
    columns += [f"{m} hypervolume" for m in baselines] + [f"{m} error ≤50%" for m in baselines]
    columns += ["best ≤50% encoder", "its encoder", "relative drop", "drop vs standard", "minutes"]
    rows = []
    for c in cells:
        best = c.best_at_half or {}
        status = c.status if c.error is None else f"{c.status}: {c.error}"
        if (c.chance or {}).get("at_chance"):
            status += " (full model ≈ chance)"
        validation = c.error_split == "validation" and c.error_at_half is not None
        rows.append([
            c.name, str(c.axes.get("task", "-")), str(c.axes.get("strategy", "-")), str(c.axes.get("method", "-")),
            str(c.axes.get("space", "-")), str(c.axes.get("seed", "-")), status, _num(c.hypervolume),
            _num(c.error_at_half) + (" (val.)" if validation else ""),
            *[_num((c.baselines.get(m) or {}).get("hypervolume")) for m in baselines],
            *[_num((c.baselines.get(m) or {}).get("error_at_half_encoder")) for m in baselines],
            str(best.get("option", "-")), _num(_finite(best.get("encoder_fraction")), 2), _pct(_drop(c)),
            _pct(_reference_drop(c)),
            _num(None if c.seconds is None else c.seconds / 60, 1),
        ])  # fmt: skip
    notes = [
        "hypervolume: the main search's final hypervolume (error against the encoder's size, normalised as the "
        "search records). error ≤50% enc.: the test error of the Pareto member with the lowest validation error "
        "at no more than half of the encoder's parameters (chosen on validation, scored on test; (val.): its "
        "validation error, the set was not scored on test); the baselines' the same. summary.json has the same at "
        "30% and 70%, and each search's hypervolume over the range all of a cell's searches cover. A cell whose "
        "full model is no better than the majority class is marked ≈ chance: its numbers say nothing about "
        "pruning. best ≤50% encoder: the "
        "lowest-test-error extracted and scored pruned model at half the encoder, and its relative drop in the "
        "metric from the full model (positive: worse). drop vs standard: the same model's drop against the "
        "standard fine-tune of the same model, task and seed (the grid's 'standard' cell): the model a user has "
        "before pruning, which a super-network's own full model can trail."
    ]
    return Table(columns, rows, "Every cell", notes)


def _groups_table(found: list[dict], baselines: list[str]) -> Table:
    columns = ["model", "task", "strategy", "method", "space", "target", "seeds done", "at chance", "hypervolume",
               "error ≤30/50/70% enc.", "relative drop", "drop vs standard"]  # fmt: skip
    columns += [f"{m} hypervolume" for m in baselines] + [f"{m} error ≤30/50/70%" for m in baselines]
    columns += [f"NAS below {m}: p (pairs)" for m in baselines]

    def cell(stats: dict, percent: bool = False) -> str:
        if stats["mean"] is None:
            return "-"
        show = f"{stats['mean']:+.1%}" if percent else f"{stats['mean']:.3f}"
        if stats["sd"] is None:
            return show
        return show + " ± " + (f"{stats['sd']:.1%}" if percent else f"{stats['sd']:.3f}")

    def budgets(error_at: dict) -> str:  # the means at the three budgets (their spreads: summary.json)
        return " / ".join(_num(error_at[str(f)]["mean"]) for f in BUDGETS)

    def rank(test: dict) -> str:
        p = test["nas_below_p"]
        return f"{'-' if p is None else f'{p:.2g}'} ({test['pairs']})"

    rows = [[str(g[a]) for a in ("model", "task", "strategy", "method", "space", "target")]
            + [f"{g['done']}/{g['cells']}", str(g["at_chance"]), cell(g["hypervolume"]), budgets(g["error_at"]),
               cell(g["relative_drop_at_half_encoder"], percent=True),
               cell(g["relative_drop_vs_reference_at_half_encoder"], percent=True)]
            + [cell(g["baselines"][m]["hypervolume"]) if m in g["baselines"] else "-" for m in baselines]
            + [budgets(g["baselines"][m]["error_at"]) if m in g["baselines"] else "-" for m in baselines]
            + [rank(g["baselines"][m]["rank_test"]) if m in g["baselines"] else "-" for m in baselines]
            for g in found]  # fmt: skip
    notes = [
        "NAS below a baseline: one-sided Wilcoxon signed-rank p that the main search's errors at 30%, 50% and 70% of "
        "the encoder are lower than the baseline's, paired by seed and budget over the group's cells above chance "
        f"(summary.json: the other direction too); '-' below {MIN_RANK_PAIRS} pairs (3 seeds give 9), where no p "
        "under 0.016 is reachable, or when every pair is equal."
    ]
    return Table(columns, rows, "Over seeds: mean ± standard deviation of the finished cells", notes)


def build_sweep_document(sweep: SweepDir, record: dict, cells: list[CellFacts]) -> Document:
    counts = {s: sum(c.status == s for c in cells) for s in ("done", "failed", "running", "waiting")}
    baselines = sorted({m for c in cells for m in c.baselines})
    overview = Section("sweep", f"Sweep of {len(cells)} cells")
    axes = "; ".join(f"{axis}: {', '.join(map(str, values))}" for axis, values in (record.get("axes") or {}).items())
    minutes = sum(c.seconds or 0.0 for c in cells) / 60
    overview.blocks.append(Text(
        f"Grid {record.get('grid', '?')} on preset {record.get('preset', '?')}; axes {axes or '(the preset only)'}. "
        f"{counts['done']} done, {counts['failed']} failed, {counts['running']} running, {counts['waiting']} waiting; "
        f"the cells' pipelines took {minutes:.1f} minutes in all (summed over cells, not wall time)."
    ))  # fmt: skip
    failed = [f"{c.name}: {c.error} (log: {c.log})" for c in cells if c.status == "failed"]
    if failed:
        overview.blocks += [Text("Failed cells, with their error:"), Bullets(failed)]
    overview.blocks.append(_cells_table(cells, baselines))
    found = groups(cells)
    overview.subsections.append(Section("groups", "Over seeds", [_groups_table(found, baselines)]))
    if by_machine(cells):
        overview.subsections.append(Section("latency", "Latency by machine", _latency_tables(cells)))
    reports = [str(sweep.cell(c.name).report_dir.html.relative_to(sweep.path)) for c in cells
               if sweep.cell(c.name).report_dir.html.is_file()]  # fmt: skip
    missing = [f"{c.name}: {note}" for c in cells for note in c.notes]
    details = Section("cells", "Each cell's own report", [Bullets(reports) if reports else Text("None yet.")])
    gaps = Section("missing", "Missing", [Bullets(missing) if missing else Text("Nothing is missing.")])
    return Document("prunebench sweep report", [f"the sweep {sweep.path}"], [overview, details, gaps])


def sweep_summary(sweep: SweepDir, record: dict, cells: list[CellFacts]) -> dict:
    return json_safe({
        "schema_version": SCHEMA_VERSION, "kind": "prunebench-sweep-report", "sweep": str(sweep.path),
        "grid": record.get("grid"), "preset": record.get("preset"), "axes": record.get("axes"),
        "counts": {s: sum(c.status == s for c in cells) for s in ("done", "failed", "running", "waiting")},
        "cells": [c.to_dict() for c in cells], "groups": groups(cells),
        "latency_by_machine": {machine: [c.name for c in members] for machine, members in by_machine(cells).items()},
    })  # fmt: skip


def write_sweep_report(
    sweep_dir: Path, out: Path | None = None, formats=FORMATS, overwrite: bool = False
) -> ReportResult:
    """The report of the sweep folder ``sweep_dir`` into ``out`` (default: its ``report/``)."""
    chosen = check_formats(formats)
    sweep = SweepDir(sweep_dir)
    record = sweep.read()
    out = Path(out) if out is not None else sweep.report_dir.path
    cells = [cell_facts(sweep, entry) for entry in record["cells"]]
    attach_references(cells)
    check_out(out, [sweep.cell(c.name).path for c in cells], overwrite)
    document = build_sweep_document(sweep, record, cells)
    written = write_document(document, sweep_summary(sweep, record, cells), out, chosen, [str(sweep.path)])
    missing = [f"{c.name}: {c.status}" + (f" ({c.error})" if c.error else "") for c in cells if c.status != "done"]
    return ReportResult.written(out, chosen, written, missing, [c.name for c in cells])
