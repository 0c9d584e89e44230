"""``export_pareto`` / ``prunebench extract-pareto``: a search's Pareto set as real pruned models in the run."""

import json
import shutil

import pandas as pd
import pytest
import torch

from helpers import TINY_TRAIN, make_tiny_run, run_cli
from helpers import cli_error as _error
from prunebench.config import TrainConfig
from prunebench.errors import PrunebenchError
from prunebench.extract.export import verification_batch
from prunebench.models import load_model
from prunebench.search import SearchConfig, export_pareto
from prunebench.search.extract_pareto import INDEX_COLUMNS, choose_search, select_members
from prunebench.supernet import CostModel, MaskedSuperNetwork, Masks, get_space

TRAIN = TINY_TRAIN | {"learning_rate": 1e-3}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run with one real search (test-scored) and one baseline search."""
    searches = (
        SearchConfig(method="random_search", samples=10, name="rs"),
        SearchConfig(method="layer_drop", samples=3, score_test=False),
    )
    return make_tiny_run(tmp_path_factory.mktemp("export") / "run", TrainConfig(**TRAIN), searches)


def test_export_writes_every_member_as_a_verified_pruned_model(run):
    pareto = pd.read_parquet(run / "search" / "rs" / "pareto.parquet")
    result = export_pareto(run, show_progress=False)  # the only search that is not a baseline
    assert result.search == "rs" and result.written
    assert result.models_dir == run / "search" / "rs" / "models"
    index = pd.read_parquet(result.models_dir / "index.parquet")
    assert list(index.columns) == INDEX_COLUMNS
    assert (result.models_dir / "index.csv").is_file()
    assert len(index) == len(pareto) and index["label"].tolist() == [f"p{i:02d}" for i in range(len(pareto))]
    assert index["encoder_fraction"].is_monotonic_increasing
    by_config = {json.dumps(json.loads(row.config), sort_keys=True): row for row in pareto.itertuples()}
    assert set(index["config"]) == set(by_config)
    loaded = load_model(run / "checkpoint")
    space = get_space("small", loaded.dims)
    batch = verification_batch(loaded)
    supernet = MaskedSuperNetwork(loaded)
    for row in index.itertuples():
        member = by_config[row.config]
        assert (row.error, row.metric, row.test_metric, row.test_error) == (
            member.error,
            member.metric,
            member.test_metric,
            member.test_error,
        )
        assert (
            row.encoder_fraction == pytest.approx(member.encoder_params) and row.path == f"search/rs/models/{row.label}"
        )
        pruned = load_model(run / row.path)
        assert row.parameters == sum(p.numel() for p in pruned.model.parameters())
        meta = json.loads((run / row.path / "prunebench.json").read_text())
        assert meta["provenance"]["config"] == json.loads(row.config)
        with torch.no_grad(), supernet.masked(space.masks(json.loads(row.config))):
            masked = loaded.model(**batch).logits
            diff = (masked - pruned.model(**batch).logits).abs().max().item()
        assert diff < 1e-4 and row.max_abs_diff == pytest.approx(diff, abs=1e-6)
    supernet.remove()
    assert [r["label"] for r in result.rows] == index["label"].tolist()
    assert not [p for p in (run / "search" / "rs").iterdir() if p.name.startswith(".")]  # no staging left


def _hand_made_search(run, tmp_path):
    """A copy of the run with a search whose Pareto set has four members (the tiny search finds fewer)."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("models", "search"))
    folder = copy / "search" / "hand"
    folder.mkdir(parents=True)
    shutil.copy(run / "search" / "rs" / "search.json", folder / "search.json")
    loaded = load_model(copy / "checkpoint")
    space, cost = get_space("small", loaded.dims), CostModel.for_model(loaded)
    configs = [(1, 1, 1), (2, 2, 64), (2, 4, 128), (2, 4, 256)]
    rows = []
    for i, (layers, heads, units) in enumerate(configs):
        config = {"num_layers": layers, "num_heads": heads, "num_units": units}
        rows.append(
            {
                "error": 0.4 - 0.1 * i,
                "encoder_params": cost.encoder_fraction(space.masks(config)),
                "metric": 0.6 + 0.1 * i,
                "config": json.dumps(config),
            }
        )
    pd.DataFrame(rows[::-1]).to_parquet(folder / "pareto.parquet")  # any order in, params order out
    return copy


