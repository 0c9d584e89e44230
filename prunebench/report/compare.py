"""Prune, quantize or both: the options of a run on one hardware target, their fronts, and budget answers.

``compare_run(run_dir, CompareConfig(...))`` joins three tables of a run directory (``rundir.RunDir``):

- the target's profile table: latency and memory of every (model, variant) at one batch
  size and sequence length (measured, or roofline estimates, marked ``estimated``);
- the target's scores: the test-split error of every (model, variant) (the quantized variants
  are scored too, so all options stand on one error axis); where a target has no scores (an
  estimated GPU), those of another target of the run are used and noted;
- the export index of each search's Pareto models: the search's test error, used for an fp32
  pruned model only when the scores lack it.

An option is one (model, variant). Its kind says what was done to the fine-tuned model:
``unpruned`` (the full model in fp32, fp16 or bf16: a cast, not quantization), ``quantize``
(8- or 4-bit, un-pruned), ``prune`` (an extracted sub-network, fp32/fp16/bf16) and ``both``;
``onnx`` (run by ONNX Runtime, fp32 or its int8, un-pruned) and ``prune_onnx``; and each of these
with a trimmed vocabulary (``trim``, ``trim_quantize``, ... ``trim_prune_onnx``).

Latency and memory are the profile row's ``latency_s`` and ``memory_bytes``, taken as they are
(``hardware.store``: ``LATENCY_DEFINITION``, ``MEMORY_DEFINITION``; nothing is recomputed here).

Budgets are absolute (``30ms``, ``0.2s``, ``200MiB``, ``1GB``) or relative to the un-pruned
fp32 model on the same target (``50%``). A relative latency budget is judged on each option's
``latency_ratio``, timed in the same interleaved rounds as the fp32 model (``_fits``); when the
ratio intervals of the winner and the runner-up overlap across the budget's line, the answer names
both, "within noise" (``_within_noise``). For each budget the answer is the option with the
lowest error that fits, the best of each kind, and the margin: the winner's error minus the
best error of any other kind (negative: how much better the winner is).

Outputs in the run's compare folder for the target (``rundir.CompareDir``): the options and budget
tables (Parquet and CSV) and a summary (settings, definitions, notes and what was missing).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from prunebench.config import ONNX_VARIANT_NAMES, CompareConfig, ProfileConfig
from prunebench.errors import PrunebenchError
from prunebench.hardware.corrections import estimate_label
from prunebench.hardware.machine import read_machine_record
from prunebench.hardware.store import LATENCY_DEFINITION, MEMORY_DEFINITION, RATIO_DEFINITION, read_profile
from prunebench.hardware.variants import VARIANTS
from prunebench.profiling.scoring import RESCORE, PerExample
from prunebench.report.paired import PairedResult, error_interval, paired_test
from prunebench.rundir import RunDir, read_run, write_json_atomic
from prunebench.search.pareto import non_dominated

FULL_MODEL = "full"  # the label profiling gives the un-pruned fine-tuned checkpoint
REFERENCE_VARIANT = "fp32"
BASE_KINDS = ("unpruned", "quantize", "prune", "both")  # always named in an answer, "nothing fits" included
KINDS = (
    *BASE_KINDS, "onnx", "prune_onnx",
    "trim", "trim_quantize", "trim_prune", "trim_both", "trim_onnx", "trim_prune_onnx",
)  # fmt: skip


_UNITS = {
    "latency": {"s": 1.0, "ms": 1e-3, "us": 1e-6},
    "memory": {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2**10, "mib": 2**20, "gib": 2**30},
}


@dataclass(frozen=True)
class Budget:
    axis: str  # "latency" or "memory"
    value: float  # seconds or bytes
    label: str
    fraction: float | None = None  # a relative budget: the share of the un-pruned fp32 model (0.5 for "50%")


@dataclass
class Comparison:
    target: str
    out_dir: Path
    options: pd.DataFrame
    budgets: pd.DataFrame
    summary: dict


def parse_budget(text: str, axis: str, reference: float | None) -> Budget:
    """``50%`` (of the un-pruned fp32 reference), ``30ms`` / ``0.2s`` (latency) or ``200MiB`` / ``1GB`` (memory)."""
    units = _UNITS[axis]
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*([a-zA-Z%]*)\s*", text)
    unit = found.group(2).lower() if found else ""
    if not found or (unit != "%" and unit not in units):
        example = "30ms" if axis == "latency" else "200MiB"
        raise PrunebenchError(f"cannot read {axis} budget {text!r}; write e.g. 50% (of the fp32 model) or {example}")
    number = float(found.group(1))
    if number <= 0:
        raise PrunebenchError(f"{axis} budget {text!r} must be positive")
    if unit == "%":
        if reference is None:
            raise PrunebenchError(
                f"{axis} budget {text!r} is relative, but the un-pruned fp32 model was not profiled on this target; "
                "give an absolute budget or profile the full model"
            )
        value = reference * number / 100
        return Budget(axis, value, f"{text.strip()} of fp32 ({_format(axis, value)})", fraction=number / 100)
    value = number * units[unit]
    return Budget(axis, value, _format(axis, value))


def _format(axis: str, value: float) -> str:
    return f"{value * 1e3:.3g} ms" if axis == "latency" else f"{value / 2**20:.4g} MiB"


def _profile_first(run_dir: Path, config: CompareConfig) -> None:
    """``compare --gpu NAME`` on a run not yet profiled there: profile it first (``prunebench profile RUN --gpu NAME``),
    measured where that GPU is here, else estimated and said so in one line (``config.measure``: an error)."""
    from prunebench.profiling import profile_run  # the measurement stack, only when there is something to profile

    profile_run(run_dir, ProfileConfig(target=config.target, measure=config.measure))


def _estimate_error_notes(rows: pd.DataFrame, target: str) -> list[str]:
    """Beside estimated figures: the measured estimate error they were corrected with, or that none was measured."""
    estimated = rows[rows["estimated"].astype(bool)]
    if estimated.empty:
        return []
    said = estimated["est_error_note"].dropna() if "est_error_note" in estimated else pd.Series(dtype=str)
    if said.empty:  # a profile written before corrections existed
        return [f"{target}: ESTIMATES, error unknown: no measurement has calibrated them"]
    return [f"{target}: {note}" for note in sorted(set(said))]


def choose_profiled_target(run_dir: Path, target: str | None) -> str:
    """``target``, or the run's one profiled target; one error line where there is none or a choice to make."""
    targets = RunDir(run_dir).profiled_targets()
    if not targets:
        raise PrunebenchError(f"{run_dir} has no profile; run 'prunebench profile {run_dir} --device cpu' first")
    if target is None:
        if len(targets) > 1:
            raise PrunebenchError(f"{run_dir} is profiled on {', '.join(targets)}; choose one with --gpu or --device")
        return targets[0]
    if target not in targets:
        raise PrunebenchError(
            f"{run_dir} has no profile for {target!r} (profiled: {', '.join(targets)}); "
            f"run 'prunebench profile {run_dir} ...' for it first"
        )
    return target


