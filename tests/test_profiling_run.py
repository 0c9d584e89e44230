"""``prunebench profile RUN``: the fine-tuned model and the run's exported Pareto models, profiled and scored."""

import shutil

import pandas as pd
import pytest
import torch

from helpers import run_cli
from prunebench.config import TrainConfig
from prunebench.profiling.profiler import to_subjects
from prunebench.search import SearchConfig, export_pareto, run_search
from prunebench.supernet.training import train_supernet

TRAIN = dict(
    model="shape:bert-tiny",
    task="rotten_tomatoes",
    space="small",
    strategy="sandwich",
    epochs=1,
    batch_size=16,
    learning_rate=3e-3,
    max_train_examples=96,
    max_eval_examples=64,
    max_length=32,
)
FAST = ["--device", "cpu", "--batch-sizes", "1", "--seq-lens", "16", "--max-seconds", "0.05"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run with a finished search (nothing exported yet)."""
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("profile-run") / "run"
    train_supernet(TrainConfig(**TRAIN), run_dir, show_progress=False)
    run_search(run_dir, SearchConfig(method="random_search", samples=6, name="rs"), show_progress=False)
    return run_dir


def _error(args, monkeypatch, capsys) -> str:
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _parts(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}


def test_profile_run_full_then_pareto_models_resuming(run, monkeypatch, capsys):
    out = run / "profile" / "cpu"
    code, stdout, err = run_cli(["profile", str(run), *FAST, "--variants", "fp32", "--no-score"], monkeypatch, capsys)
    assert code == 0, err
    assert "no exported Pareto models" in stdout and f"prunebench extract-pareto {run}" in stdout
    frame = pd.read_parquet(out / "profile.parquet")
    assert frame["model"].tolist() == ["full"] and frame["model_source"].iloc[0] == str(run / "checkpoint")
    assert not frame["pruned"].any() and frame["relative_parameters"].tolist() == [1.0]
    assert not (out / "scores.parquet").exists()
    full_part = _parts(out / "profile.parts")

    export = export_pareto(run, show_progress=False)
    labels = [f"rs/{row['label']}" for row in export.rows]
    args = ["profile", str(run), *FAST, "--variants", "fp32,dynamic-int8", "--score-max-examples", "50"]
    code, stdout, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    assert "no exported Pareto models" not in stdout and "test-split scores" in stdout
    frame = pd.read_parquet(out / "profile.parquet")
    assert sorted(set(frame["model"])) == sorted(["full", *labels]) and len(frame) == 2 * (1 + len(labels))
    assert (frame["status"] == "ok").all()
    pruned = frame[frame["model"] != "full"]
    assert pruned["pruned"].all() and (pruned["relative_parameters"] < 1).all()
    assert set(export.index["parameters"]) == set(pruned["parameters"])
    parts = _parts(out / "profile.parts")
    assert all(parts[name] == stamp for name, stamp in full_part.items())  # the first call's point was kept
    scores = pd.read_parquet(out / "scores.parquet")
    assert sorted(zip(scores["model"], scores["variant"], strict=True)) == sorted(
        (m, v) for m in ["full", *labels] for v in ("fp32", "dynamic-int8")
    )
    assert (scores["status"] == "ok").all() and (scores["examples"] == 50).all() and (scores["threads"] == 1).all()

    score_parts = _parts(out / "scores.parts")
    code, stdout, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    assert _parts(out / "profile.parts") == parts and _parts(out / "scores.parts") == score_parts  # nothing redone


def test_estimates_for_a_gpu_go_to_their_own_folder_unscored(run, monkeypatch, capsys):
    args = ["profile", str(run), "--gpu", "t4", "--estimate", "--variants", "fp32,int8", "--batch-sizes", "1"]
    code, stdout, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    frame = pd.read_parquet(run / "profile" / "t4" / "profile.parquet")
    assert (frame["mode"] == "estimated").all() and "full" in set(frame["model"])
    assert not (run / "profile" / "t4" / "scores.parquet").exists() and "not scored" in stdout


def test_python_api_takes_a_run_directory(run):
    subjects = to_subjects([run])
    assert subjects[0].label == "full" and not subjects[0].pruned
    assert all(s.label.startswith("rs/p") and s.pruned for s in subjects[1:])


def test_bad_input_gets_one_line(run, tmp_path, monkeypatch, capsys):
    line = _error(["profile", str(run), *FAST, "--model", "shape:bert-tiny"], monkeypatch, capsys)
    assert "is a run" in line and "drop --model" in line
    line = _error(["profile", "--model", "shape:bert-tiny", *FAST], monkeypatch, capsys)
    assert "give --out" in line and "RUN/profile/TARGET" in line
    line = _error(
        ["profile", "--model", "shape:bert-tiny", *FAST, "--score", "--out", str(tmp_path / "p")], monkeypatch, capsys
    )
    assert "--score" in line and "run directory" in line
    assert "at least 1" in _error(["profile", str(run), *FAST, "--score-max-examples", "0"], monkeypatch, capsys)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "run.json", bare / "run.json")
    assert "has no checkpoint" in _error(["profile", str(bare), *FAST], monkeypatch, capsys)
    assert not (tmp_path / "p").exists() and not (bare / "profile").exists()
