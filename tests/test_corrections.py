"""Estimates that learn from measurements (issue 12, item 4): ``--calibrate`` on a GPU stores measured / estimated
per variant and regime with the date and the device; later estimates for that GPU use it, a GPU of the same
architecture borrows it (labelled), and every estimated row says what corrected it or that nothing was measured."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from prunebench.hardware import corrections
from prunebench.hardware.profiles import Target, get_profile
from prunebench.profiling import profile_models
from prunebench.profiling.profiler import write_calibration


@pytest.fixture
def store(tmp_path, monkeypatch):
    folder = tmp_path / "corrections"
    monkeypatch.setenv(corrections.CORRECTIONS_ENV, str(folder))
    return folder


def test_corrections_are_the_median_measured_over_estimated_per_variant_and_regime():
    pairs = [
        ("fp16", "compute", 1.0),
        ("fp16", "compute", 0.0),
        ("fp16", "compute", -0.5),
        ("fp32", "host/launch", 0.25),
    ]
    found = corrections.from_pairs("h100", "NVIDIA H100 80GB HBM3", pairs, date="2026-12-02T16:00:00+00:00")
    assert found.factor("fp16", "compute") == pytest.approx(1.0)  # median of 0.5, 1.0, 2.0
    assert found.factor("fp32", "host/launch") == pytest.approx(0.8)
    assert found.factor("fp32", "compute") == pytest.approx(0.8)  # another regime: the variant's median
    assert found.factor("int8", "compute") is None
    assert found.points == {"fp16": {"compute": 3}, "fp32": {"host/launch": 1}}


def test_saved_record_is_used_by_its_gpu_and_borrowed_by_the_same_architecture_only(store):
    record = corrections.from_pairs("h100", "NVIDIA H100 80GB HBM3", [("fp16", "compute", 1.0)], "2026-12-02")
    assert corrections.save(record) == store / "h100.json"
    own = corrections.load(get_profile("h100"))
    assert own.borrowed_by is None and "measured on NVIDIA H100 80GB HBM3 on 2026-12-02" in own.note("fp16", "compute")
    borrowed = corrections.load(get_profile("h200"))  # Hopper too: compute capability 9.0
    assert borrowed.borrowed_by == "h200"
    assert "borrowed from target h100 (same architecture as h200)" in borrowed.note("fp16", "compute")
    assert corrections.load(get_profile("a100")) is None  # Ampere 8.0 borrows nothing from Hopper
    (store / "a100.json").write_text("{damaged")
    assert corrections.load(get_profile("a100")) is None


def test_calibrating_on_a_gpu_writes_the_record_with_date_and_device(store, tmp_path):
    frame = pd.DataFrame(
        {"mode": ["estimated", "estimated", "measured"], "target": ["a10"] * 3, "variant": ["fp16"] * 3,
         "est_bound": ["compute", "compute", None], "estimate_error": [-0.5, -0.5, None]}
    )  # fmt: skip
    target = Target(get_profile("a10"), "measured", None, "NVIDIA A10", 0)
    record = write_calibration(frame, tmp_path / "calibration.json", target)
    assert record["corrections"]["factors"] == {"fp16": {"compute": 2.0}}
    assert record["corrections"]["device"] == "NVIDIA A10" and record["corrections"]["date"]
    saved = json.loads((store / "a10.json").read_text())
    assert saved["factors"] == {"fp16": {"compute": 2.0}} and record["corrections_file"] == str(store / "a10.json")


def test_later_estimates_use_the_correction_and_say_so(store, tmp_path):
    points = {"batch_sizes": [1], "seq_lens": [16], "variants": ["fp32", "fp16"], "estimate_only": True}
    before = profile_models(["shape:bert-tiny"], tmp_path / "before", target="a10", **points).set_index("variant")
    assert before["est_error_note"].str.contains("error unknown: no measurement of a10").all()
    assert before["est_correction"].isna().all()
    bound = before.loc["fp16", "est_bound"]
    corrections.save(corrections.from_pairs("a10", "NVIDIA A10", [("fp16", bound, 1.0)], "2026-12-02"))
    after = profile_models(["shape:bert-tiny"], tmp_path / "after", target="a10", **points).set_index("variant")
    assert after.loc["fp16", "latency_s"] == pytest.approx(before.loc["fp16", "latency_s"] * 0.5)
    assert after.loc["fp16", "est_correction"] == pytest.approx(0.5) and bool(after.loc["fp16", "estimated"])
    assert "ESTIMATE corrected x0.50" in after.loc["fp16", "est_error_note"]
    assert "estimate error before correction +100%" in after.loc["fp16", "est_error_note"]
    assert after.loc["fp32", "latency_s"] == pytest.approx(before.loc["fp32", "latency_s"])  # nothing measured
    assert (before["est_error_label"] == corrections.NOT_MEASURED_LABEL).all()
    assert after.loc["fp16", "est_error_label"] == f"est., corrected x0.50: measured on NVIDIA A10, fp16 {bound}-bound"
    assert after.loc["fp32", "est_error_label"] == corrections.NOT_MEASURED_LABEL


def test_the_label_beside_an_estimate_falls_back_for_rows_written_before_labels():
    label = "est., corrected x2.00: measured on NVIDIA A10, fp16 compute-bound"
    assert corrections.estimate_label({"est_error_label": label, "est_correction": 2.0}) == label
    assert corrections.estimate_label({"est_error_label": None, "est_correction": 2.0}) == "est., corrected x2.00"
    assert corrections.estimate_label({"est_correction": float("nan")}) == corrections.NOT_MEASURED_LABEL
    assert corrections.estimate_label({}) == corrections.NOT_MEASURED_LABEL
    record = corrections.Corrections("a10", "NVIDIA A10", "2026-12-02", {"fp16": {"compute": 2.0, "memory": 4.0}})
    assert (
        record.label("fp16", "host/launch")
        == "est., corrected x3.00: measured on NVIDIA A10, fp16, median of its measured regimes"
    )
    assert record.label("int8", "compute") is None


def test_search_objectives_estimate_latency_with_the_targets_correction(store):
    """The search's estimated latency objective uses the correction the profiler uses: with a record giving
    factor 2 for fp16 on the A10, every candidate's latency is twice the uncorrected one, labelled so."""
    from prunebench.config import ObjectiveSettings
    from prunebench.models import load_model
    from prunebench.search.objectives import CostObjectives
    from prunebench.supernet import Masks, get_space

    loaded = load_model("shape:bert-tiny")
    settings = ObjectiveSettings(names="error,latency,memory", target="a10", variant="fp16", seq_len=16)
    space = get_space("small", loaded.dims)
    candidates = [Masks.full(loaded.dims), space.masks({"num_layers": 1, "num_heads": 2, "num_units": 100})]
    plain_costs = CostObjectives(loaded, settings)
    plain = [plain_costs(masks) for masks in candidates]
    assert plain_costs.latency_correction is None and plain_costs.latency_estimates.startswith("not corrected")
    assert all(cost.raw["latency_correction"] is None for cost in plain)

    regimes = ("host/launch", "memory", "compute")  # the same factor whatever bound sets an estimate
    corrections.save(corrections.from_pairs("a10", "NVIDIA A10", [("fp16", r, -0.5) for r in regimes], "2026-12-02"))
    corrected_costs = CostObjectives(loaded, settings)
    corrected = [corrected_costs(masks) for masks in candidates]
    for before, after in zip(plain, corrected, strict=True):
        assert after.raw["latency_s"] == pytest.approx(2 * before.raw["latency_s"])
        assert after.raw["latency_correction"] == pytest.approx(2.0) and after.raw["latency_source"] == "estimated"
        assert after.raw["memory_bytes"] == before.raw["memory_bytes"]  # only latency is calibrated
        assert after.normalised["latency"] == pytest.approx(before.normalised["latency"])  # one factor: same ratio
    assert corrected_costs.latency_correction["factors"] == {r: pytest.approx(2.0) for r in regimes}
    assert corrected_costs.latency_estimates.startswith("corrected per regime with the fp16 correction measured on")

    settings_int8 = ObjectiveSettings(names="error,latency", target="a10", variant="int8", seq_len=16)
    assert CostObjectives(loaded, settings_int8).latency_correction is None  # the record corrects fp16 only