def _point(profile: pd.DataFrame, batch_size: int | None, seq_len: int | None) -> tuple[int, int]:
    ok = profile[profile["status"] == "ok"]
    if ok.empty:
        raise PrunebenchError("the profile has no successful measurement or estimate to compare")
    batches, lengths = sorted(set(ok["batch_size"])), sorted(set(ok["seq_len"]))
    batch = batch_size if batch_size is not None else (1 if 1 in batches else batches[0])
    length = seq_len if seq_len is not None else lengths[-1]
    if batch not in batches or length not in lengths:
        raise PrunebenchError(
            f"batch {batch} x sequence length {length} was not profiled (batches {batches}, lengths {lengths})"
        )
    return int(batch), int(length)


def _number(value, default: float = math.nan) -> float:
    return default if value is None or pd.isna(value) else float(value)


def _kind(pruned: bool, quantization, variant: str | None = None, vocab_kept=None) -> str:
    quantized = quantization is not None and not pd.isna(quantization)
    if variant in ONNX_VARIANT_NAMES:
        kind = "prune_onnx" if pruned else "onnx"
    else:
        kind = {(False, False): "unpruned", (False, True): "quantize", (True, False): "prune", (True, True): "both"}[
            (bool(pruned), quantized)
        ]
    trimmed = vocab_kept is not None and not pd.isna(vocab_kept)
    return ("trim" if kind == "unpruned" else f"trim_{kind}") if trimmed else kind


def _scores(run_dir: Path, target: str, notes: list[str]) -> pd.DataFrame:
    """Test-split errors per (model, variant): the target's own scores, others' where it has none."""
    frames = []
    run = RunDir(run_dir)
    for name in [target] + [t for t in run.profiled_targets() if t != target]:
        fix = f"score the variants again with 'prunebench profile {run_dir} --score'"
        frame = run.profile_dir(name).read_scores(fix, columns=["model", "variant", "status", "error", "metric"])
        if frame is not None:
            frames.append(frame[frame["status"] == "ok"].assign(scored_on=name))
    if not frames:
        return pd.DataFrame(columns=["model", "variant", "metric_name", "metric", "error", "scored_on"])
    scores = pd.concat(frames, ignore_index=True).drop_duplicates(["model", "variant"], keep="first")
    borrowed = sorted(set(scores.loc[scores["scored_on"] != target, "scored_on"]))
    if borrowed:
        notes.append(
            f"errors of some options were scored on {', '.join(borrowed)}, not on {target}: "
            "quantized numerics differ slightly between devices"
        )
    return scores


def _search_errors(run_dir: Path) -> dict[str, tuple[float, float]]:
    """fp32 test (error, metric) of exported Pareto models, by profile label 'SEARCH/LABEL'."""
    found = {}
    for search, frame in RunDir(run_dir).exports().items():
        for row in frame.itertuples():
            if row.test_error is not None and not pd.isna(row.test_error):
                found[f"{search}/{row.label}"] = (float(row.test_error), float(row.test_metric))
    return found


def chance_of(scores: pd.DataFrame) -> tuple[float, float]:
    """The run's chance error on the test split and its example count (NaN: scored before either was kept)."""
    if "chance_error" not in scores or not scores["chance_error"].notna().any():
        return math.nan, math.nan
    known = scores[scores["chance_error"].notna()]
    return float(known["chance_error"].iloc[0]), _number(known["examples"].iloc[0]) if "examples" in known else math.nan


def _chance_tolerance(examples):
    """The test split's noise allowed around the chance error: 1/sqrt(n), two standard errors of an accuracy near
    0.5 on n examples (the widest); 0 where n is not known."""
    return np.nan_to_num(1 / np.sqrt(np.clip(np.asarray(examples, dtype=float), 1, None)), nan=0.0)


