"""prunebench run: the presets are valid, and the whole pipeline runs (and resumes) on a tiny model."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from helpers import run_cli, tiny_pipeline
from prunebench.config import PRESETS, get_preset
from prunebench.errors import PrunebenchError
from prunebench.hardware.variants import get_variant
from prunebench.pipeline import STAGES, run_pipeline
from prunebench.report.compare import parse_budget
from prunebench.rundir import PIPELINE_FILE
from prunebench.search.methods import get_method
from prunebench.supernet.spaces import SPACES
from prunebench.tasks import get_task


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid(name):
    preset = get_preset(name)
    assert preset.preset == name
    get_task(preset.train.task)  # registered task
    assert preset.train.space in SPACES
    for method in (preset.search.method, *preset.search.baselines):
        get_method(method)
    for variant in preset.profile.variants:
        get_variant(variant)
    assert "fp32" in preset.profile.variants  # the reference every relative budget is measured against
    for text in preset.compare.latency_budgets:
        parse_budget(text, "latency", reference=1.0)
    for text in preset.compare.memory_budgets:
        parse_budget(text, "memory", reference=1.0)
    assert set(preset.report_formats) <= {"html", "md"}


def test_quick_preset_is_the_packaged_default():
    quick = get_preset("quick")
    assert (quick.train.model, quick.train.task) == ("minilm", "rotten_tomatoes")
    # The quantized baselines the report compares against.
    assert {"int8", "nf4"} <= set(quick.profile.variants)


def test_unknown_preset_is_a_clear_error(monkeypatch, capsys, tmp_path):
    with pytest.raises(PrunebenchError, match="unknown preset 'fast'"):
        get_preset("fast")
    code, _, err = run_cli(["run", "--preset", "fast", "--out", str(tmp_path / "r")], monkeypatch, capsys)
    assert code == 2 and "quick" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_pipeline_end_to_end_on_a_tiny_model_and_resume(tmp_path):
    torch.set_num_threads(1)
    run_dir = tmp_path / "run"
    result = run_pipeline(tiny_pipeline(), run_dir, show_progress=False)
    record = json.loads((run_dir / PIPELINE_FILE).read_text())
    assert list(record["sessions"][-1]["stages"]) == list(STAGES)
    assert all(stage["status"] == "done" for stage in record["sessions"][-1]["stages"].values())
    # Each stage left its tables in the run directory.
    assert (run_dir / "search" / "random_search-seed0" / "pareto.parquet").is_file()
    assert (run_dir / "search" / "layer_drop-seed0" / "candidates.parquet").is_file()
    exported = pd.read_parquet(run_dir / "search" / "random_search-seed0" / "models" / "index.parquet")
    assert 1 <= len(exported) <= 2
    profile = pd.read_parquet(run_dir / "profile" / "cpu" / "profile.parquet")
    assert {"full", *(f"random_search-seed0/{label}" for label in exported["label"])} == set(profile["model"])
    assert set(profile["variant"]) == {"fp32", "dynamic-int8"} and not profile["estimated"].any()
    options = pd.read_parquet(run_dir / "compare" / "cpu" / "options.parquet")
    assert {"unpruned", "quantize", "prune", "both"} == set(options["kind"])
    budgets = pd.read_parquet(run_dir / "compare" / "cpu" / "budgets.parquet")
    assert len(budgets) == 8 and budgets["answer"].str.len().gt(0).all()
    html = (result.report_dir / "report.html").read_text()
    assert "rotten_tomatoes" in html and (result.report_dir / "report.md").is_file()
    # summary.json: the same answer for scripts, with the keys docs/report.md documents.
    summary = json.loads((result.report_dir / "summary.json").read_text())
    assert summary["full"] == {"variant": "fp32", "test_error": options.set_index("option").loc["full fp32", "error"]}
    best = summary["best_at_half_encoder"]
    assert best is None or {"option", "encoder_fraction", "total_fraction", "test_error"} | {
        "relative_accuracy_drop"
    } <= set(best)
    if best is not None:
        assert best["encoder_fraction"] <= 0.5 and best["total_fraction"] > best["encoder_fraction"]
    (target,) = summary["targets"]
    assert (target["target"], target["mode"]) == ("cpu", "measured") and len(target["budgets"]) == 8
    facts = {"option", "kind", "test_error", "latency_ms", "memory_mib"}
    for answer, row in zip(target["budgets"], budgets.to_dict("records"), strict=True):
        assert answer["budget"] == row["budget_label"] and answer["answer"] == row["answer"]
        winner, runner_up = answer["winner"], answer["runner_up"]
        assert (winner is None) == pd.isna(row["best_option"])
        assert winner is None or (facts <= set(winner) and winner["option"] == row["best_option"])
        assert runner_up is None or (facts <= set(runner_up) and runner_up["kind"] != winner["kind"])
        # the evidence of every answer: what it is tied with, how far apart, by which paired test
        assert isinstance(answer["tied_with"], list) and answer["test"] in (None, "exact McNemar")
        assert winner is None or answer["test"] == "exact McNemar"  # scored with per-example predictions

    # Again: nothing is retrained, re-searched or re-measured; the new session is recorded beside the first.
    searched = (run_dir / "search" / "random_search-seed0" / "log.jsonl").read_text()
    measured = profile["timestamp"].tolist()
    run_pipeline(tiny_pipeline(), run_dir, show_progress=False)
    record = json.loads((run_dir / PIPELINE_FILE).read_text())
    assert len(record["sessions"]) == 2
    assert (run_dir / "search" / "random_search-seed0" / "log.jsonl").read_text() == searched
    assert pd.read_parquet(run_dir / "profile" / "cpu" / "profile.parquet")["timestamp"].tolist() == measured


def test_pipeline_refuses_a_foreign_directory(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(PrunebenchError, match="not empty"):
        run_pipeline(tiny_pipeline(), out, show_progress=False)
    assert (out / "notes.txt").read_text() == "mine" and len(list(out.iterdir())) == 1


def test_the_trim_vocab_option_adds_a_stage_and_the_trimmed_options(tmp_path):
    from dataclasses import replace

    torch.set_num_threads(1)
    run_dir = tmp_path / "run"
    run_pipeline(replace(tiny_pipeline(), trim_vocab=True), run_dir, show_progress=False)
    stages = list(json.loads((run_dir / PIPELINE_FILE).read_text())["sessions"][-1]["stages"])
    assert stages.index("trim-vocab") == stages.index("extract") + 1
    options = pd.read_parquet(run_dir / "compare" / "cpu" / "options.parquet").set_index("option")
    assert options.loc["full+vocab fp32", "kind"] == "trim" and options.loc["full+vocab dynamic-int8", "kind"] == (
        "trim_quantize"
    )
    assert {"trim_prune", "trim_both"} <= set(options["kind"])
    assert options.loc["full+vocab fp32", "weight_bytes"] < options.loc["full fp32", "weight_bytes"]
