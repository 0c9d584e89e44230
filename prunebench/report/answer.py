"""The report's answer as data: what the full model scores, the best pruned model at half the encoder,
and for every hardware target and budget what to deploy.

``report_summary(runs)`` is what the report writes as ``summary.json`` (schema in docs/report.md) and what
its headline section says in words, so the two never disagree. Everything here is read from tables
the earlier stages wrote (``report.load``); nothing is measured or recomputed.

Parameter counts name what they count: the *encoder fraction* (encoder parameters / the full
encoder's: what structural pruning removes) and the *total fraction* (every parameter, embeddings
and task head included: what the weight file holds).
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

from prunebench.report.compare import FULL_MODEL, REFERENCE_VARIANT, full_fp32, option_facts
from prunebench.report.load import CompareData, RunData, encoder_fraction, total_fraction

SCHEMA_VERSION = 2  # 2: per budget, the error interval, ties and the paired test, alternatives, --max-drop
HALF_ENCODER = 0.5  # the paper's headline point: half the encoder's parameters removed
FP32_BYTES = 4


@dataclass(frozen=True)
class BestAtHalf:
    """The pruned model at no more than half the encoder with the lowest *validation* error (never one at chance),
    and its test error: chosen on validation so that the test split only scores it."""

    option: str
    encoder_fraction: float
    total_fraction: float
    validation_error: float
    test_error: float
    relative_accuracy_drop: float | None  # (full metric - its metric) / full metric; None without the full model
    source: str  # which table it was read from


@dataclass(frozen=True)
class Embeddings:
    """What no pruning of the encoder removes: the embeddings and the task head."""

    parameters: int  # the full model's
    encoder_parameters: int
    share: float  # of the full model's parameters outside the encoder
    fp32_mib: float  # their weight in fp32: the floor under every pruned model's weights


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def full_model(run: RunData) -> dict | None:
    """The fine-tuned, un-pruned model in fp32: its test error, from a comparison or the profile's scores."""
    for compare in run.compares:
        row = full_fp32(compare.options)
        if row is not None:
            return {"variant": REFERENCE_VARIANT, "test_error": float(row["error"])}
    for profile in run.profiles:
        scores = profile.scores
        if scores is not None and len(scores):
            rows = scores[(scores["model"] == FULL_MODEL) & (scores["variant"] == REFERENCE_VARIANT)]
            rows = rows[rows["status"] == "ok"] if "status" in rows else rows
            if len(rows):
                return {"variant": REFERENCE_VARIANT, "test_error": float(rows["error"].iloc[0])}
    return None


def relative_drop(full_error: float | None, error: float) -> float | None:
    """(full metric - its metric) / full metric, metric = 1 - error (positive: worse); None without a usable full."""
    if full_error is None or full_error >= 1:
        return None
    return ((1 - full_error) - (1 - error)) / (1 - full_error)


def _validation_errors(run: RunData) -> dict[str, float]:
    """Each extracted model's validation error (the search's objective), keyed by the name compare gives it."""
    found: dict[str, float] = {}
    for search in run.searches:
        index = search.models
        if index is None or "error" not in index:
            continue
        for label, error in zip(index["label"], index["error"], strict=True):
            if _finite(error) is not None:
                found[f"{search.name}/{label}"] = float(error)
    return found


def best_at_half_encoder(run: RunData, full: dict | None) -> BestAtHalf | None:
    """The pruned model at <= 50% of the encoder with the lowest validation error, scored by its test error: from the
    comparisons (every profiled and scored pruned option), else from the extracted Pareto models' index. A model
    whose validation error is not on record is not chosen (choosing on test would flatter the answer)."""
    full_error = None if full is None else full["test_error"]
    validation = _validation_errors(run)
    found: list[BestAtHalf] = []
    for compare in run.compares:
        options = compare.options
        if "encoder_fraction" not in options:
            continue
        pruned = options[(options["kind"] == "prune") & (options["encoder_fraction"] <= HALF_ENCODER)]
        if "chance" in pruned:
            pruned = pruned[~pruned["chance"].astype(bool)]
        for row in pruned.to_dict("records"):
            if row["model"] not in validation:
                continue
            found.append(
                BestAtHalf(
                    row["option"], float(row["encoder_fraction"]), float(row["total_fraction"]),
                    validation[row["model"]], float(row["error"]), relative_drop(full_error, float(row["error"])),
                    f"compare {compare.target}",
                )
            )  # fmt: skip
    if not found:
        for search in run.searches:
            index = search.models
            if index is None or not len(index):
                continue
            frame = index.assign(_enc=encoder_fraction(index), _tot=total_fraction(index))
            frame = frame[(frame["_enc"] <= HALF_ENCODER) & frame["test_error"].notna() & frame["error"].notna()]
            for row in frame.to_dict("records"):
                found.append(
                    BestAtHalf(
                        f"{search.name}/{row['label']} {REFERENCE_VARIANT}", float(row["_enc"]), float(row["_tot"]),
                        float(row["error"]), float(row["test_error"]),
                        relative_drop(full_error, float(row["test_error"])), "export index",
                    )
                )  # fmt: skip
    return min(found, key=lambda b: (b.validation_error, b.encoder_fraction)) if found else None