def _no_better_than_chance(error, chance_error, examples, accuracy, chance_accuracy) -> np.ndarray:
    """The chance rule, element by element (``at_chance`` says it in words). NaN: not known."""
    error, chance_error = np.asarray(error, dtype=float), np.asarray(chance_error, dtype=float)
    tolerance = _chance_tolerance(examples)
    learned = np.asarray(accuracy, dtype=float) > np.asarray(chance_accuracy, dtype=float) + tolerance  # NaN: False
    return (error >= chance_error - tolerance) & ~learned & ~np.isnan(chance_error)


def at_chance(
    error: float, chance_error: float, examples: float, accuracy: float = math.nan, chance_accuracy: float = math.nan
) -> bool:
    """True where a model is no better than the majority class (the mean, for regression): its error within
    ``_chance_tolerance`` of the chance error, or worse, and (classification, where known) its accuracy too. False
    where the chance error is not known.

    Accuracy is asked as well because an F1 task's metric hides a model that learned: on MRPC, always answering
    "equivalent" (68% of the test pairs) has F1 0.812, so a fine-tune 10 points above it in accuracy is only 4
    points above it in F1, inside the band."""
    return bool(_no_better_than_chance(error, chance_error, examples, accuracy, chance_accuracy))


def accuracy_and_chance(per_example: PerExample | None) -> tuple[float, float]:
    """A classifier's test accuracy and the majority class's (NaN: regression, or scored before examples were
    kept): ``at_chance``'s last two arguments."""
    found = per_example.accuracy_and_majority() if per_example is not None else None
    return found or (math.nan, math.nan)


def _at_chance(frame: pd.DataFrame) -> pd.Series:
    """``at_chance`` of every row."""
    nan = pd.Series(math.nan, index=frame.index)
    found = _no_better_than_chance(frame["error"], frame["chance_error"], frame["test_examples"],
                                   frame.get("accuracy", nan), frame.get("chance_accuracy", nan))  # fmt: skip
    return pd.Series(found, index=frame.index)


def build_options(run_dir: Path, target: str, batch_size: int | None, seq_len: int | None) -> tuple[pd.DataFrame, dict]:
    """One row per (model, variant) profiled without error at the chosen point, with its error and kind."""
    fix = f"profile it again with 'prunebench profile {run_dir}' for {target} (finished points are kept)"
    profile = read_profile(RunDir(run_dir).profile_dir(target).path, fix)
    batch, length = _point(profile, batch_size, seq_len)
    notes: list[str] = []
    scores = _scores(run_dir, target, notes)
    search_errors = _search_errors(run_dir)
    rows = profile[(profile["status"] == "ok") & (profile["batch_size"] == batch) & (profile["seq_len"] == length)]
    # An estimate and a measurement of the same point (--calibrate): the measurement stands.
    rows = rows.sort_values("estimated").drop_duplicates(["model", "variant"], keep="first")
    # An exported Pareto member with every parameter is the full model again (exports before the
    # full config was left out of them); it would pose as a "pruned" option.
    full_size = rows.loc[~rows["pruned"].astype(bool), "relative_parameters"].max()
    copies = rows["pruned"].astype(bool) & (rows["relative_parameters"] >= (full_size if pd.notna(full_size) else 1.0))
    if copies.any():
        names = sorted(set(rows.loc[copies, "model"]))
        notes.append(f"left out {', '.join(names)}: the un-pruned configuration, the same model as 'full'")
        rows = rows[~copies]
    notes += _estimate_error_notes(rows, target)
    run = read_run(run_dir)
    task = run.get("task", {})
    options, unscored, evidence = [], [], {}
    chance_error, examples = chance_of(scores)  # the split's: the same for every option
    for row in rows.to_dict("records"):
        score = scores[(scores["model"] == row["model"]) & (scores["variant"] == row["variant"])]
        per_example = PerExample.of(score.iloc[0]) if len(score) else None
        if per_example is not None:
            evidence[f"{row['model']} {row['variant']}"] = per_example
        own_examples = _number(score["examples"].iloc[0]) if len(score) and "examples" in score else examples
        if len(score):
            error, metric, source = float(score["error"].iloc[0]), float(score["metric"].iloc[0]), "test"
        elif row["variant"] == REFERENCE_VARIANT and row["model"] in search_errors:
            (error, metric), source = search_errors[row["model"]], "test (search)"
        else:
            unscored.append(f"{row['model']} {row['variant']}")
            continue
        interval = error_interval(per_example, error, own_examples, task.get("metric"))
        options.append(
            {
                "target": target,
                "model": row["model"],
                "variant": row["variant"],
                "option": f"{row['model']} {row['variant']}",
                "kind": _kind(row["pruned"], row["quantization"], row["variant"], row.get("vocab_kept")),
                "vocab_kept": row.get("vocab_kept"),
                "pruned": bool(row["pruned"]),
                "quantization": row["quantization"],
                "encoder_fraction": _number(row.get("encoder_fraction")),
                "total_fraction": _number(row["relative_parameters"]),
                "weight_bytes": row["weight_bytes"],
                "metric_name": task.get("metric"),
                "metric": metric,
                "error": error,
                "error_source": source,
                **dict(zip(("error_low", "error_high"), interval, strict=True)),
                "chance_error": chance_error,
                "test_examples": examples,
                **dict(zip(("accuracy", "chance_accuracy"), accuracy_and_chance(per_example), strict=True)),
                "latency_s": _number(row["latency_s"]),
                **_ratio_columns(row),
                "memory_bytes": _number(row["memory_bytes"]),
                "estimated": bool(row["estimated"]),
                "est_error_label": estimate_label(row) if row["estimated"] else None,  # beside its latency
                "device": row["device"],
                "threads": row["threads"],
                "batch_size": batch,
                "seq_len": length,
            }
        )
    if unscored:
        notes.append(f"left out, no test-split error: {', '.join(unscored)} (run 'prunebench profile RUN ... --score')")
    frame = pd.DataFrame(options)
    if frame.empty:
        raise PrunebenchError(
            f"no option of {run_dir} on {target} has both a profile and a test-split error; "
            f"run 'prunebench profile {run_dir} --score' for this target"
        )
    frame["chance"] = _at_chance(frame)
    for axis, column in AXIS_COLUMNS.items():
        reference = full_model_value(frame, column)
        plain = frame[column] / reference if reference else pd.Series(math.nan, index=frame.index)
        # a latency ratio timed in the same rounds as the reference (interleaved) stands; others are plain quotients
        frame[f"{axis}_ratio"] = frame[f"{axis}_ratio"].fillna(plain) if f"{axis}_ratio" in frame else plain
    for axis, column in AXIS_COLUMNS.items():
        valid = frame[column].notna() & ~frame["chance"]
        front = np.zeros(len(frame), dtype=bool)
        points = frame.loc[valid, ["error", column]].to_numpy(dtype=float)
        front[np.flatnonzero(valid)[non_dominated(points)]] = True
        frame[f"front_{axis}"] = front
    frame = frame.sort_values(["kind", "latency_s"], key=lambda s: s.map(KINDS.index) if s.name == "kind" else s)
    settings = {"batch_size": batch, "seq_len": length, "notes": notes}
    settings["scored_max_length"] = (run.get("train") or {}).get("max_length")
    if settings["scored_max_length"] is not None and int(settings["scored_max_length"]) != length:
        notes.append(
            f"errors were scored on the test split at up to {settings['scored_max_length']} tokens (the run's "
            f"max_length); latency and memory were taken at {length} tokens"
        )
    tested = frame[frame["error_source"] == "test"]
    lacking = sorted(o for o in tested["option"] if o not in evidence)
    settings["evidence"] = Evidence(evidence, task.get("metric"))
    if lacking:
        notes.append(
            f"ties not tested for {', '.join(lacking)}: scored before per-example predictions were kept; "
            f"re-score with '{RESCORE.format(run=run_dir)}'"
        )
    return frame.reset_index(drop=True), settings