def test_same_selection_is_left_alone_another_needs_overwrite(run, tmp_path):
    copy = _hand_made_search(run, tmp_path)
    first = export_pareto(copy, show_progress=False)
    assert [r["metric"] for r in first.rows] == pytest.approx([0.6, 0.7, 0.8, 0.9])
    assert all(r["test_metric"] is None and r["test_error"] is None for r in first.rows)  # the search scored none
    weights = copy / first.rows[0]["path"] / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = export_pareto(copy, show_progress=False)
    assert not again.written and again.rows == first.rows and weights.stat().st_mtime_ns == stamp
    pareto_path = copy / "search" / "hand" / "pareto.parquet"
    scored = pd.read_parquet(pareto_path).assign(test_metric=lambda f: f["metric"] - 0.05)
    scored.assign(test_error=lambda f: 1 - f["test_metric"]).to_parquet(pareto_path)  # the search scored them since
    refreshed = export_pareto(copy, show_progress=False)
    assert not refreshed.written and weights.stat().st_mtime_ns == stamp
    assert [r["test_metric"] for r in refreshed.rows] == pytest.approx([0.55, 0.65, 0.75, 0.85])
    assert pd.read_csv(refreshed.models_dir / "index.csv")["test_error"].tolist() == pytest.approx(
        [0.45, 0.35, 0.25, 0.15]
    )
    with pytest.raises(PrunebenchError, match="another selection.*--overwrite"):
        export_pareto(copy, max_models=2, show_progress=False)
    fewer = export_pareto(copy, max_models=3, overwrite=True, verify=False, show_progress=False)
    index = pd.read_parquet(fewer.models_dir / "index.parquet")
    assert index["label"].tolist() == ["p00", "p01", "p02"] and index["max_abs_diff"].isna().all()
    # the smallest, the largest, and the best at no more than half the encoder (p01: 2 of 4 heads, 64 units)
    assert index["config"].tolist() == [first.rows[i]["config"] for i in (0, 1, 3)]
    assert sorted(p.name for p in fewer.models_dir.iterdir()) == ["index.csv", "index.parquet", "p00", "p01", "p02"]
    assert json.loads((fewer.models_dir / "p01" / "prunebench.json").read_text())["provenance"]["config"] == {
        "num_layers": 2,
        "num_heads": 2,
        "num_units": 64,
    }
    assert index["encoder_fraction"].iloc[1] <= 0.5 < first.rows[2]["encoder_fraction"]
    shutil.rmtree(fewer.models_dir / "p02")  # a model lost: the same selection is written again, no --overwrite
    repaired = export_pareto(copy, max_models=3, verify=False, show_progress=False)
    assert repaired.written and (fewer.models_dir / "p02" / "model.safetensors").is_file()
    junk = copy / "search" / "hand" / "models"
    shutil.rmtree(junk)
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    with pytest.raises(PrunebenchError, match="files that are not an export"):
        export_pareto(copy, show_progress=False)


def test_the_unpruned_config_is_not_exported(run, tmp_path):
    """The full config on a Pareto set is the fine-tuned model itself (profiled as 'full'), not a pruned model."""
    copy = _hand_made_search(run, tmp_path)
    folder = copy / "search" / "hand"
    loaded = load_model(copy / "checkpoint")
    dims, cost = loaded.dims, CostModel.for_model(loaded)
    space = get_space("small", dims)
    full = {"num_layers": dims.num_layers, "num_heads": dims.num_heads, "num_units": dims.intermediate_size}
    pareto = pd.read_parquet(folder / "pareto.parquet")
    pareto = pd.concat(
        [pareto, pd.DataFrame([{"error": 0.01, "encoder_params": 1.0, "metric": 0.99, "config": json.dumps(full)}])]
    )
    pareto["parameters"] = [cost.parameters(space.masks(json.loads(c))) for c in pareto["config"]]
    pareto.to_parquet(folder / "pareto.parquet")
    pareto.to_parquet(folder / "candidates.parquet")  # the search evaluated the full config (its initial design)
    index = export_pareto(copy, search="hand", verify=False, show_progress=False).index
    full_count = cost.parameters(Masks.full(dims))
    assert len(index) == (pareto["parameters"] < full_count).sum() >= 2
    assert json.dumps(full, sort_keys=True) not in set(index["config"]) and (index["parameters"] < full_count).all()
    # Nothing but the full model on the front: nothing to export, said in one line.
    pareto[pareto["encoder_params"] == 1.0].to_parquet(folder / "pareto.parquet")
    with pytest.raises(PrunebenchError, match="only the un-pruned model"):
        export_pareto(copy, search="hand", overwrite=True, show_progress=False)