def embeddings(run: RunData) -> Embeddings | None:
    """The full model's parameters inside and outside the encoder, from a profile row or a search's log."""
    frames = [p.table[~p.table["pruned"].astype(bool)] for p in run.profiles if "pruned" in p.table]
    frames += [s.candidates for s in run.searches]
    for frame in frames:
        if not len(frame) or "encoder_parameters" not in frame or "parameters" not in frame:
            continue
        known = frame[frame["encoder_parameters"].notna() & frame["parameters"].notna()]
        if len(known):
            largest = known.loc[known["parameters"].astype(float).idxmax()]
            total, encoder = int(largest["parameters"]), int(largest["encoder_parameters"])
            outside = total - encoder
            return Embeddings(total, encoder, outside / total, outside * FP32_BYTES / 2**20)
    return None


def _names(value) -> list[str]:
    """A list column of the budgets table as a list (Parquet gives arrays; missing: empty)."""
    if value is None or isinstance(value, float | str):
        return [value] if isinstance(value, str) else []
    return [str(v) for v in value]


def export_command(run_path: Path | str, target: str, row: dict) -> str | None:
    """The ``prunebench export`` line that writes a budget's answer (None where nothing meets the budget).

    The budget is given back as ``compare`` read it: ``50%`` for a relative one (its label starts
    "50% of fp32"), else the value in ms or MiB.
    """
    if not isinstance(row.get("best_option"), str):
        return None
    axis, label = row.get("axis"), str(row.get("budget_label") or "")
    relative = re.match(r"\s*([0-9.eE+-]+%) of fp32", label)
    if relative:
        budget = relative.group(1)
    elif axis == "latency":
        budget = f"{float(row['budget']) * 1e3:g}ms"
    else:
        budget = f"{float(row['budget']) / 2**20:g}MiB"
    out = f"deploy-{target}-{axis}-{budget.replace('%', 'pct').replace('.', '_')}"
    return f"prunebench export {shlex.quote(str(run_path))} --budget {axis}:{budget} --target {target} --out {out}"