def full_fp32(options: pd.DataFrame) -> pd.Series | None:
    """The un-pruned fp32 model's option: the reference of every ratio and relative budget."""
    if "option" not in options:
        return None
    full = options[options["option"] == f"{FULL_MODEL} {REFERENCE_VARIANT}"]
    return full.iloc[0] if len(full) else None


def full_model_value(options: pd.DataFrame, column: str) -> float | None:
    """The unpruned fp32 model's ``column`` (what a budget in % of the full model is a share of); None: unknown."""
    full = full_fp32(options)
    return None if full is None or pd.isna(full[column]) else float(full[column])


KIND_NAMES = {
    "unpruned": "unpruned", "quantize": "quantized", "prune": "pruned", "both": "pruned + quantized",
    "onnx": "ONNX Runtime", "prune_onnx": "pruned + ONNX Runtime",
    "trim": "trimmed vocabulary", "trim_quantize": "trimmed vocabulary + quantized",
    "trim_prune": "pruned + trimmed vocabulary", "trim_both": "pruned + trimmed vocabulary + quantized",
    "trim_onnx": "trimmed vocabulary + ONNX Runtime", "trim_prune_onnx": "pruned + trimmed vocabulary + ONNX Runtime",
}  # fmt: skip
AXIS_COLUMNS = {"latency": "latency_s", "memory": "memory_bytes"}
TIE_DEFINITION = (
    "two options are tied when a paired test on the same test examples cannot separate them at 95%: exact McNemar "
    "on per-example correctness for accuracy, a paired bootstrap of the metric otherwise (report.paired); among "
    "the options tied with the lowest-error one that fit a budget, the answer is the cheapest on the budget's axis, "
    "then on the other (for a memory budget, never one slower than fp32 while a tied one that fits is not)"
)


def option_facts(row: pd.Series | dict | None) -> dict | None:
    """The numbers an answer gives for one option (summary.json's winner / runner_up)."""
    if row is None:
        return None
    return {
        "option": row["option"],
        "kind": row["kind"],
        "test_error": _number(row["error"]),
        "latency_ms": _number(row.get("latency_s")) * 1e3,
        "memory_mib": _number(row.get("memory_bytes")) / 2**20,
        "latency_ratio": _number(row.get("latency_ratio")),
        "memory_ratio": _number(row.get("memory_ratio")),
        "estimated": bool(row.get("estimated")),
    }


@dataclass(frozen=True)
class Evidence:
    """What the answers are decided with beyond the options table: each option's per-example predictions on the
    test split (``profiling.scoring.PerExample``; an option scored before they were kept is absent) and the task's
    metric, which picks the paired test (``report.paired``)."""

    examples: Mapping[str, PerExample] = field(default_factory=dict)
    metric: str | None = None


class _Ties:
    """Paired tests between options, each pair run once per comparison (a bootstrap takes a while)."""

    def __init__(self, evidence: Evidence):
        self.evidence, self.done = evidence, {}

    def test(self, a: str, b: str) -> PairedResult | None:
        """``b`` against ``a``; None when either lacks per-example predictions or they saw other examples."""
        if (a, b) not in self.done:
            left, right = self.evidence.examples.get(a), self.evidence.examples.get(b)
            usable = left is not None and right is not None and left.same_examples(right)
            self.done[(a, b)] = paired_test(left, right, self.evidence.metric) if usable else None
        return self.done[(a, b)]