def test_max_models_spreads_over_params_keeping_both_ends():
    pareto = pd.DataFrame(
        {"params": [1.0, 0.1, 0.12, 0.5, 0.9, 0.11], "error": [0.1, 0.6, 0.5, 0.3, 0.2, 0.55], "config": list("abcdef")}
    )
    assert select_members(pareto)["params"].tolist() == [0.1, 0.11, 0.12, 0.5, 0.9, 1.0]
    assert select_members(pareto, 3)["params"].tolist() == [0.1, 0.5, 1.0]
    assert select_members(pareto, 4)["params"].tolist() == [0.1, 0.5, 0.9, 1.0]  # 0.4 -> 0.5; 0.7 -> 0.9 (0.5 taken)
    assert select_members(pareto, 6)["params"].tolist() == [0.1, 0.11, 0.12, 0.5, 0.9, 1.0]
    assert len(select_members(pareto, 5)) == 5 and select_members(pareto, 2)["params"].tolist() == [0.1, 1.0]
    counts = pareto.rename(columns={"params": "parameters"})  # a search without the params objective
    assert select_members(counts, 4)["parameters"].tolist() == [0.1, 0.5, 0.9, 1.0]


def test_max_models_keeps_the_best_member_at_half_the_encoder():
    """The report's headline point, at most half the encoder, is always exported when the front reaches it."""
    sizes = [0.05, 0.3, 0.45, 0.55, 0.8, 1.0]
    pareto = pd.DataFrame(
        {"encoder_fraction": sizes, "error": [0.5, 0.3, 0.2, 0.15, 0.12, 0.1], "config": list("abcdef")}
    )
    # Spread alone would take 0.05, 0.55 (nearest the middle, 0.525) and 1.0.
    assert select_members(pareto, 3)["encoder_fraction"].tolist() == [0.05, 0.45, 1.0]
    assert select_members(pareto, 4)["encoder_fraction"].tolist() == [0.05, 0.45, 0.55, 1.0]


def test_default_search_must_be_unambiguous(run, tmp_path):
    assert choose_search(run, None) == "rs"  # layer_drop-seed0 is a baseline
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoint", "models"))
    shutil.copytree(copy / "search" / "rs", copy / "search" / "rs2")
    with pytest.raises(PrunebenchError, match=r"2 searches that are not baselines \(rs, rs2.*--search"):
        choose_search(copy, None)
    assert choose_search(copy, "rs2") == "rs2"


def test_cli_prints_the_models_and_bad_input_is_one_line(run, tmp_path, monkeypatch, capsys):
    # Under xdist this test may be the module's first on its worker: the first call may write, the second must not.
    code, out, err = run_cli(["extract-pareto", str(run), "--search", "rs"], monkeypatch, capsys)
    assert code == 0, err
    assert "Pareto models of rs" in out and "p00" in out
    code, out, err = run_cli(["extract-pareto", str(run), "--search", "rs"], monkeypatch, capsys)
    assert code == 0, err
    assert "Pareto models of rs" in out and "p00" in out and "already there, unchanged" in out

    assert "does not exist" in _error(["extract-pareto", str(tmp_path / "nope")], monkeypatch, capsys)
    (tmp_path / "plain").mkdir()
    assert "is not a prunebench run" in _error(["extract-pareto", str(tmp_path / "plain")], monkeypatch, capsys)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "run.json", bare / "run.json")
    assert "has no checkpoint" in _error(["extract-pareto", str(bare)], monkeypatch, capsys)

    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("models", "search"))
    assert "holds no search" in _error(["extract-pareto", str(copy)], monkeypatch, capsys)
    unfinished = copy / "search" / "rs"
    unfinished.mkdir(parents=True)
    shutil.copy(run / "search" / "rs" / "search.json", unfinished / "search.json")
    line = _error(["extract-pareto", str(copy), "--search", "rs"], monkeypatch, capsys)
    assert "has not written its Pareto set" in line and "prunebench search" in line
    line = _error(["extract-pareto", str(copy), "--search", "nsga2-seed0"], monkeypatch, capsys)
    assert "no search 'nsga2-seed0'" in line and "rs" in line
    assert "at least 2" in _error(["extract-pareto", str(run), "--max-models", "1"], monkeypatch, capsys)
    assert not (copy / "search" / "rs" / "models").exists()