@dataclass(frozen=True)
class BudgetAnswer:
    """One budget's answer on one target, as summary.json carries it (``report.compare.answer_budgets``)."""

    budget: str | None
    axis: str | None
    winner: dict | None  # option_facts of what to deploy
    error_interval: list[float | None]  # 95% interval of its test error [low, high]
    change_points: float | None  # its error minus the full fp32 model's, in points of the metric
    lowest_error_option: str | None  # the lowest-error option that fits (the winner, unless a tied one is cheaper)
    tied_with: list[str]  # the other options that fit that the paired test cannot separate from the lowest one
    examples_apart: int | None  # test examples between the winner and the lowest-error option (classification)
    test: str | None  # "exact McNemar", "paired bootstrap", or None: not tested (no per-example predictions)
    p_value: float | None  # McNemar's, winner against the lowest-error option
    difference_interval: list[float | None]  # the bootstrap's 95% interval of the error difference
    alternatives: list[dict]  # option_facts of the other non-dominated options that fit (any kind)
    runner_up: dict | None  # the best option of another kind that fits
    margin: float | None  # the runner-up's error minus the winner's
    max_drop: float | None  # the limit on the drop, in points (None: none given)
    past_max_drop: bool
    within_max_drop: dict | None  # the best option within the limit (when the winner is past it)
    within_max_drop_fits: bool
    closest_if_nothing_fits: dict | None
    within_noise_of: str | None  # the option that might win instead if timed again
    answer: str | None
    export_command: str | None  # the `prunebench export` line that writes the winner (None: nothing fits)

    @classmethod
    def of(cls, compare: CompareData, row: dict, run_path: Path | str = "RUN") -> BudgetAnswer:
        options = compare.options.set_index("option", drop=False)

        def facts(name) -> dict | None:
            return option_facts(options.loc[name]) if isinstance(name, str) and name in options.index else None

        closest = facts(row.get("closest_option"))
        if closest is not None:
            closest["times_the_budget"] = _finite(row.get("closest_over"))
        apart = _finite(row.get("examples_apart"))
        return cls(
            budget=row.get("budget_label"),
            axis=row.get("axis"),
            winner=facts(row.get("best_option")),
            error_interval=[_finite(row.get("best_error_low")), _finite(row.get("best_error_high"))],
            change_points=_finite(row.get("change_points")),
            lowest_error_option=row.get("lowest_error_option"),
            tied_with=_names(row.get("tied_with")),
            examples_apart=None if apart is None else int(apart),
            test=row.get("tie_test") if isinstance(row.get("tie_test"), str) else None,
            p_value=_finite(row.get("tie_p_value")),
            difference_interval=[_finite(row.get("tie_low")), _finite(row.get("tie_high"))],
            alternatives=[f for f in (facts(name) for name in _names(row.get("alternatives"))) if f is not None],
            runner_up=facts(row.get("runner_up_option")),
            margin=_finite(row.get("margin")),
            max_drop=_finite(row.get("max_drop")),
            past_max_drop=bool(row.get("past_max_drop") or False),
            within_max_drop=facts(row.get("within_drop_option")),
            within_max_drop_fits=bool(row.get("within_drop_fits") or False),
            closest_if_nothing_fits=closest,
            within_noise_of=row.get("within_noise_of") if isinstance(row.get("within_noise_of"), str) else None,
            answer=row.get("answer"),
            export_command=export_command(run_path, compare.target, row),
        )


def budget_answers(compare: CompareData, run_path: Path | str = "RUN") -> list[BudgetAnswer]:
    """Every budget's answer of one comparison."""
    return [BudgetAnswer.of(compare, row, run_path) for row in compare.budgets.to_dict("records")]


def target_answers(run: RunData) -> list[dict]:
    """Per compared target: how it was profiled, and each budget's winner and runner-up (another kind)."""
    targets = []
    for compare in run.compares:
        meta = compare.meta
        targets.append(
            {
                "target": compare.target,
                "mode": "estimated" if compare.estimated else "measured",
                "device": meta.get("device"),
                "threads": meta.get("threads"),
                "batch_size": meta.get("batch_size"),
                "seq_len": meta.get("seq_len"),
                "scored_max_length": meta.get("scored_max_length"),
                "machine": meta.get("machine"),
                "tie_definition": meta.get("tie_definition"),
                "budgets": [asdict(answer) for answer in budget_answers(compare, run.path)],
            }
        )
    return targets


def run_summary(run: RunData) -> dict:
    full = full_model(run)
    best = best_at_half_encoder(run, full)
    share = embeddings(run)
    chance = [_finite(c.meta.get("chance_error")) for c in run.compares]
    return {
        "run": str(run.path),
        "label": run.label,
        "task": run.task,
        "model": run.model,
        "metric": run.metric_name,
        "chance_error": next((c for c in chance if c is not None), None),
        "full": full,
        "best_at_half_encoder": None if best is None else asdict(best),
        "embeddings": None if share is None else asdict(share),
        "targets": target_answers(run),
        "missing": list(run.missing),
    }


def json_safe(value):
    """NaN and infinities become null (JSON has neither); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_summary(runs: list[RunData]) -> dict:
    """summary.json: every run's answer under ``runs``; a report of one run also has its keys at the top."""
    per_run = [run_summary(run) for run in runs]
    summary: dict = {"schema_version": SCHEMA_VERSION}
    if len(per_run) == 1:
        summary |= per_run[0]
    summary["runs"] = per_run
    return json_safe(summary)