def _other_axis(axis: str) -> str:
    return "memory" if axis == "latency" else "latency"


def _cost_order(frame: pd.DataFrame, budget: Budget) -> pd.DataFrame:
    """Cheapest first on the budget's axis, then on the other axis, then the lowest error."""
    first, second = AXIS_COLUMNS[budget.axis], AXIS_COLUMNS[_other_axis(budget.axis)]
    return frame.sort_values([first, second, "error"], na_position="last")


def _choose(fits: pd.DataFrame, budget: Budget, ties: _Ties, reference: pd.Series | None) -> dict:
    """The answer among the options that fit: the lowest error, unless options the paired test cannot tell from it
    (tied) are cheaper; then the cheapest of those on the budget's axis, then on the other axis. For a memory budget,
    an option slower than the fp32 model is never chosen while a tied option that fits is not slower.

    Returns the winner, the lowest-error option, the other tied options, the winner's test against the lowest one
    (None when it is the lowest) and the test's name (None: nothing could be tested, no per-example predictions)."""
    column = AXIS_COLUMNS[budget.axis]
    lowest = fits.sort_values(["error", column]).iloc[0]
    others = fits[fits["option"] != lowest["option"]]
    results = {name: ties.test(lowest["option"], name) for name in others["option"]}
    is_tied = [results[name] is not None and results[name].tied for name in others["option"]]
    tied = others[np.array(is_tied, dtype=bool)]
    candidates = pd.concat([fits.loc[[lowest.name]], tied])
    if budget.axis == "memory" and reference is not None:
        not_slower = candidates["latency_s"].astype(float) <= float(reference["latency_s"])
        if not_slower.any():
            candidates = candidates[not_slower]
    winner = _cost_order(candidates, budget).iloc[0]
    tested = [r for r in results.values() if r is not None]
    return {
        "winner": winner,
        "lowest": lowest,
        "tied": [name for name in [lowest["option"], *tied["option"]] if name != winner["option"]],
        "result": results.get(winner["option"]),
        "test": tested[0].test if tested else None,
    }


def _alternatives(fits: pd.DataFrame, winner: pd.Series) -> list[str]:
    """The options that fit and that no other option that fits beats on error, latency and memory at once."""
    known = fits[fits["latency_s"].notna() & fits["memory_bytes"].notna()]
    if known.empty:
        return []
    points = known[["error", "latency_s", "memory_bytes"]].to_numpy(dtype=float)
    front = known.iloc[non_dominated(points)]
    return [o for o in front.sort_values(["latency_s", "memory_bytes"])["option"] if o != winner["option"]]


def _drop_points(row: pd.Series, reference: pd.Series | None) -> float:
    """How many points of the metric ``row`` gives up against the full fp32 model (negative: it gains)."""
    return math.nan if reference is None else (float(row["error"]) - float(reference["error"])) * 100


def _within_drop(useful: pd.DataFrame, fits: pd.Series, budget: Budget, reference, max_drop: float) -> tuple:
    """The best option within ``max_drop`` points: the cheapest on the budget's axis among those that fit, else
    (nothing within the limit fits) the cheapest of all, which then needs more than the budget."""
    within = useful[(useful["error"] - float(reference["error"])) * 100 <= max_drop]
    fitting = within[fits.reindex(within.index, fill_value=False)]
    pool = fitting if len(fitting) else within
    if pool.empty:
        return None, False
    return _cost_order(pool, budget).iloc[0], bool(len(fitting))


