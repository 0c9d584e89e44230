"""``score_variants``: model variants scored on the run's test split, on the same error axis as the Pareto set."""

import json

import pandas as pd
import pytest
import torch

import prunebench.hardware.measure as measure
import prunebench.profiling.scoring as scoring
from helpers import make_tiny_run
from prunebench.errors import PrunebenchError
from prunebench.hardware.variants import VariantSkipped
from prunebench.profiling.scoring import COLUMNS, PerExample, read_scores, score_variants
from prunebench.profiling.subjects import run_subjects
from prunebench.search import SearchConfig


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run whose search scored its Pareto set on the test split, exported into the run."""
    searches = (SearchConfig(method="random_search", samples=6, name="rs"),)
    return make_tiny_run(tmp_path_factory.mktemp("scoring") / "run", searches=searches, export={})


@pytest.fixture(scope="module")
def subjects(run):
    return run_subjects(run)


def test_fp32_scores_of_exported_models_equal_the_searchs_test_metrics(run, subjects, tmp_path):
    index = pd.read_parquet(run / "search" / "rs" / "models" / "index.parquet")
    assert [s.label for s in subjects] == ["full", *(f"rs/{label}" for label in index["label"])]
    frame = score_variants(run, subjects, ["fp32"], tmp_path, show_progress=False)
    assert list(frame.columns) == COLUMNS and (frame["status"] == "ok").all()
    test_rows = json.loads((run / "run.json").read_text())["task"]["examples"]["test"]
    assert (frame["examples"] == test_rows).all() and (frame["split"] == "test").all()
    assert (frame["metric_name"] == "accuracy").all() and (frame["device"] == "cpu").all()
    scored = frame.set_index("model")
    for row in index.itertuples():
        assert scored.loc[f"rs/{row.label}", "metric"] == pytest.approx(row.test_metric, abs=1e-12)
        assert scored.loc[f"rs/{row.label}", "error"] == pytest.approx(row.test_error, abs=1e-12)
    assert (tmp_path / "scores.parquet").is_file() and (tmp_path / "scores.csv").is_file()
    assert pd.read_parquet(tmp_path / "scores.parquet").equals(frame)


def test_quantized_variants_get_a_score_on_the_same_split(run, subjects, tmp_path):
    frame = score_variants(run, subjects[:1], ["fp32", "dynamic-int8", "nf4"], tmp_path, show_progress=False)
    assert frame["variant"].tolist() == ["fp32", "dynamic-int8", "nf4"]
    ok = frame[frame["status"] == "ok"]
    assert {"fp32", "dynamic-int8"} <= set(ok["variant"])
    assert ((ok["error"] - (1 - ok["metric"])).abs() < 1e-12).all() and ok["metric"].between(0, 1).all()
    assert (ok["seconds"] > 0).all() and (ok["build_seconds"] >= 0).all()
    assert all(json.loads(m)["accuracy"] == v for m, v in zip(ok["metrics"], ok["metric"], strict=True))


def test_each_row_keeps_per_example_correctness_beside_the_score(run, subjects, tmp_path):
    frame = score_variants(run, subjects[:1], ["fp32", "dynamic-int8"], tmp_path, show_progress=False)
    fp32, int8 = (PerExample.of(row) for row in frame.to_dict("records"))
    assert not fp32.regression and len(fp32.labels) == frame["examples"].iloc[0] and fp32.same_examples(int8)
    # the per-example correctness is what the error was computed from (accuracy: the mean of it)
    assert 1 - fp32.correct().mean() == pytest.approx(frame["error"].iloc[0], abs=1e-12)
    assert fp32.errors().mean() == pytest.approx(frame["error"].iloc[0], abs=1e-12)
    # the lists stay out of the CSV people open; a row written before they existed reads as None
    assert "example_predictions" not in pd.read_csv(tmp_path / "scores.csv").columns
    assert PerExample.of({**frame.iloc[0].to_dict(), "example_predictions": None}) is None


def test_finished_rows_are_kept_errors_tried_again(run, subjects, tmp_path, monkeypatch):
    full = subjects[:1]
    first = score_variants(run, full, ["fp32"], tmp_path, max_examples=40, show_progress=False)
    assert first["examples"].tolist() == [40]

    def broken(*args, **kwargs):
        raise RuntimeError("kernel exploded\nsecond line")

    monkeypatch.setattr(scoring, "predict", broken)
    second = score_variants(run, full, ["fp32", "dynamic-int8"], tmp_path, max_examples=40, show_progress=False)
    assert second.set_index("variant").loc["fp32", "metric"] == first["metric"].iloc[0]  # kept, not predicted again
    error = second.set_index("variant").loc["dynamic-int8"]
    assert error["status"] == "error" and error["reason"] == "RuntimeError: kernel exploded"
    monkeypatch.undo()
    third = score_variants(run, full, ["fp32", "dynamic-int8"], tmp_path, max_examples=40, show_progress=False)
    assert third["status"].tolist() == ["ok", "ok"] and len(read_scores(tmp_path)) == 2
    other = score_variants(run, full, ["fp32"], tmp_path, max_examples=60, show_progress=False)
    assert sorted(other["examples"].tolist()) == [40, 40, 60]  # another cap is another row


def test_a_variant_that_cannot_be_built_is_skipped_with_its_reason(run, subjects, tmp_path, monkeypatch):
    calls = []

    def refuse(loaded, spec, device):
        calls.append(spec.name)
        raise VariantSkipped(f"{spec.name} cannot run here")

    monkeypatch.setattr(measure, "build_variant", refuse)  # variants are built through measure
    frame = score_variants(run, subjects[:1], ["bf16"], tmp_path, max_examples=10, show_progress=False)
    assert frame[["status", "reason"]].values.tolist() == [["skipped", "bf16 cannot run here"]]
    assert frame["metric"].isna().all()
    score_variants(run, subjects[:1], ["bf16"], tmp_path, max_examples=10, show_progress=False)
    assert calls == ["bf16"]  # a skipped row is final


def test_a_task_without_test_split_writes_nothing(run, subjects, tmp_path, monkeypatch, capsys):
    real = scoring.load_run_task

    def without_test(config):
        data = real(config)
        data.test = data.test.select([])
        return data

    monkeypatch.setattr(scoring, "load_run_task", without_test)
    frame = score_variants(run, subjects[:1], ["fp32"], tmp_path / "s")
    assert frame.empty and not (tmp_path / "s").exists()
    assert "has no test split" in capsys.readouterr().out


def test_bad_settings_are_refused(run, subjects, tmp_path):
    with pytest.raises(PrunebenchError, match="at least 1"):
        score_variants(run, subjects, ["fp32"], tmp_path, max_examples=0)
    with pytest.raises(PrunebenchError, match="unknown variant 'int2'"):
        score_variants(run, subjects, ["int2"], tmp_path)
    with pytest.raises(PrunebenchError, match="not a prunebench run"):
        score_variants(tmp_path, subjects, ["fp32"], tmp_path)
    if not torch.cuda.is_available():
        with pytest.raises(PrunebenchError, match="GPU t4 .* is not on this machine"):
            score_variants(run, subjects, ["fp32"], tmp_path, device="t4")  # a profile name, as the pipeline passes
        with pytest.raises(PrunebenchError, match="needs CUDA"):
            score_variants(run, subjects, ["fp32"], tmp_path, device="cuda")
    assert not list(tmp_path.iterdir())
