"""Standard NAS through syne-tune's local backend (tiny model, a few trials, two workers)."""

import json

import pandas as pd
import pytest

from helpers import run_cli, tiny_train
from prunebench.errors import PrunebenchError
from prunebench.models import load_model
from prunebench.search.nas import NasConfig, run_nas
from prunebench.supernet import get_space

TRAIN = tiny_train(strategy="standard", epochs=2, learning_rate=1e-3, max_eval_examples=48)


def test_moasha_fine_tunes_each_sub_network_and_writes_the_search_tables(tmp_path):
    result = run_nas(NasConfig(TRAIN, method="moasha", samples=4, workers=2), tmp_path / "nas", show_progress=False)
    space = get_space("small", load_model("shape:bert-tiny").dims)
    lines = [json.loads(line) for line in (result.search_dir / "log.jsonl").read_text().splitlines()]
    assert len(lines) == len(result.candidates) == 4
    assert sorted(line["details"]["trial_id"] for line in lines) == [0, 1, 2, 3]
    for line in lines:
        assert space.validate(line["config"]) == line["config"]
        assert 1 <= line["details"]["epochs"] <= 2 and line["method"] == "moasha"
        assert 0 <= line["objectives"]["error"] <= 1 and 0 < line["objectives"]["encoder_params"] <= 1
        assert 0 <= line["details"]["test_metric"] <= 1
    for table in ("candidates", "pareto", "hypervolume"):
        assert (result.search_dir / f"{table}.parquet").is_file()
    pareto = pd.read_parquet(result.search_dir / "pareto.parquet")
    assert len(pareto) >= 1 and {"error", "encoder_params", "config", "test_metric"} <= set(pareto.columns)
    run = json.loads((tmp_path / "nas" / "run.json").read_text())
    assert run["stage"] == "nas" and run["status"] == "finished"
    assert (tmp_path / "nas" / "syne-tune" / "tuner.log").is_file()


def test_nas_bad_input(tmp_path, monkeypatch, capsys):
    with pytest.raises(PrunebenchError, match="unknown NAS method 'ehvi'"):
        NasConfig(TRAIN, method="ehvi")
    with pytest.raises(PrunebenchError, match="--samples must be at least 1"):
        NasConfig(TRAIN, samples=0)
    with pytest.raises(PrunebenchError, match="'latency' needs the weight-sharing search"):
        NasConfig(TRAIN, objectives="error,latency")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    code, _, err = run_cli(["nas", "--out", str(tmp_path / "full"), "--model", "shape:bert-tiny"], monkeypatch, capsys)
    assert code == 2 and "is not empty" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    code, _, err = run_cli(["nas", "--out", str(tmp_path / "x"), "--method", "bohb"], monkeypatch, capsys)
    assert code == 2 and "unknown NAS method 'bohb'" in err
