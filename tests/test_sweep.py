"""prunebench sweep: a grid of tiny pipelines through a local Ray, aggregated into one report; resumed, it re-runs
nothing; a failing cell is recorded and the others finish; bad grids and addresses are one line before anything."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_cli
from prunebench.errors import PrunebenchError
from prunebench.hardware.profiles import load_profiles
from prunebench.rundir import SweepDir
from prunebench.sweep.cluster import unmet_needs
from prunebench.sweep.grid import RAY_ACCELERATOR_TYPES, load_grid

# Two strategies x two seeds of bert-tiny, each a whole pipeline in seconds: 64 training examples, a 6-sample
# random search and layer dropping, two Pareto models, fp32 profiled at batch 1 for 0.1 s a point.
TINY_GRID = """
preset = "quick"
max_models = 2
[axes]
model = {models}
strategy = ["standard", "one_shot"]
seed = [0, 1]
method = "random_search"
[train]
epochs = 1
max_train_examples = 64
max_eval_examples = 32
max_length = 32
[search]
samples = 6
baselines = ["layer_drop"]
[search.evaluation]
workers = 1
[profile]
variants = ["fp32"]
batch_sizes = [1]
seq_lens = [32]
score_max_examples = 32
[profile.timing]
max_seconds = 0.1
"""


def _grid(folder: Path, models: list[str], name: str = "grid.toml") -> Path:
    path = folder / name
    path.write_text(TINY_GRID.format(models=json.dumps(models)))
    return path


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_grid_is_every_combination_of_its_axes(tmp_path):
    grid = load_grid(_grid(tmp_path, ["shape:bert-tiny"]))
    assert len(grid.cells) == 4 and len({c.name for c in grid.cells}) == 4
    combos = {(c.config.train.strategy, c.config.train.seed, c.config.search.seed) for c in grid.cells}
    assert combos == {("standard", 0, 0), ("standard", 1, 1), ("full", 0, 0), ("full", 1, 1)}  # one_shot = full
    for cell in grid.cells:
        assert cell.config.train.epochs == 1 and cell.config.search.samples == 6 and cell.config.max_models == 2
        assert cell.config.profile.timing.max_seconds == 0.1 and cell.config.search.baselines == ("layer_drop",)
        assert (cell.cpus, cell.gpus, cell.accelerator_type) == (1.0, 0.0, None)
        assert cell.name.endswith(f"-seed{cell.axes['seed']}") and cell.axes["strategy"] in cell.name


def test_a_gpu_target_asks_ray_for_that_gpu(tmp_path):
    path = tmp_path / "gpu.toml"
    path.write_text('[axes]\nmodel = "shape:bert-tiny"\ntarget = ["cpu", "t4"]\n[resources]\ncpus = 2\n')
    cpu, t4 = load_grid(path).cells
    assert (cpu.gpus, cpu.accelerator_type, cpu.config.train.device) == (0.0, None, "cpu")
    assert (t4.gpus, t4.accelerator_type, t4.config.train.device, t4.cpus) == (1.0, "T4", "cuda", 2.0)
    assert t4.config.search.evaluation.device == "cuda" and t4.config.profile.target == "t4"
    # every GPU profile has Ray's label, so a profiling cell can be sent to its node
    assert {n for n, p in load_profiles().items() if p.kind == "gpu"} == set(RAY_ACCELERATOR_TYPES)
    assert unmet_needs({"CPU": 4.0}, 2, 1, "T4") == "needs a GPU (T4); the cluster has none"
    assert "has A10" in unmet_needs({"CPU": 4.0, "GPU": 1.0, "accelerator_type:A10": 1.0}, 2, 1, "T4")
    assert unmet_needs({"CPU": 4.0, "GPU": 1.0, "accelerator_type:T4": 1.0}, 2, 1, "T4") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[axes]\nstrategy = ["full", "fast"]\n', ["unknown strategy 'fast'", "sandwich", "one_shot"]),
        ("[axes]\nlearning_rate = [1e-4]\n", ["unknown axis 'learning_rate'", "model, task, strategy"]),
        ('[axes]\ntask = ["sst2", "glue9"]\n', ["unknown task 'glue9'", "rotten_tomatoes"]),
        ('[axes]\nmethod = "bayes"\n', ["unknown search method 'bayes'", "morea", "layer_drop"]),
        ('[axes]\ntarget = "k80"\n', ["unknown GPU 'k80'", "t4", "or cpu"]),
        ("[axes]\nseed = [0, -1]\n", ["seed takes whole numbers >= 0"]),
        ("[train]\nepoch = 1\n", ["unknown setting 'epoch' in [train]", "epochs"]),
        ('[train]\nstrategy = "full"\n', ["set by the grid's axes", "[axes] strategy"]),
        ("[search.evaluation]\nworkerz = 2\n", ["unknown setting 'workerz' in [search.evaluation]", "workers"]),
        ("[train]\nepochs = 0\n", ["--epochs must be at least 1"]),
        ("[axis]\nseed = 1\n", ["unknown key 'axis'", "axes"]),
        ("[axes\nseed = 1\n", ["is not valid TOML"]),
    ],
)
def test_a_bad_grid_is_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys, text, expected):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    code, out, err = run_cli(["sweep", str(path), "--out", str(tmp_path / "sweep")], monkeypatch, capsys)
    line = _one_line(err)
    assert code == 2 and str(path) in line and all(part in line for part in expected), line
    assert not (tmp_path / "sweep").exists() and out == ""


def test_grid_checks_load_neither_torch_nor_ray(tmp_path):
    """A wrong grid, a missing one and a silent address are refused before torch or Ray is imported."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[axes]\nspace = "huge"\n')
    port = _free_port()
    script = (
        "import sys\nfrom prunebench.cli import main\n"
        "for args in (['BAD'], ['MISSING'], ['GOOD', '--address', 'ADDRESS']):\n"
        "    sys.argv = ['prunebench', 'sweep', *args, '--out', 'OUT']\n"
        "    try:\n        main()\n    except SystemExit as e:\n        assert e.code == 2, e.code\n"
        "print('heavy:', sorted(m for m in ('torch', 'ray', 'transformers') if m in sys.modules))\n"
    )
    good = _grid(tmp_path, ["shape:bert-tiny"])
    for key, value in (("BAD", bad), ("MISSING", tmp_path / "none.toml"), ("GOOD", good), ("OUT", tmp_path / "o")):
        script = script.replace(f"'{key}'", repr(str(value)))
    script = script.replace("'ADDRESS'", repr(f"127.0.0.1:{port}"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "heavy: []" in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 3, done.stderr
    assert "unknown search space 'huge'" in lines[0] and "layer, small, medium, large" in lines[0]
    assert "does not exist" in lines[1]
    assert f"no Ray cluster answers at --address 127.0.0.1:{port}" in lines[2]
    assert not (tmp_path / "o").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sweep_without_ray_names_the_extra(tmp_path, monkeypatch, capsys):
    import prunebench.sweep.cluster as cluster

    real = cluster.importlib.util.find_spec
    monkeypatch.setattr(cluster.importlib.util, "find_spec", lambda name: None if name == "ray" else real(name))
    code, _, err = run_cli(["sweep", str(_grid(tmp_path, ["shape:bert-tiny"])), "--out", str(tmp_path / "s")],
                           monkeypatch, capsys)  # fmt: skip
    assert code == 2 and "pip install 'prunebench[sweep]'" in _one_line(err)
    assert not (tmp_path / "s").exists()


def test_sweep_refuses_a_folder_of_other_files(tmp_path, monkeypatch, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = run_cli(["sweep", str(_grid(tmp_path, ["shape:bert-tiny"])), "--out", str(out)], monkeypatch, capsys)
    assert code == 2 and "is not a sweep folder" in _one_line(err)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_tiny_sweep_on_local_ray_fails_one_model_reports_and_resumes_nothing(tmp_path, monkeypatch, capsys):
    """Eight cells on a local Ray with two workers: the four of bert-tiny finish, the four of a folder that holds
    no model fail with their error, and the exit status says so; the report has every cell. Without the broken
    model, the sweep runs again and re-runs nothing."""
    broken = tmp_path / "not<b>a*model"  # exists, so the grid is valid; it fails when the cell loads it
    broken.mkdir()
    out = tmp_path / "sweep"
    grid = _grid(tmp_path, ["shape:bert-tiny", str(broken)])
    code, stdout, err = run_cli(["sweep", str(grid), "--out", str(out), "--workers", "2"], monkeypatch, capsys)
    assert code == 1, stdout + err
    record = SweepDir(out).read()
    by_status: dict[str, list[dict]] = {}
    for cell in record["cells"]:
        by_status.setdefault(cell["status"], []).append(cell)
    assert {s: len(c) for s, c in by_status.items()} == {"done": 4, "failed": 4}
    assert all(c["axes"]["model"] == "shape:bert-tiny" and c["error"] is None for c in by_status["done"])
    for cell in by_status["failed"]:
        assert cell["axes"]["model"] == str(broken) and cell["error"] and str(broken) in cell["error"]
        assert (out / cell["log"]).is_file()  # the traceback is in the cell's log
    assert "8 cells: 8 ran, 0 finished before, 4 failed" in stdout and stdout.count("failed: ") >= 4
    session = record["sessions"][-1]
    assert (session["ran"], session["skipped"], session["failed"], session["workers"]) == (8, 0, 4, 2)

    # One report of every cell: the table, the errors (escaped), and summary.json with the same numbers.
    report = SweepDir(out).report_dir
    html, summary = report.html.read_text(), json.loads((report.path / "summary.json").read_text())
    assert summary["counts"] == {"done": 4, "failed": 4, "running": 0, "waiting": 0}
    done = [c for c in summary["cells"] if c["status"] == "done"]
    assert len(done) == 4 and {(c["axes"]["strategy"], c["axes"]["seed"]) for c in done} == {
        ("standard", 0), ("standard", 1), ("full", 0), ("full", 1)}  # fmt: skip
    for cell in done:
        assert 0 < cell["hypervolume"] <= 1 and 0 <= cell["error_at_half_encoder"] <= 1
        assert "layer_drop" in cell["baselines"] and cell["best_at_half_encoder"]["encoder_fraction"] <= 0.5
        assert cell["name"] in html and f"{cell['hypervolume']:.3f}" in html
    assert "not&lt;b&gt;a*model" in html and "not<b>a" not in html
    groups = {(g["model"], g["strategy"]): g for g in summary["groups"]}
    assert groups["shape:bert-tiny", "full"]["done"] == 2 and groups["shape:bert-tiny", "full"]["hypervolume"]["n"] == 2
    assert groups[str(broken), "full"]["done"] == 0
    assert "| bert-tiny-rotten_tomatoes-full" in (report.path / "report.md").read_text()

    # Again, without the broken model: every cell is finished, so nothing runs (Ray is not even started).
    pipelines = {c["name"]: (out / c["run_dir"] / "pipeline.json").read_text() for c in by_status["done"]}
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("*") if p.is_file()}
    grid = _grid(tmp_path, ["shape:bert-tiny"], "grid-fixed.toml")
    code, stdout, err = run_cli(["sweep", str(grid), "--out", str(out)], monkeypatch, capsys)
    assert code == 0, stdout + err
    assert "4 cells: 0 ran, 4 finished before, 0 failed" in stdout and "local Ray" not in stdout
    assert {c["name"]: (out / c["run_dir"] / "pipeline.json").read_text() for c in by_status["done"]} == pipelines
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # not a file of any cell was written
    record = SweepDir(out).read()
    assert [c["status"] for c in record["cells"]] == ["done"] * 4 and record["sessions"][-1]["ran"] == 0

    # 'prunebench report SWEEP' finds the sweep and writes its report (the default: SWEEP/report).
    code, stdout, err = run_cli(["report", str(out)], monkeypatch, capsys)
    assert code == 0 and f"wrote {report.html}" in stdout, err
    assert json.loads((report.path / "summary.json").read_text())["counts"]["done"] == 4


def test_report_of_a_damaged_sweep_record_is_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.json").write_text("{")
    code, _, err = run_cli(["report", str(out)], monkeypatch, capsys)
    assert code == 2 and "sweep.json is damaged" in _one_line(err)
    from prunebench.cli import report

    with pytest.raises(PrunebenchError, match="give --out"):  # run directories still need --out
        report([tmp_path], None)


def test_data_dir_is_relative_to_the_grid_and_reaches_the_glue_tasks_only(tmp_path):
    from prunebench.sweep.grid import DATA_DIR_TASKS
    from prunebench.tasks import list_tasks

    assert set(DATA_DIR_TASKS) == {spec.name for spec in list_tasks() if spec.glue is not None}
    (tmp_path / "data" / "glue").mkdir(parents=True)
    (tmp_path / "grids").mkdir()
    path = tmp_path / "grids" / "g.toml"
    path.write_text('[axes]\ntask = ["rotten_tomatoes", "SST-2"]\n[train]\ndata_dir = "../data/glue"\n')
    rotten, sst2 = load_grid(path).cells
    assert rotten.config.train.data_dir is None and sst2.config.train.task == "sst2"
    assert sst2.config.train.data_dir == str((tmp_path / "data" / "glue").resolve())
    path.write_text('[train]\ndata_dir = "../nowhere"\n')
    with pytest.raises(PrunebenchError, match="data_dir .*nowhere is not a folder"):
        load_grid(path)


def test_a_cell_the_cluster_cannot_serve_is_recorded_not_waited_for(tmp_path, monkeypatch, capsys):
    """A T4 profiling cell on a local Ray without a GPU: failed at once with the reason, never queued forever."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the cell would run")
    path = tmp_path / "t4.toml"
    path.write_text('[axes]\nmodel = "shape:bert-tiny"\ntarget = "t4"\n[search.evaluation]\nworkers = 1\n')
    out = tmp_path / "sweep"
    code, stdout, err = run_cli(["sweep", str(path), "--out", str(out), "--workers", "1"], monkeypatch, capsys)
    assert code == 1, stdout + err
    (cell,) = SweepDir(out).read()["cells"]
    assert cell["status"] == "failed" and cell["error"] == "not run: needs a GPU (T4); the cluster has none"
    assert cell["resources"] == {"cpus": 1.0, "gpus": 1.0, "accelerator_type": "T4"}
    assert not (out / cell["run_dir"]).exists()  # nothing ran


def test_the_findings_grid_is_valid(tmp_path):
    """benchmarks/findings.toml: 4 tasks x 6 strategies x 2 seeds of MiniLM, both baselines in every cell."""
    committed = Path(__file__).resolve().parent.parent / "benchmarks" / "findings.toml"
    # The grid reads ../shared/data/glue beside the checkout, which a user's clone has not: the same grid,
    # placed where its relative data folder exists (the test's GLUE samples)
    path = tmp_path / "checkout" / "benchmarks" / "findings.toml"
    path.parent.mkdir(parents=True)
    path.write_text(committed.read_text())
    shutil.copytree(Path(__file__).parent / "data" / "glue", tmp_path / "shared" / "data" / "glue")
    cells = load_grid(path).cells
    assert len(cells) == 48 and {c.config.train.model for c in cells} == {"minilm"}
    assert {c.axes["task"] for c in cells} == {"rotten_tomatoes", "sst2", "mrpc", "stsb"}
    assert {c.axes["strategy"] for c in cells} == {"standard", "random", "random_linear", "sandwich", "kd", "full"}
    for cell in cells:
        assert cell.config.search.baselines == ("layer_drop", "importance") and cell.config.search.samples == 100
        assert (cell.config.train.data_dir is None) == (cell.axes["task"] == "rotten_tomatoes")
        assert cell.config.train.max_train_examples == 2000 and cell.cpus == 1.0


def test_progress_in_a_log_is_plain_lines_with_an_eta(capsys):
    import time

    from prunebench.sweep.runner import _Progress

    progress = _Progress(total=5, workers=2, show=True)  # captured output is not a terminal: plain lines
    progress.counts.update(done=1, running=1, skipped=1)
    progress.durations.append(10.0)
    progress.running_since["a"] = time.perf_counter() - 4.0
    progress.update(force=True)
    (line,) = capsys.readouterr().out.strip().splitlines()
    # 3 cells still to finish at 10 s each, 4 s of the running one spent, 2 at a time: (30 - 4) / 2 = 13 s
    assert line.startswith("cells 2/5: 1 done, 1 running, 0 failed, 2 waiting, 1 finished before"), line
    assert line.endswith("ETA 0:13") or line.endswith("ETA 0:12"), line
    progress.update()  # within a minute of the last line: nothing more in a log
    assert capsys.readouterr().out == ""


def test_a_resumed_sweep_has_an_eta_from_the_cells_earlier_sessions_finished():
    from prunebench.sweep.runner import earlier_durations

    cells = [
        {"name": "done-before", "seconds": 1200.0},  # finished in an earlier session: its time counts
        {"name": "restored", "seconds": None},  # finished, but never timed by a sweep (copied in): no time
        {"name": "interrupted", "seconds": 300.0},  # still pending: a part-time, not a cell's time
    ]
    assert earlier_durations({"cells": cells}, pending={"interrupted"}) == [1200.0]


def test_a_finished_cell_stays_finished_when_a_later_version_adds_a_setting(tmp_path):
    from dataclasses import replace

    from prunebench.config import get_preset
    from prunebench.pipeline import STAGES, pipeline_finished
    from prunebench.rundir import RunDir, write_json_atomic

    config = get_preset("quick")
    recorded = json.loads(json.dumps(config.to_dict(), default=str))
    del recorded["trim_vocab"], recorded["train"]["warmup_ratio"]  # settings this run's version did not have
    session = {"seconds": 1.0, "stages": {name: {"status": "done"} for name in STAGES}}
    run = tmp_path / "cell"
    run.mkdir()
    write_json_atomic(RunDir(run).pipeline_file, {"config": recorded, "sessions": [session]})
    # the missing settings are at their defaults now: what the run had, so it is finished
    assert pipeline_finished(replace(config, train=replace(config.train, warmup_ratio=0.0)), run)
    # a missing setting asked for at another value, or a recorded one changed: not this run's settings
    assert not pipeline_finished(config, run)  # the quick preset warms up for 10%, the run did not
    assert not pipeline_finished(replace(config, trim_vocab=True, train=replace(config.train, warmup_ratio=0.0)), run)
    changed = replace(config, train=replace(config.train, warmup_ratio=0.0, epochs=3))
    assert not pipeline_finished(changed, run)
    session["stages"]["report"]["status"] = "running"
    write_json_atomic(RunDir(run).pipeline_file, {"config": recorded, "sessions": [session]})
    assert not pipeline_finished(replace(config, train=replace(config.train, warmup_ratio=0.0)), run)


def test_copy_results_keeps_the_tables_and_leaves_the_bulk(tmp_path):
    from prunebench.rundir import copy_results, result_files

    run = tmp_path / "cell"
    search = "search/morea-seed0"
    kept = ["run.json", "pipeline.json", "training_log.parquet", f"{search}/pareto.parquet",
            f"{search}/models/index.parquet", "profile/cpu/profile.parquet", "compare/cpu/machine.csv"]  # fmt: skip
    bulk = ["checkpoint/model.safetensors", "checkpoint/checkpoint.json", f"{search}/models/p00/model.safetensors",
            f"{search}/models/p00/model.onnx", f"{search}/models/p00/tokenizer.json", "report/report.html",
            "profile/cpu/profile.parts/a.parquet", "vocab/p00/config.json", f"{search}/log.jsonl",
            "profile/cpu/profile.csv", ".prunebench-lock", "profile/cpu/.profile.parquet.partial-1-ab"]  # fmt: skip
    for name in kept + bulk:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(name)
    assert sorted(map(str, result_files(run))) == sorted(kept)
    target = tmp_path / "committed" / "cell"
    target.mkdir(parents=True)
    (target / "stale.json").write_text("from an earlier copy")
    copy_results(run, target)
    found = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert found == sorted(kept) and (target / "run.json").read_text() == "run.json"
    assert [p.name for p in (tmp_path / "committed").iterdir()] == ["cell"]  # no staging folder left behind


def test_local_ray_runs_cells_at_the_sweeps_own_priority():
    """Ray nices its workers to 15 by default: anything else on the machine would then slow the cells (and
    stretch their measured stage times). The local instance the sweep starts keeps them at our niceness."""
    import os

    from prunebench.sweep.cluster import connected

    with connected(None, 1):
        import ray

        niceness = ray.get(ray.remote(lambda: os.nice(0)).remote())
    assert niceness == os.nice(0)


def _findings_script():
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "findings.py"
    spec = importlib.util.spec_from_file_location("findings_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_findings_methods_tests_each_method_against_random_search_with_holm():
    """Finding (d)'s statistics on a constructed table: a method whose five runs all beat random search's is
    significant after Holm's adjustment; one that interleaves with random search is not; baselines are not tested."""
    findings = _findings_script()

    def method(finals):
        return {"runs": [{"final_hypervolume": v, "hypervolume": {"25": v - 0.01, "50": v, "100": v}} for v in finals]}

    table = {
        "random_search": method([0.50, 0.51, 0.52, 0.53, 0.54]),
        "nsga2": method([0.60, 0.61, 0.62, 0.63, 0.64]),  # every run above every random-search run
        "morea": method([0.505, 0.515, 0.525, 0.535, 0.545]),  # interleaved
        "importance": method([0.70]),
    }
    found = findings._space_methods(table)
    rows = found["methods"]
    assert rows["nsga2"]["above_random_p"] == pytest.approx(1 / 252)
    assert rows["nsga2"]["above_random_p_holm"] == pytest.approx(2 / 252)  # the smaller of two p-values, times 2
    assert rows["nsga2"]["significant"] and not rows["morea"]["significant"]
    assert rows["morea"]["above_random_p_holm"] >= rows["morea"]["above_random_p"]
    assert rows["importance"]["significant"] is None and rows["random_search"]["above_random_p"] is None
    assert rows["nsga2"]["hypervolume"]["100"]["mean"] == pytest.approx(0.62)
    assert rows["nsga2"]["hypervolume"]["25"]["sd"] == pytest.approx(0.0158114, rel=1e-4)  # sample sd over seeds
    assert found["kruskal_wallis_p"] < 0.05
    assert findings._holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
