"""compare: options, fronts and budget answers against a hand-made profile and score table."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from prunebench.errors import PrunebenchError
from prunebench.profiling.scoring import PerExample
from prunebench.report.compare import Budget, CompareConfig, Evidence, answer_budgets, compare_run, parse_budget
from prunebench.report.paired import paired_test
from prunebench.rundir import RUN_KIND, RUN_VERSION

MIB = 2**20

# model, variant, pruned, quantization, p50 latency (ms), weight MiB, peak RSS growth MiB, test error
HAND_TABLE = [
    ("full", "fp32", False, None, 40.0, 80.0, 20.0, 0.10),
    ("full", "int8", False, "bnb-int8", 42.0, 40.0, 30.0, 0.11),
    ("full", "nf4", False, "bnb-nf4", 30.0, 25.0, 20.0, 0.13),
    ("full", "dynamic-int8", False, "torch-dynamic-int8", 16.0, 30.0, 10.0, 0.12),
    ("s/p00", "fp32", True, None, 10.0, 40.0, 10.0, 0.25),
    ("s/p01", "fp32", True, None, 20.0, 60.0, 15.0, 0.15),
    ("s/p01", "dynamic-int8", True, "torch-dynamic-int8", 9.0, 25.0, 5.0, 0.16),
]


def _write_run(run_dir, table=HAND_TABLE, target="cpu", estimated=False, scores=True, chance_error=None):
    run_dir.mkdir(parents=True, exist_ok=True)
    run = {"kind": RUN_KIND, "version": RUN_VERSION, "status": "finished", "task": {"name": "t", "metric": "accuracy"}}
    (run_dir / "run.json").write_text(json.dumps(run))
    out = run_dir / "profile" / target
    out.mkdir(parents=True)
    rows, score_rows = [], []
    for model, variant, pruned, quantization, ms, weights, growth, error in table:
        for batch, scale in ((1, 1.0), (8, 6.0)):
            rows.append(
                {
                    "model": model,
                    "variant": variant,
                    "pruned": pruned,
                    "quantization": quantization,
                    "relative_parameters": (1.0 if model.endswith("copy") else 0.5) if pruned else 1.0,
                    "weight_bytes": int(weights * MIB),
                    "device": target,
                    "threads": 1,
                    "batch_size": batch,
                    "seq_len": 128,
                    "estimated": estimated,
                    "mode": "estimated" if estimated else "measured",
                    "status": "ok",
                    "latency_p50_s": None if estimated else ms * scale / 1e3,
                    "latency_mean_s": ms * scale / 1e3,
                    "peak_rss_growth_bytes": None if estimated else int(growth * MIB * scale),
                    "torch_peak_allocated_bytes": None,
                    "est_peak_memory_bytes": int((weights + growth * scale) * MIB) if estimated else None,
                }
            )
        score_rows.append(
            {"model": model, "variant": variant, "metric_name": "accuracy", "metric": 1 - error, "error": error}
        )
    # A point that failed must not become an option.
    rows.append({**rows[0], "variant": "bf16", "status": "skipped", "latency_p50_s": None, "latency_mean_s": None})
    pd.DataFrame(rows).to_parquet(out / "profile.parquet")
    if scores:
        frame = pd.DataFrame(score_rows).assign(status="ok", examples=1000)
        if chance_error is not None:
            frame["chance_error"] = chance_error
        frame.to_parquet(out / "scores.parquet")
    return run_dir


def test_options_kinds_and_fronts(tmp_path):
    result = compare_run(_write_run(tmp_path / "run"))
    options = result.options.set_index("option")
    assert result.summary["batch_size"] == 1 and result.summary["seq_len"] == 128
    assert len(options) == len(HAND_TABLE)  # the skipped bf16 point is not an option
    assert options.loc["full fp32", "kind"] == "unpruned"
    assert options.loc["full nf4", "kind"] == "quantize"
    assert options.loc["s/p01 fp32", "kind"] == "prune"
    assert options.loc["s/p01 dynamic-int8", "kind"] == "both"
    # CPU memory = exact weights + peak RSS growth.
    assert options.loc["full int8", "memory_bytes"] == (40 + 30) * MIB
    assert options.loc["full fp32", "latency_s"] == pytest.approx(0.040)
    # error x latency front, by hand: fp32 (0.10, 40), dyn-int8 (0.12, 16), p01 dyn (0.16, 9); p00 (0.25, 10) is
    # dominated by p01 dyn; int8 (0.11, 42) by fp32; nf4 (0.13, 30) by dyn-int8; p01 fp32 (0.15, 20) by dyn-int8.
    assert set(options.index[options["front_latency"]]) == {"full fp32", "full dynamic-int8", "s/p01 dynamic-int8"}
    # error x memory (MiB): fp32 100, int8 70, nf4 45, dyn 40, p00 50, p01 75, p01 dyn 30.
    assert set(options.index[options["front_memory"]]) == {
        "full fp32",
        "full int8",
        "full dynamic-int8",
        "s/p01 dynamic-int8",
    }
    for name in ("options.parquet", "budgets.parquet", "compare.json", "options.csv"):
        assert (tmp_path / "run" / "compare" / "cpu" / name).is_file()


def test_budget_answers_against_hand_made_table(tmp_path):
    result = compare_run(
        _write_run(tmp_path / "run"),
        CompareConfig(latency_budgets=("25%", "50%", "12ms", "100%"), memory_budgets=("50MiB",)),
    )
    budgets = result.budgets.set_index("budget_label")
    # 25% of 40 ms = 10 ms: p00 fp32 (0.25) and p01 dyn-int8 (0.16) fit; no quantize or unpruned option does.
    quarter = budgets.loc["25% of fp32 (10 ms)"]
    assert quarter["best_kind"] == "both" and quarter["best_option"] == "s/p01 dynamic-int8"
    assert quarter["prune_error"] == pytest.approx(0.25) and math.isnan(quarter["quantize_error"])
    assert quarter["margin"] == pytest.approx(0.25 - 0.16) and quarter["runner_up_option"] == "s/p00 fp32"
    # 50% = 20 ms: dynamic int8 of the full model (0.12) beats pruning (p01 fp32, 0.15) by 3 points.
    half = budgets.loc["50% of fp32 (20 ms)"]
    assert half["best_kind"] == "quantize" and half["best_option"] == "full dynamic-int8"
    assert half["margin"] == pytest.approx(0.15 - 0.12)
    assert "deploy full dynamic-int8 (quantized)" in half["answer"]
    # the alternatives: the options that fit and that none beats on error, latency and memory at once (any kind);
    # p01 fp32 (0.15, 20 ms, 75 MiB) is beaten by dynamic int8 (0.12, 16 ms, 40 MiB) on all three
    assert list(half["alternatives"]) == ["s/p01 dynamic-int8"]
    assert "Also on the front: s/p01 dynamic-int8 (pruned + quantized, error 0.160, 9 ms" in half["answer"]
    # An absolute budget: 12 ms admits the same as 10 ms.
    assert budgets.loc["12 ms"]["best_option"] == "s/p01 dynamic-int8"
    # 100%: the full fp32 model itself (0.10) is best.
    assert budgets.loc["100% of fp32 (40 ms)"]["best_kind"] == "unpruned"
    # 50 MiB: nf4 (45, 0.13), dyn-int8 (40, 0.12), p00 (50, 0.25), p01 dyn (30, 0.16) -> dynamic int8.
    memory = budgets.loc["50 MiB"]
    assert memory["axis"] == "memory" and memory["best_option"] == "full dynamic-int8"
    assert memory["prune_option"] == "s/p00 fp32"


def test_a_pruned_model_with_every_parameter_is_not_a_prune_option(tmp_path):
    copy = ("s/full-copy", "fp32", True, None, 40.0, 80.0, 20.0, 0.10)  # an export of the un-pruned config
    result = compare_run(_write_run(tmp_path / "run", table=[*HAND_TABLE, copy]))
    assert "s/full-copy fp32" not in set(result.options["option"]) and len(result.options) == len(HAND_TABLE)
    assert any("s/full-copy" in note and "same model as 'full'" in note for note in result.summary["notes"])


def test_nothing_fits_names_the_closest_option_and_its_miss():
    options = pd.DataFrame(
        [
            {"option": "a", "kind": "prune", "error": 0.2, "latency_s": 0.5, "memory_bytes": 1.0, "estimated": False},
            {"option": "b", "kind": "prune", "error": 0.1, "latency_s": 0.9, "memory_bytes": 1.0, "estimated": False},
        ]
    )
    answers = answer_budgets(options, [Budget("latency", 0.1, "100 ms")])
    assert answers["best_kind"].iloc[0] is None and "nothing fits" in answers["answer"].iloc[0]
    assert answers["closest_option"].iloc[0] == "a" and answers["closest_over"].iloc[0] == pytest.approx(5.0)
    assert "the closest is a (pruned, error 0.200) with latency 500 ms, 5.00x the budget" in answers["answer"].iloc[0]


def test_headline_names_the_winning_kind_when_quantization_or_both_win(tmp_path):
    result = compare_run(_write_run(tmp_path / "run"), CompareConfig(latency_budgets=("25%", "50%"), memory_budgets=()))
    quarter, half = result.budgets["answer"]
    # 25% (10 ms): pruned + quantized p01 (0.16, 9 ms) beats pruned p00 (0.25); nothing quantized-only fits.
    assert quarter.startswith("Within 25% of fp32 (10 ms) latency: deploy s/p01 dynamic-int8 (pruned + quantized)")
    assert "latency 9 ms (0.22x fp32)" in quarter and "+6.0 points vs the full fp32 model" in quarter
    assert pd.isna(result.budgets["quantize_option"].iloc[0])
    # 50% (20 ms): quantizing the full model (0.12, 16 ms) beats pruning (0.15) and both (0.16).
    assert half.startswith("Within 50% of fp32 (20 ms) latency: deploy full dynamic-int8 (quantized): test error 0.120")
    assert "+2.0 points vs the full fp32 model" in half and "latency 16 ms (0.40x fp32)" in half


def test_an_option_at_chance_is_never_the_answer(tmp_path):
    table = [row if row[0] != "s/p00" else (*row[:-1], 0.49) for row in HAND_TABLE]  # p00: 0.49, chance 0.5
    result = compare_run(
        _write_run(tmp_path / "run", table=table, chance_error=0.5),
        CompareConfig(latency_budgets=("25%", "5ms"), memory_budgets=()),
    )
    options = result.options.set_index("option")
    assert options.loc["s/p00 fp32", "chance"] and not options.loc["s/p01 fp32", "chance"]
    assert not options.loc["s/p00 fp32", "front_latency"]
    quarter, tiny = result.budgets.to_dict("records")
    assert quarter["best_option"] == "s/p01 dynamic-int8" and pd.isna(quarter["prune_option"])
    # 5 ms: nothing useful fits; the closest useful option is p01 dynamic-int8 at 9 ms (p00 at 10 ms is chance).
    assert pd.isna(tiny["best_option"]) and tiny["closest_option"] == "s/p01 dynamic-int8"
    assert tiny["closest_over"] == pytest.approx(9 / 5)
    assert any("≈ chance" in note and "s/p00 fp32" in note for note in result.summary["notes"])


def test_estimated_target_is_marked(tmp_path):
    result = compare_run(_write_run(tmp_path / "run", target="a10", estimated=True))
    assert result.options["estimated"].all() and result.summary["estimated"]
    assert result.budgets["answer"].str.contains("ESTIMATED latency and memory, not measured").all()
    assert result.budgets["answer"].str.contains("latency ~").any()
    # Estimates have no p50: the estimated mean is the latency.
    assert result.options.set_index("option").loc["full fp32", "latency_s"] == pytest.approx(0.040)


def test_scores_borrowed_from_another_target_are_noted(tmp_path):
    run = _write_run(tmp_path / "run")
    estimated = _write_run(tmp_path / "other", target="a10", estimated=True, scores=False)
    (run / "profile" / "a10").mkdir()
    (estimated / "profile" / "a10" / "profile.parquet").rename(run / "profile" / "a10" / "profile.parquet")
    result = compare_run(run, CompareConfig(target="a10"))
    assert len(result.options) == len(HAND_TABLE)
    assert any("scored on cpu" in note for note in result.summary["notes"])


@pytest.mark.parametrize(
    "text, axis, expected",
    [("30ms", "latency", 0.03), ("0.2s", "latency", 0.2), ("50%", "latency", 0.02), ("200MiB", "memory", 200 * MIB)],
)
def test_parse_budget(text, axis, expected):
    assert parse_budget(text, axis, reference=0.04).value == pytest.approx(expected)


@pytest.mark.parametrize("text", ["fast", "30 parsecs", "-5ms", "0%"])
def test_bad_budget_is_a_clear_error(text):
    with pytest.raises(PrunebenchError, match="budget"):
        parse_budget(text, "latency", reference=0.04)


def test_bad_input(tmp_path):
    with pytest.raises(PrunebenchError, match="not a prunebench run"):
        compare_run(tmp_path)
    run = _write_run(tmp_path / "run")
    with pytest.raises(PrunebenchError, match="--measure refuses estimates, and there is no A10"):
        compare_run(run, CompareConfig(target="a10", measure=True))  # not profiled there, and no A10 here
    with pytest.raises(PrunebenchError, match="was not profiled"):
        compare_run(run, CompareConfig(batch_size=32))
    unscored = _write_run(tmp_path / "unscored", scores=False)
    with pytest.raises(PrunebenchError, match="--score"):
        compare_run(unscored)


# --- ratios and noise (issue 18) -------------------------------------------------------------------------------


def _options(*rows) -> pd.DataFrame:
    """Options of hand-made (option, kind, error, latency ms, ratio, low, high); the reference is 40 ms."""
    columns = ["option", "kind", "error", "latency_s", "latency_ratio", "latency_ratio_low", "latency_ratio_high"]
    frame = pd.DataFrame([(o, k, e, ms / 1e3, r, lo, hi) for o, k, e, ms, r, lo, hi in rows], columns=columns)
    return frame.assign(memory_bytes=1.0, estimated=False)


REFERENCE = ("full fp32", "unpruned", 0.10, 40.0, 1.0, 1.0, 1.0)
HALF = Budget("latency", 0.020, "50% of fp32 (20 ms)", fraction=0.5)


def test_a_relative_budget_is_judged_on_the_ratio_and_an_absolute_one_on_seconds():
    # p01 ran during a burst: 25 ms, 62% of the reference's 40 ms, but 45% of the fp32 model timed in the same rounds
    options = _options(REFERENCE, ("s/p01 fp32", "prune", 0.15, 25.0, 0.45, 0.44, 0.46))
    answers = answer_budgets(options, [HALF, Budget("latency", 0.020, "20 ms")]).set_index("budget_label")
    assert answers.loc["50% of fp32 (20 ms)", "best_option"] == "s/p01 fp32"
    assert pd.isna(answers.loc["20 ms", "best_option"])  # seconds: 25 ms does not fit 20 ms
    assert not answers.loc["50% of fp32 (20 ms)", "within_noise"]
    # without ratios (an estimate, an older profile) a relative budget falls back on the seconds
    older = options.assign(latency_ratio=math.nan, latency_ratio_low=math.nan, latency_ratio_high=math.nan)
    assert pd.isna(answer_budgets(older, [HALF])["best_option"].iloc[0])


def test_overlapping_intervals_across_the_budget_are_within_noise():
    runner_up = ("s/p02 fp32", "prune", 0.15, 12.0, 0.30, 0.29, 0.31)
    # the winner's interval reaches above 50%: timing again may leave it out, and p02 would win
    doubtful = ("full dynamic-int8", "quantize", 0.12, 19.0, 0.48, 0.46, 0.53)
    row = answer_budgets(_options(REFERENCE, doubtful, runner_up), [HALF]).iloc[0]
    assert row["best_option"] == "full dynamic-int8" and row["within_noise"]
    assert row["within_noise_of"] == "s/p02 fp32"
    assert "full dynamic-int8 or s/p02 fp32, within noise" in row["answer"]
    assert "0.48 [0.46, 0.53]" in row["answer"] and "0.30 [0.29, 0.31]" in row["answer"]
    # the same winner, clearly inside the budget: one answer
    sure = ("full dynamic-int8", "quantize", 0.12, 19.0, 0.48, 0.47, 0.49)
    row = answer_budgets(_options(REFERENCE, sure, runner_up), [HALF]).iloc[0]
    assert not row["within_noise"] and row["within_noise_of"] is None and "within noise" not in row["answer"]
    # a better option left out only by a ratio just above the line is within noise too
    better = ("s/p03 fp32", "prune", 0.11, 21.0, 0.51, 0.49, 0.53)
    row = answer_budgets(_options(REFERENCE, sure, better), [HALF]).iloc[0]
    assert row["best_option"] == "full dynamic-int8" and row["within_noise_of"] == "s/p03 fp32"
    assert row["within_noise"]
    # ... but not when its whole interval lies above the line
    above = ("s/p03 fp32", "prune", 0.11, 22.0, 0.55, 0.53, 0.57)
    assert not answer_budgets(_options(REFERENCE, sure, above), [HALF]).iloc[0]["within_noise"]


# --- ties by a paired test (issue 29) ---------------------------------------------------------------------------

N = 1000


def _classifier(wrong: range | list) -> PerExample:
    """A classifier on N examples of label 1 that gets exactly the examples in ``wrong`` wrong."""
    labels = np.ones(N, dtype=int)
    predictions = labels.copy()
    predictions[list(wrong)] = 0
    return PerExample(predictions, labels, regression=False)


def _costed(*rows) -> pd.DataFrame:
    """Options of (option, kind, error, latency ms, memory MiB); the reference is 'full fp32'."""
    frame = pd.DataFrame(rows, columns=["option", "kind", "error", "latency_s", "memory_bytes"])
    return frame.assign(latency_s=frame["latency_s"] / 1e3, memory_bytes=frame["memory_bytes"] * MIB, estimated=False)


def test_three_examples_apart_are_tied_and_the_cheaper_one_is_the_answer():
    fp32, int8 = _classifier(range(100)), _classifier(range(103))  # 3 more wrong: 3 discordant pairs, p = 0.25
    options = _costed(("full fp32", "unpruned", 0.100, 40.0, 100.0), ("full dynamic-int8", "quantize", 0.103, 16, 40))
    evidence = Evidence({"full fp32": fp32, "full dynamic-int8": int8}, "accuracy")
    row = answer_budgets(options, [Budget("latency", 0.040, "40 ms")], evidence).iloc[0]
    assert row["best_option"] == "full dynamic-int8" and row["lowest_error_option"] == "full fp32"
    assert list(row["tied_with"]) == ["full fp32"] and row["examples_apart"] == 3
    assert row["tie_test"] == "exact McNemar" and row["tie_p_value"] == pytest.approx(0.25)
    assert "Tied with full fp32 (3 examples apart, exact McNemar)" in row["answer"]
    # without the evidence the lowest error wins, as before
    assert answer_budgets(options, [Budget("latency", 0.040, "40 ms")]).iloc[0]["best_option"] == "full fp32"


def test_two_hundred_examples_apart_are_not_tied():
    options = _costed(("full fp32", "unpruned", 0.100, 40.0, 100.0), ("full dynamic-int8", "quantize", 0.300, 16, 40))
    evidence = Evidence(
        {"full fp32": _classifier(range(100)), "full dynamic-int8": _classifier(range(300))}, "accuracy"
    )
    row = answer_budgets(options, [Budget("latency", 0.040, "40 ms")], evidence).iloc[0]
    assert row["best_option"] == "full fp32" and list(row["tied_with"]) == [] and "Tied" not in row["answer"]
    assert row["tie_test"] == "exact McNemar"
    fp32, int8 = evidence.examples["full fp32"], evidence.examples["full dynamic-int8"]
    assert paired_test(fp32, int8, "accuracy").p_value < 1e-9


def test_a_memory_budget_never_takes_a_slower_than_fp32_option_while_a_tied_faster_one_fits():
    # bitsandbytes int8 is the smallest and tied, but 2x slower than fp32; dynamic int8 is tied and faster
    options = _costed(
        ("full fp32", "unpruned", 0.100, 40.0, 100.0),
        ("full int8", "quantize", 0.098, 85.0, 60.0),
        ("full dynamic-int8", "quantize", 0.102, 16.0, 70.0),
    )
    evidence = Evidence(
        {"full fp32": _classifier(range(100)), "full int8": _classifier(range(98)),
         "full dynamic-int8": _classifier(range(102))},
        "accuracy",
    )  # fmt: skip
    row = answer_budgets(options, [Budget("memory", 100 * MIB, "100 MiB")], evidence).iloc[0]
    assert row["lowest_error_option"] == "full int8" and row["best_option"] == "full dynamic-int8"
    assert set(row["tied_with"]) == {"full fp32", "full int8"} and row["examples_apart"] == 4


def test_regression_is_tested_by_a_paired_bootstrap():
    rng = np.random.default_rng(0)
    labels = rng.normal(size=600)
    close = PerExample(labels + rng.normal(size=600), labels, regression=True)
    closer = PerExample(close.predictions + rng.normal(scale=0.05, size=600), labels, regression=True)
    far = PerExample(labels + rng.normal(scale=3, size=600), labels, regression=True)
    tied = paired_test(close, closer, "spearman")
    assert tied.test == "paired bootstrap" and tied.tied and tied.low <= 0 <= tied.high
    apart = paired_test(close, far, "spearman")
    assert not apart.tied and apart.low > 0 and apart.examples_apart is None
    options = _costed(("full fp32", "unpruned", 0.30, 40.0, 100.0), ("s/p01 fp32", "prune", 0.31, 20.0, 60.0))
    evidence = Evidence({"full fp32": close, "s/p01 fp32": closer}, "spearman")
    row = answer_budgets(options, [Budget("latency", 0.040, "40 ms")], evidence).iloc[0]
    assert row["best_option"] == "s/p01 fp32" and row["tie_test"] == "paired bootstrap"
    assert row["tie_low"] <= 0 <= row["tie_high"] and math.isnan(row["examples_apart"])


def test_max_drop_flags_an_answer_past_it_and_names_the_best_within_it():
    options = _costed(
        ("full fp32", "unpruned", 0.100, 40.0, 100.0),
        ("s/p00 fp32", "prune", 0.140, 8.0, 50.0),
        ("full dynamic-int8", "quantize", 0.110, 16.0, 40.0),
    )
    budgets = [Budget("latency", 0.010, "10 ms"), Budget("latency", 0.020, "20 ms")]
    tight, loose = answer_budgets(options, budgets, max_drop=1.5).to_dict("records")
    assert tight["best_option"] == "s/p00 fp32" and tight["past_max_drop"]  # 4 points past the 1.5-point limit
    assert tight["within_drop_option"] == "full dynamic-int8" and not tight["within_drop_fits"]
    assert "nothing within it fits; the cheapest within it is full dynamic-int8" in tight["answer"]
    # 20 ms: dynamic int8 gives up 1.0 point, within the limit: not flagged
    assert loose["best_option"] == "full dynamic-int8" and not loose["past_max_drop"]
    assert "--max-drop" not in loose["answer"]
    # a limit that p00 meets leaves the 10 ms answer unflagged
    assert not answer_budgets(options, budgets, max_drop=5).iloc[0]["past_max_drop"]
    # within the limit and fitting: named as the best within it
    wide = answer_budgets(options, [Budget("latency", 0.040, "40 ms")], max_drop=0.5)
    assert not wide.iloc[0]["past_max_drop"] and wide.iloc[0]["best_option"] == "full fp32"
    # a tied, cheaper answer past the limit: the lowest-error option within it fits and is named
    evidence = Evidence(
        {"full fp32": _classifier(range(100)), "full dynamic-int8": _classifier(range(10, 120))}, "accuracy"
    )  # 10 and 20 discordant examples: p = 0.10, tied; 1.0 point apart
    row = answer_budgets(options, [Budget("latency", 0.040, "40 ms")], evidence, max_drop=0.5).iloc[0]
    assert row["best_option"] == "full dynamic-int8" and row["past_max_drop"] and row["within_drop_fits"]
    assert row["within_drop_option"] == "full fp32" and "the best within it is full fp32" in row["answer"]


@pytest.mark.parametrize("value", [-1, "abc", float("nan")])
def test_a_bad_max_drop_is_one_line(value):
    with pytest.raises(PrunebenchError, match="--max-drop") as caught:
        CompareConfig(max_drop=value)
    assert "\n" not in str(caught.value)


def test_compare_uses_the_stored_per_example_predictions_and_says_when_they_are_missing(tmp_path):
    run = _write_run(tmp_path / "run")
    scores = pd.read_parquet(run / "profile" / "cpu" / "scores.parquet")
    wrong = {row["model"] + " " + row["variant"]: round(row["error"] * N) for row in scores.to_dict("records")}
    pairs = zip(scores["model"], scores["variant"], strict=True)
    encoded = [_classifier(range(wrong[f"{m} {v}"])).encode() for m, v in pairs]
    old = compare_run(run, CompareConfig(latency_budgets=("100%",), memory_budgets=()))
    assert any("ties not tested" in n and "prunebench profile" in n and "--score" in n for n in old.summary["notes"])
    scores["example_predictions"], scores["example_labels"] = zip(*encoded, strict=True)
    scores.assign(examples=N).to_parquet(run / "profile" / "cpu" / "scores.parquet")
    new = compare_run(run, CompareConfig(latency_budgets=("100%",), memory_budgets=()))
    assert not any("ties not tested" in n for n in new.summary["notes"])
    row = new.budgets.iloc[0]
    # fp32 (100 wrong) and bitsandbytes int8 (110) are 10 apart, p = 0.002: not tied; fp32 is the answer at 100%
    assert row["best_option"] == "full fp32" and row["tie_test"] == "exact McNemar"


def test_a_paired_test_of_scores_without_per_example_predictions_says_to_rescore():
    with pytest.raises(PrunebenchError, match=r"re-score with 'prunebench profile runs/x --device cpu --score'") as e:
        paired_test(None, _classifier(range(3)), "accuracy", run="runs/x")
    assert "\n" not in str(e.value)


def test_the_variants_and_models_not_measured_are_listed(tmp_path):
    result = compare_run(_write_run(tmp_path / "run"), CompareConfig(latency_budgets=("100%",), memory_budgets=()))
    missing = result.summary["not_measured"]
    assert "full onnx-fp32: not profiled" in missing and "full fp16: not profiled" in missing
    assert "full bf16: skipped" in missing  # profiled, but the point did not run
    assert not any(note.startswith(("full fp32", "full int8", "full nf4", "full dynamic-int8")) for note in missing)


def test_an_f1_task_is_judged_at_chance_by_accuracy_too():
    """MRPC's shape: 68% of the test pairs are 'equivalent', so always answering it has F1 0.81. A model 10 points
    above it in accuracy is under 5 points above it in F1, inside the band; it is not at chance."""
    from prunebench.report.compare import at_chance
    from prunebench.tasks.metrics import chance_metrics, compute_metrics
    from prunebench.tasks.registry import get_task

    spec = get_task("mrpc")
    labels = np.array([1] * 279 + [0] * 129)
    predictions = labels.copy()
    predictions[:8] = 0  # 8 positives missed
    predictions[279:] = 1  # negatives: 40 found, the rest called positive
    predictions[279:319] = 0
    logits = np.eye(2)[predictions]
    model, chance = compute_metrics(spec, logits, labels), chance_metrics(spec, labels)
    accuracy, majority = PerExample(predictions, labels, regression=False).accuracy_and_majority()
    assert accuracy == pytest.approx(model["accuracy"]) and majority == pytest.approx(chance["accuracy"])
    assert accuracy - majority > 0.05 and chance["error"] - model["error"] < 1 / math.sqrt(408)  # F1 inside the band
    assert at_chance(model["error"], chance["error"], 408)  # on F1 alone
    assert not at_chance(model["error"], chance["error"], 408, accuracy, majority)
    # a model no better than the majority in accuracy either stays at chance
    assert at_chance(chance["error"], chance["error"], 408, majority + 0.01, majority)
    assert PerExample(np.array([0.5, 1.0]), np.array([0.4, 1.2]), regression=True).accuracy_and_majority() is None