def answer_budgets(
    options: pd.DataFrame,
    budgets: Sequence[Budget],
    evidence: Evidence | None = None,
    max_drop: float | None = None,
) -> pd.DataFrame:
    """For each budget: what to deploy, the options tied with it, the alternatives, and the best of each kind.

    The answer is the lowest-error option that fits, or, among the options a paired test on the test examples
    cannot separate from it (``evidence``; without it, no ties are tested), the cheapest (``_choose``).
    Options marked ``chance`` (no better than the majority class) are never an answer. ``tied_with`` names the
    other tied options that fit, ``examples_apart`` how many test examples separate the answer from the lowest-
    error option (0: the same), ``tie_test`` the test used (None: not tested). ``alternatives``: the options that
    fit and that no other beats on error, latency and memory at once. ``margin`` is the runner-up's error minus the
    answer's, the runner-up being the best option of any other kind that fits. With ``max_drop`` (points of the
    metric against the full fp32 model) an answer past it is flagged (``past_max_drop``) and ``within_drop_option``
    names the cheapest option within it. When nothing fits, ``closest_*`` name the useful option nearest the budget
    and ``closest_over`` how many times the budget it needs.
    """
    evidence = evidence or Evidence()
    ties = _Ties(evidence)
    useful = options[~options["chance"].astype(bool)] if "chance" in options else options
    reference = full_fp32(options)
    rows = []
    for budget in budgets:
        column = AXIS_COLUMNS[budget.axis]
        fitting = _fits(useful, budget)
        fits = useful[fitting]
        row: dict = {"axis": budget.axis, "budget": budget.value, "budget_label": budget.label}
        row["estimated"] = bool(fits["estimated"].any()) if len(fits) else bool(options["estimated"].any())
        best_by_kind = {}
        for kind in KINDS:
            candidates = fits[fits["kind"] == kind]
            best = candidates.sort_values(["error", column]).iloc[0] if len(candidates) else None
            if best is not None:
                best_by_kind[kind] = best
            row[f"{kind}_option"] = None if best is None else best["option"]
            row[f"{kind}_error"] = math.nan if best is None else float(best["error"])
        chosen = _choose(fits, budget, ties, reference) if len(fits) else None
        winner = None if chosen is None else chosen["winner"]
        row["best_kind"] = None if winner is None else winner["kind"]
        row["best_option"] = None if winner is None else winner["option"]
        row["best_error"] = math.nan if winner is None else float(winner["error"])
        row["best_error_low"] = math.nan if winner is None else _number(winner.get("error_low"))
        row["best_error_high"] = math.nan if winner is None else _number(winner.get("error_high"))
        row["change_points"] = math.nan if winner is None else _drop_points(winner, reference)
        row["lowest_error_option"] = None if chosen is None else chosen["lowest"]["option"]
        row["tied_with"] = [] if chosen is None else chosen["tied"]
        result = None if chosen is None else chosen["result"]
        if result is not None:
            row["examples_apart"] = _number(result.examples_apart)  # NaN for regression: no count of examples
        else:  # the winner is the lowest-error option itself: 0 apart, when a test could run at all
            row["examples_apart"] = 0.0 if chosen is not None and chosen["test"] else math.nan
        row["tie_test"] = None if chosen is None else chosen["test"]
        row["tie_p_value"] = math.nan if result is None else _number(result.p_value)
        row["tie_difference"] = math.nan if result is None else float(result.difference)
        row["tie_low"] = math.nan if result is None else _number(result.low)
        row["tie_high"] = math.nan if result is None else _number(result.high)
        row["alternatives"] = [] if winner is None else _alternatives(fits, winner)
        others = [b for k, b in best_by_kind.items() if winner is not None and k != winner["kind"]]
        runner_up = min(others, key=lambda b: (float(b["error"]), float(b[column]))) if others else None
        row["runner_up_option"] = None if runner_up is None else runner_up["option"]
        row["margin"] = math.nan if runner_up is None else float(runner_up["error"]) - float(winner["error"])
        closest = None
        if winner is None:
            over = useful[useful[column].notna() & ~fitting]
            closest = over.sort_values([column, "error"]).iloc[0] if len(over) else None
        row["closest_option"] = None if closest is None else closest["option"]
        row["closest_over"] = math.nan if closest is None else float(closest[column]) / budget.value
        row["max_drop"] = math.nan if max_drop is None else float(max_drop)
        past = winner is not None and max_drop is not None and _drop_points(winner, reference) > max_drop
        row["past_max_drop"] = bool(past)
        within, within_fits = (None, False)
        if past:
            within, within_fits = _within_drop(useful, fitting, budget, reference, max_drop)
        row["within_drop_option"] = None if within is None else within["option"]
        row["within_drop_fits"] = bool(within_fits)
        row["answer"] = answer_sentence(budget, winner, reference, closest, options, row, useful)
        noise = {"within_noise": False, "within_noise_of": None}
        row.update(noise if winner is None else _noise_fields(useful, budget, winner, row["answer"]))
        rows.append(row)
    return pd.DataFrame(rows)


def _ratio_text(row: pd.Series, axis: str) -> str:
    ratio = _number(row.get(f"{axis}_ratio"))
    return "" if math.isnan(ratio) else f" ({ratio:.2f}x fp32)"


def _value_text(row: pd.Series, axis: str) -> str:
    value = _number(row.get(AXIS_COLUMNS[axis]))
    if math.isnan(value):
        return f"{axis} not profiled"
    shown = f"{value * 1e3:.3g} ms" if axis == "latency" else f"{value / 2**20:.1f} MiB"
    return f"{axis} {'~' if row.get('estimated') else ''}{shown}{_ratio_text(row, axis)}"


def _points(difference: float) -> str:
    return f"{abs(difference) * 100:.1f} points"


def _change_text(points: float) -> str:
    if math.isnan(points):
        return ""
    return "the same as the full fp32 model" if abs(points) < 0.05 else f"{points:+.1f} points vs the full fp32 model"


def _short(row: pd.Series) -> str:
    """One option in a few words: name, kind, error and its costs."""
    return (
        f"{row['option']} ({KIND_NAMES[row['kind']]}, error {float(row['error']):.3f}, "
        f"{_value_text(row, 'latency').removeprefix('latency ')}, {_value_text(row, 'memory').removeprefix('memory ')})"
    )


def _tie_text(row: dict, lowest: str | None) -> str:
    """ "tied with X (k examples apart, exact McNemar)": the lowest-error option first, and how many more are tied."""
    tied = list(row["tied_with"])
    if not tied:
        return ""
    first = lowest if lowest in tied else tied[0]
    apart = row.get("examples_apart")
    if first == lowest and _number(apart) == _number(apart):
        said = f"{int(apart)} examples apart"
    elif first == lowest and not math.isnan(_number(row.get("tie_low"))):
        said = f"error difference {_points(row['tie_difference'])}, 95% [{row['tie_low'] * 100:+.1f}, "
        said += f"{row['tie_high'] * 100:+.1f}]"
    else:
        said = "within the test's noise"
    more = f", and {len(tied) - 1} more" if len(tied) > 1 else ""
    text = f" Tied with {first} ({said}, {row['tie_test']}){more}: the cheapest tied option is given."
    return text


def answer_sentence(
    budget: Budget,
    winner: pd.Series | None,
    reference: pd.Series | None,
    closest: pd.Series | None,
    options: pd.DataFrame,
    row: dict,
    useful: pd.DataFrame | None = None,
) -> str:
    """The budget's answer as a person says it: what to deploy, its numbers, what it is tied with, the limit on the
    accuracy drop, and the other options on the front."""
    within = f"Within {budget.label} {budget.axis}"
    estimated = bool(options["estimated"].any())
    if estimated:
        within += " (ESTIMATED latency and memory, not measured)"
    if winner is None:
        text = f"{within}: nothing fits"
        chance = options[options["chance"].astype(bool)] if "chance" in options else options.iloc[:0]
        if len(chance[chance[AXIS_COLUMNS[budget.axis]] <= budget.value]):
            text += " that is better than chance (only options ≈ chance do)"
        if closest is not None:
            needed = float(closest[AXIS_COLUMNS[budget.axis]]) / budget.value
            text += (
                f"; the closest is {closest['option']} ({KIND_NAMES[closest['kind']]}, error {closest['error']:.3f}) "
                f"with {_value_text(closest, budget.axis)}, {needed:.2f}x the budget"
            )
        return text + "."
    if reference is not None and reference["option"] == winner["option"]:
        text = f"{within}: keep the full model as it is ({winner['option']}): test error {winner['error']:.3f}"
    else:
        text = f"{within}: deploy {winner['option']} ({KIND_NAMES[winner['kind']]}): test error {winner['error']:.3f}"
    low, high = _number(row.get("best_error_low")), _number(row.get("best_error_high"))
    if not math.isnan(low):
        text += f" [{low:.3f}, {high:.3f}]"
    change = _change_text(_number(row.get("change_points")))
    if change and reference is not None and reference["option"] != winner["option"]:
        text += f", {change}"
    text += f"; {_value_text(winner, 'latency')}, {_value_text(winner, 'memory')}."
    text += _tie_text(row, row.get("lowest_error_option"))
    if row.get("past_max_drop"):
        limit = f" Past the {row['max_drop']:g}-point limit on the drop (--max-drop)"
        within_name = row.get("within_drop_option")
        if within_name is None:
            text += f"{limit}, and no option is within it."
        else:
            pool = useful if useful is not None else options
            found = pool[pool["option"] == within_name].iloc[0]
            if row.get("within_drop_fits"):
                text += f"{limit}: the best within it is {_short(found)}."
            else:
                text += f"{limit}: nothing within it fits; the cheapest within it is {_short(found)}."
    alternatives = list(row.get("alternatives") or [])
    if alternatives:
        frame = options.set_index("option", drop=False)
        shown = [_short(frame.loc[name]) for name in alternatives[:2]]
        more = f"; and {len(alternatives) - 2} more (summary.json)" if len(alternatives) > 2 else ""
        text += " Also on the front: " + "; ".join(shown) + more + "."
    return text


def _ratio_columns(row: dict) -> dict:
    """A profile row's ratio to the fp32 reference timed in the same rounds, and whether its timing was stable."""
    stable = row.get("stable")
    return {
        "latency_ratio": _number(row.get("latency_ratio")),
        "latency_ratio_low": _number(row.get("latency_ratio_low")),
        "latency_ratio_high": _number(row.get("latency_ratio_high")),
        "stable": None if stable is None or pd.isna(stable) else bool(stable),
    }


def _has_ratios(options: pd.DataFrame, budget: Budget) -> bool:
    return budget.axis == "latency" and budget.fraction is not None and "latency_ratio" in options.columns


def _fits(options: pd.DataFrame, budget: Budget) -> pd.Series:
    """Which options fit ``budget``. A latency budget in % of fp32 is judged on the ratio to fp32 timed in the same
    rounds (``hardware.store.RATIO_DEFINITION``), which load elsewhere moves far less than the seconds; an option
    without a ratio (an estimate, a profile from before ratios) and an absolute budget are judged on the seconds."""
    column = AXIS_COLUMNS[budget.axis]
    by_value = options[column] <= budget.value
    if not _has_ratios(options, budget):
        return by_value
    ratio = options["latency_ratio"]
    return (ratio <= budget.fraction).where(ratio.notna(), by_value).astype(bool)


def _could_fit(options: pd.DataFrame, budget: Budget) -> pd.Series:
    """Options that fit, or would within the noise: the low end of their ratio's interval is within the budget."""
    if not _has_ratios(options, budget):
        return _fits(options, budget)
    low = options["latency_ratio_low"]
    return (low <= budget.fraction).where(low.notna(), _fits(options, budget)).astype(bool)


def _runner_up(options: pd.DataFrame, budget: Budget, winner: pd.Series) -> pd.Series | None:
    """The answer if the noise fell the other way: the best other option (lowest error) that could fit."""
    others = options[_could_fit(options, budget) & (options["option"] != winner["option"])]
    if others.empty:
        return None
    return others.sort_values(["error", "latency_ratio"]).iloc[0]


def _within_noise(winner: pd.Series, runner_up: pd.Series, budget: Budget) -> bool:
    """Whether the winner and the runner-up are within noise of each other for ``budget``: their ratio intervals
    overlap across the budget's line, so that timing again could change the answer. That is the case when the
    runner-up could fit and either the winner might not fit (its interval reaches above the line) or the runner-up,
    with an error no worse, is left out only by its ratio lying just above the line."""
    line = budget.fraction
    if line is None or pd.isna(runner_up["latency_ratio_low"]) or runner_up["latency_ratio_low"] > line:
        return False
    winner_may_not_fit = not pd.isna(winner["latency_ratio_high"]) and winner["latency_ratio_high"] > line
    runner_up_left_out = runner_up["latency_ratio"] > line and runner_up["error"] <= winner["error"]
    return bool(winner_may_not_fit or runner_up_left_out)


def _noise_fields(options: pd.DataFrame, budget: Budget, winner: pd.Series, answer: str) -> dict:
    """The budget row's ``within_noise`` and ``within_noise_of`` (the option that might win instead, of any kind);
    when within noise, the answer says so."""
    runner_up = _runner_up(options, budget, winner) if _has_ratios(options, budget) else None
    if runner_up is None or not _within_noise(winner, runner_up, budget):
        return {"within_noise": False, "within_noise_of": None}
    answer = f"{answer} {_noise_text(winner, runner_up)}."
    return {"within_noise": True, "within_noise_of": runner_up["option"], "answer": answer}


def _interval(option: pd.Series) -> str:
    return f"{option['latency_ratio']:.2f} [{option['latency_ratio_low']:.2f}, {option['latency_ratio_high']:.2f}]"


def _noise_text(winner: pd.Series, runner_up: pd.Series) -> str:
    return (
        f"Timing noise: {winner['option']} or {runner_up['option']}, within noise (latency / fp32 "
        f"{_interval(winner)} and {_interval(runner_up)}, 95% intervals)"
    )


def _not_measured(run_dir: Path, target: str, options: pd.DataFrame) -> list[str]:
    """The variants of the full model and the exported models that are no option here, and why."""
    fix = f"profile it again with 'prunebench profile {run_dir}' for {target}"
    profile = read_profile(RunDir(run_dir).profile_dir(target).path, fix)
    have = set(options["option"])
    found = []
    full = profile[profile["model"] == FULL_MODEL]
    for name in VARIANTS:
        if f"{FULL_MODEL} {name}" in have:
            continue
        rows = full[full["variant"] == name]
        if rows.empty:
            found.append(f"{FULL_MODEL} {name}: not profiled")
        elif not (rows["status"] == "ok").any():
            reason = rows["reason"].dropna()
            why = f" ({reason.iloc[0]})" if len(reason) else ""
            found.append(f"{FULL_MODEL} {name}: {rows['status'].iloc[0]}{why}")
        else:
            found.append(f"{FULL_MODEL} {name}: no test-split score")
    profiled = set(profile["model"])
    for search, frame in RunDir(run_dir).exports().items():
        absent = [f"{search}/{label}" for label in frame["label"] if f"{search}/{label}" not in profiled]
        if absent:
            found.append(f"exported models not profiled: {', '.join(absent)}")
    return found


def _machine(run_dir: Path, target: str) -> dict | None:
    """The machine the target's latest profile call ran on (``hardware.machine.machine_identity``); None when it
    was estimated, or profiled before the machine was recorded."""
    sessions = read_machine_record(RunDir(run_dir).profile_dir(target).machine)
    return next((s["machine"] for s in reversed(sessions) if isinstance(s.get("machine"), dict)), None)


def compare_run(run_dir: Path, config: CompareConfig = CompareConfig()) -> Comparison:
    """Options, fronts and budget answers of ``run_dir`` on one target, written to RUN/compare/TARGET/."""
    run_dir = Path(run_dir)
    read_run(run_dir)  # a clear error if this is not a run directory
    if config.target not in (None, "cpu") and config.target not in RunDir(run_dir).profiled_targets():
        _profile_first(run_dir, config)
    target = choose_profiled_target(run_dir, config.target)
    options, settings = build_options(run_dir, target, config.batch_size, config.seq_len)
    latency, memory = full_model_value(options, "latency_s"), full_model_value(options, "memory_bytes")
    budgets = [parse_budget(text, "latency", latency) for text in config.latency_budgets] + [
        parse_budget(text, "memory", memory) for text in config.memory_budgets
    ]
    answers = answer_budgets(options, budgets, settings["evidence"], config.max_drop)
    answers.insert(0, "target", target)
    missing = [kind for kind in BASE_KINDS if kind not in set(options["kind"])]
    chance = sorted(options.loc[options["chance"], "option"])
    if chance:
        settings["notes"].append(
            f"≈ chance (no better than the majority class or mean, error {options['chance_error'].iloc[0]:.3f}), "
            f"never an answer: {', '.join(chance)}"
        )
    summary = {
        "target": target,
        "device": str(options["device"].iloc[0]),
        "batch_size": settings["batch_size"],
        "seq_len": settings["seq_len"],
        "scored_max_length": settings["scored_max_length"],
        "threads": int(options["threads"].iloc[0]),
        "machine": _machine(run_dir, target),
        "estimated": bool(options["estimated"].any()),
        "latency_definition": LATENCY_DEFINITION,
        "memory_definition": MEMORY_DEFINITION,
        "ratio_definition": RATIO_DEFINITION,
        "error_definition": "1 - the task's metric on the test split",
        "tie_definition": TIE_DEFINITION,
        "chance_error": _number(options["chance_error"].iloc[0]) if len(options) else math.nan,
        "config": asdict(config),
        "notes": settings["notes"],
        "missing": [f"no {kind} option was profiled and scored" for kind in missing],
        "not_measured": _not_measured(run_dir, target, options),
    }
    folder = RunDir(run_dir).compare_dir(target)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.write_table("options", options)
    folder.write_table("budgets", answers)
    write_json_atomic(folder.summary, json.loads(json.dumps(summary, default=str)))
    return Comparison(target, folder.path, options, answers, summary)
