"""prunebench sweep: a grid of tiny pipelines on a real two-node Ray cluster, aggregated into one report; resumed, it
re-runs nothing; a failing cell is recorded and the others finish; a lost node's cell is retried on the other; bad
grids, addresses and cells no node can hold are one line before anything. One cluster serves the module."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import load_benchmark, run_cli
from prunebench.errors import PrunebenchError
from prunebench.hardware.profiles import load_profiles
from prunebench.rundir import SweepDir
from prunebench.sweep.cluster import Needs, Node, unplaceable
from prunebench.sweep.grid import RAY_ACCELERATOR_TYPES, load_grid

# One worker runs this file under pytest-xdist (tox's `-n auto --dist loadgroup`): its tests share one Ray
# cluster, and two Ray instances on two cores would each slow the other's cells.
pytestmark = pytest.mark.xdist_group("ray")

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


def _grid(folder: Path, models: list[str], name: str = "grid.toml", one_strategy: bool = False) -> Path:
    """``TINY_GRID`` of ``models``; ``one_strategy``: only one_shot (half the cells)."""
    text = TINY_GRID.format(models=json.dumps(models))
    path = folder / name
    path.write_text(text.replace('["standard", "one_shot"]', '"one_shot"') if one_strategy else text)
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
    t4_cell = Needs(2, 1, "T4", 2**30)
    assert "needs 2 CPUs, a T4 GPU" in unplaceable(t4_cell, [Node("a", "cpu-box", "10.0.0.1", {"CPU": 4.0})])
    a10 = Node("b", "a10-box", "10.0.0.2", {"CPU": 4.0, "GPU": 1.0, "accelerator_type:A10": 1.0, "memory": 8 * 2**30})
    assert "1 GPU A10" in unplaceable(t4_cell, [a10])
    t4 = Node("c", "t4-box", "10.0.0.3", {"CPU": 4.0, "GPU": 1.0, "accelerator_type:T4": 1.0, "memory": 8 * 2**30})
    assert unplaceable(t4_cell, [a10, t4]) is None


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


def test_tiny_sweep_on_two_nodes_fails_one_model_reports_and_resumes_nothing(two_nodes, tmp_path, monkeypatch,
                                                                            capsys):  # fmt: skip
    """Four cells (one strategy, two seeds) on a cluster of two 1-CPU nodes: the two of bert-tiny finish, the two
    of a folder that holds no model fail with their error, and the exit status says so; the report has every cell.
    Without the broken model, the sweep runs again and re-runs nothing. (Two strategies in one grid: the grid
    tests; each strategy's pipeline: the pipeline tests.)"""
    broken = tmp_path / "not<b>a*model"  # exists, so the grid is valid; it fails when the cell loads it
    broken.mkdir()
    out = tmp_path / "sweep"
    grid = _grid(tmp_path, ["shape:bert-tiny", str(broken)], one_strategy=True)
    code, stdout, err = run_cli(["sweep", str(grid), "--out", str(out), "--address", two_nodes.address],
                                monkeypatch, capsys)  # fmt: skip
    assert code == 1, stdout + err
    record = SweepDir(out).read()
    by_status: dict[str, list[dict]] = {}
    for cell in record["cells"]:
        by_status.setdefault(cell["status"], []).append(cell)
    assert {s: len(c) for s, c in by_status.items()} == {"done": 2, "failed": 2}
    assert all(c["axes"]["model"] == "shape:bert-tiny" and c["error"] is None for c in by_status["done"])
    for cell in by_status["failed"]:
        assert cell["axes"]["model"] == str(broken) and cell["error"] and str(broken) in cell["error"]
        assert (out / cell["log"]).is_file()  # the traceback is in the cell's log
    assert "4 cells: 4 ran, 0 finished before, 2 failed" in stdout and stdout.count("failed: ") >= 2
    session = record["sessions"][-1]
    assert (session["ran"], session["skipped"], session["failed"], session["retried"]) == (4, 0, 2, 0)
    assert session["address"] == two_nodes.address and len(session["nodes"]) == 2
    # prunebench's own error is not retried: one attempt each, ended with the error
    for cell in by_status["failed"]:
        (attempt,) = cell["attempts"]
        assert attempt["why"] == f"failed: {cell['error']}"

    # One report of every cell: the table, the errors (escaped), and summary.json with the same numbers.
    report = SweepDir(out).report_dir
    html, summary = report.html.read_text(), json.loads((report.path / "summary.json").read_text())
    assert summary["counts"] == {"done": 2, "failed": 2, "running": 0, "waiting": 0}
    done = [c for c in summary["cells"] if c["status"] == "done"]
    assert len(done) == 2 and {(c["axes"]["strategy"], c["axes"]["seed"]) for c in done} == {("full", 0), ("full", 1)}
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
    grid = _grid(tmp_path, ["shape:bert-tiny"], "grid-fixed.toml", one_strategy=True)
    code, stdout, err = run_cli(["sweep", str(grid), "--out", str(out)], monkeypatch, capsys)
    assert code == 0, stdout + err
    assert "2 cells: 0 ran, 2 finished before, 0 failed" in stdout and "at a time" not in stdout
    assert {c["name"]: (out / c["run_dir"] / "pipeline.json").read_text() for c in by_status["done"]} == pipelines
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # not a file of any cell was written
    record = SweepDir(out).read()
    assert [c["status"] for c in record["cells"]] == ["done"] * 2 and record["sessions"][-1]["ran"] == 0

    # 'prunebench report SWEEP' finds the sweep and writes its report (the default: SWEEP/report).
    code, stdout, err = run_cli(["report", str(out)], monkeypatch, capsys)
    assert code == 0 and f"wrote {report.html}" in stdout, err
    assert json.loads((report.path / "summary.json").read_text())["counts"]["done"] == 2


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
        assert not cell.config.train.order_by_importance and not cell.config.train.fixed_teacher  # as published


def test_progress_in_a_log_is_plain_lines_with_an_eta(capsys):
    import time

    from prunebench.sweep.runner import _Progress

    progress = _Progress(total=5, slots=2, show=True)  # captured output is not a terminal: plain lines
    progress.counts.update(done=1, running=1, skipped=1)
    progress.durations.append(10.0)
    progress.running_since["a"] = time.perf_counter() - 4.0
    progress.update(force=True)
    (line,) = capsys.readouterr().out.strip().splitlines()
    # 3 cells still to finish at 10 s each, 4 s of the running one spent, 2 at a time: (30 - 4) / 2 = 13 s
    assert line.startswith("cells 2/5: 1 done, 1 running, 2 queued, 0 failed, 1 finished before"), line
    assert line.endswith("ETA 0:13") or line.endswith("ETA 0:12"), line
    progress.update()  # within a minute of the last line: nothing more in a log
    assert capsys.readouterr().out == ""
    # The last cell runs past the mean, with 20 cells' worth of slots: time is left, so the ETA is not 0:00
    progress = _Progress(total=2, slots=20, show=True)
    progress.counts.update(done=1, running=1)
    progress.durations.append(10.0)
    progress.running_since["b"] = time.perf_counter() - 25.0
    assert progress.line().endswith("ETA 0:01"), progress.line()


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


def test_local_ray_runs_at_our_priority_and_leaves_no_agent_behind_a_killed_driver():
    """Ray nices its workers to 15 by default: anything else on the machine would then slow the cells (and
    stretch their measured stage times); the local instance the sweep starts keeps them at our niceness. Its
    raylet's agents outlive a driver killed with -9 unless the guard kills them: none is left."""
    import time

    import psutil

    script = (
        "import os, sys, time, ray\n"
        "from prunebench.sweep.cluster import connected, _agents\n"
        "with connected(None, 1):\n"
        "    print('nice', ray.get(ray.remote(lambda: os.nice(0)).remote()))\n"
        "    print('agents', *[p.pid for p in _agents()], flush=True)\n"
        "    time.sleep(300)\n"
    )
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    try:
        nice = driver.stdout.readline().split()
        agents = [int(pid) for pid in driver.stdout.readline().split()[1:]]
    finally:
        driver.kill()
        driver.wait()
    assert nice == ["nice", str(os.nice(0))]
    assert agents  # Ray 2.x starts a dashboard agent and a runtime-env agent per node
    deadline = time.monotonic() + 20
    while any(psutil.pid_exists(pid) for pid in agents) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [p for p in agents if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not left, [psutil.Process(p).cmdline() for p in left]


def test_sigterm_to_a_local_ray_driver_is_an_interrupt_that_shuts_ray_down():
    """SIGTERM (a scheduler's stop, a closed terminal's SIGHUP likewise) reaches the sweep as Ctrl-C does, so its
    cells go back to waiting and Ray is shut down; Ray's own handler would dump a stack and abort instead."""
    import signal

    import psutil

    script = (
        "import time\nfrom prunebench.sweep.cluster import connected\nimport psutil\n"
        "try:\n"
        "    with connected(None, 1):\n"
        "        print(*[p.pid for p in psutil.Process().children(recursive=True)], flush=True)\n"
        "        time.sleep(300)\n"
        "except KeyboardInterrupt as stop:\n"
        "    print('interrupted by', stop, flush=True)\n"
    )
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    try:
        ray_processes = [int(pid) for pid in driver.stdout.readline().split()]
        driver.send_signal(signal.SIGTERM)
        out, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 0 and "interrupted by SIGTERM" in out, err
    assert "SIGTERM received" not in err  # no stack dump of Ray's handler
    assert ray_processes and not [p for p in ray_processes if psutil.pid_exists(p)
                                  and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]  # fmt: skip


def test_members_are_chosen_on_validation_and_hypervolume_counts_only_the_common_range():
    """A member is chosen at a budget by its validation error and reported by its test error; the hypervolume over
    [low, 1] gives nothing for what lies below low, and a smaller member still meets every larger budget."""
    import pandas as pd

    from prunebench.report.sweep import error_chosen_on_validation, hypervolume_over

    pareto = pd.DataFrame({"encoder_fraction": [0.05, 0.28, 0.45, 0.66, 1.0], "error": [0.5, 0.3, 0.2, 0.15, 0.1],
                           "test_error": [0.55, 0.25, 0.35, 0.16, 0.12]})  # fmt: skip
    assert error_chosen_on_validation(pareto, 0.3) == (0.25, "test")
    assert error_chosen_on_validation(pareto, 0.5) == (0.35, "test")  # the lower test error at 0.28 is not chosen
    assert error_chosen_on_validation(pareto, 0.01) == (None, "test")
    assert error_chosen_on_validation(pareto.drop(columns="test_error"), 0.5) == (0.2, "validation")
    expected = (0.45 - 0.28) * 0.7 + (0.66 - 0.45) * 0.8 + (1.0 - 0.66) * 0.85
    assert hypervolume_over(pareto, 0.28) == pytest.approx(expected / (1 - 0.28))
    # what only the smallest member covers (below 0.28) counts nowhere; at 0.28 it is dominated by the 0.28 member
    assert hypervolume_over(pareto, 0.28) == pytest.approx(hypervolume_over(pareto.iloc[1:], 0.28))
    assert hypervolume_over(pareto.iloc[:1], 0.5) == pytest.approx(0.5)  # meets every budget at error 0.5


def test_findings_methods_tests_each_method_against_random_search_with_holm():
    """Finding (d)'s statistics on a constructed table: a method whose five runs all beat random search's is
    significant after Holm's adjustment; one that interleaves with random search is not; baselines are not tested."""
    findings = load_benchmark("findings")

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


def _order_cell(task, variant, seed, full, nas=None, importance=None) -> dict:
    """An importance_order cell: an MRPC-shaped test split (408 pairs, majority 68.4%, its F1 0.812); ``nas`` and
    ``importance``: (error, accuracy) of the model chosen at every budget."""
    cell = {
        "task": task,
        "variant": variant,
        "seed": seed,
        "full_model_test_error": full[0],
        "full_model_test_accuracy": full[1],
        "chance_error": 0.188,
        "chance_accuracy": 0.684,
        "test_examples": 408,
    }
    for key, chosen in (("nas", nas), ("importance_baseline", importance), ("layer_drop_baseline", importance)):
        if chosen is not None:
            cell[key] = {
                "error_at": {f: chosen[0] for f in ("0.3", "0.5", "0.7")},
                "accuracy_at": {f: chosen[1] for f in ("0.3", "0.5", "0.7")},
            }
    return cell


def test_the_ordering_finding_leaves_out_comparisons_between_models_at_chance(tmp_path):
    """Seeds where both compared models are no better than the majority class (accuracy inside the band, F1 near
    0.812) decide nothing: with too few seeds left the task has no verdict, and its drop at 50% is not claimed even
    though a majority-class model drops only 2.6% in F1 from the reference."""
    findings = load_benchmark("findings")
    reference = (0.166, 0.75)  # 6.6 points above the majority's accuracy: above chance
    cells = []
    for seed in range(3):
        cells += [
            _order_cell("mrpc", "reference", seed, reference),
            _order_cell("mrpc", "with_ordering", seed, reference, nas=(0.185, 0.70), importance=(0.18, 0.70)),
            _order_cell("mrpc", "without_ordering", seed, reference, nas=(0.19, 0.69), importance=(0.183, 0.70)),
        ]
    path = tmp_path / "importance_order.json"
    path.write_text(json.dumps({"cells": cells, "setup": {}}))
    row = findings.ordering(path)["by_task"]["mrpc"]
    assert row["seeds"] == [0, 1, 2] and row["models_at_chance"]["nas_with_ordering"]["0.5"] == [0, 1, 2]
    assert row["budgets_left_out_at_chance"] == {"0.3": [0, 1, 2], "0.5": [0, 1, 2], "0.7": [0, 1, 2]}
    assert row["relative_drop_at_half_vs_reference"]["nas_with_ordering"]["n"] == 0
    found = findings.ordering(path)
    assert found["reproduced_by_task"]["mrpc"] is None and found["compression_by_task"]["mrpc"] is None
    assert "no drop at 50%: the ordered model there is at chance in 3 of 3 seeds" in found["sentence"]
    # the same errors with accuracies above the band are judged: NAS (0.185) is not at or below importance (0.180)
    for cell in cells:
        for key in ("nas", "importance_baseline"):
            if key in cell:
                cell[key]["accuracy_at"] = dict.fromkeys(cell[key]["accuracy_at"], 0.74)
    path.write_text(json.dumps({"cells": cells, "setup": {}}))
    found = findings.ordering(path)
    assert found["by_task"]["mrpc"]["budgets_left_out_at_chance"] == {}
    assert found["reproduced_by_task"]["mrpc"] is False and found["compression_by_task"]["mrpc"] is True


def test_the_ordering_finding_reads_a_task_from_its_larger_recipe_once_it_has_three_seeds(tmp_path):
    """importance_order's ``*_whole`` variants (MRPC's larger recipe) replace the base recipe's cells of that task
    when three seeds of them finished; with fewer the base recipe's are read, and the two are never mixed."""
    findings = load_benchmark("findings")
    base, larger = [], []
    for seed in range(3):
        base += [
            _order_cell("mrpc", "reference", seed, (0.166, 0.75)),
            _order_cell("mrpc", "with_ordering", seed, (0.17, 0.75), nas=(0.185, 0.70), importance=(0.18, 0.70)),
            _order_cell("mrpc", "without_ordering", seed, (0.18, 0.72), nas=(0.19, 0.69), importance=(0.183, 0.7)),
        ]
        whole = {"full": (0.12, 0.8), "nas": (0.13, 0.79), "importance": (0.14, 0.78)}
        larger += [
            _order_cell("mrpc", "reference_whole", seed, whole["full"]),
            _order_cell("mrpc", "with_ordering_whole", seed, **whole),
            _order_cell("mrpc", "without_ordering_whole", seed, (0.13, 0.8), nas=(0.15, 0.77), importance=(0.16, 0.76)),
        ]
    setup = load_benchmark("importance_order").summarise([], [], [])["setup"]  # names the larger recipe's variants
    path = tmp_path / "importance_order.json"
    path.write_text(json.dumps({"cells": base + larger[:6], "setup": setup}))  # the larger recipe on 2 seeds only
    row = findings.ordering(path)["by_task"]["mrpc"]
    assert row["recipe"] == "base" and row["reference_error"]["mean"] == pytest.approx(0.166)
    path.write_text(json.dumps({"cells": base + larger, "setup": setup}))
    found = findings.ordering(path)
    row = found["by_task"]["mrpc"]
    assert row["recipe"] == "larger" and row["reference_error"]["mean"] == pytest.approx(0.12)
    assert (
        row["error_at"]["nas_with_ordering"]["0.5"]["mean"] == pytest.approx(0.13)
        and not row["models_at_chance"]["nas_with_ordering"]["0.5"]
    )
    assert found["reproduced_by_task"]["mrpc"] is True and found["compression_by_task"]["mrpc"] is True
    assert "mrpc (larger recipe; 3 seed(s) above chance" in found["sentence"]
    rows = findings._ordering_section(found).blocks[0].rows
    assert {r[0] for r in rows} == {"mrpc (larger recipe)"} and "the whole 70% training split" in found["rule"]


def test_the_ordering_table_calls_a_higher_mean_inside_the_spread_a_tie_not_a_yes(tmp_path):
    findings = load_benchmark("findings")
    cells = []
    for seed, nas in enumerate((0.17, 0.15, 0.16)):  # mean 0.16 +- 0.01, importance 0.155: above, inside the spread
        cells += [
            _order_cell("sst2", "reference", seed, (0.12, 0.88)),
            _order_cell("sst2", "with_ordering", seed, (0.12, 0.88), nas=(nas, 0.84), importance=(0.15, 0.85)),
            _order_cell("sst2", "without_ordering", seed, (0.12, 0.88), nas=(0.2, 0.8), importance=(0.155, 0.845)),
        ]
    path = tmp_path / "importance_order.json"
    path.write_text(json.dumps({"cells": cells, "setup": {}}))
    found = findings.ordering(path)
    assert found["by_task"]["sst2"]["nas_with_ordering_at_or_below_importance"]["0.5"] is True
    rows = findings._ordering_section(found).blocks[0].rows
    assert [r[-1] for r in rows if r[1] == "50%"] == ["tie: above, inside the spread"]


def test_importance_order_summarises_the_larger_recipe_beside_the_base_one_on_its_own_seeds():
    """importance_order.json: a task's ``*_whole`` cells are summarised like the base recipe's (reference, both
    super-networks, the baselines) under ``larger_recipe``, over the seeds finished in all three of them; their drop
    is against their own reference. Not there before one such seed finished."""
    benchmark = load_benchmark("importance_order")
    cells = []
    for seed in range(3):
        cells += [
            _order_cell("mrpc", "reference", seed, (0.166, 0.75)),
            _order_cell("mrpc", "with_ordering", seed, (0.17, 0.75), nas=(0.185, 0.70), importance=(0.18, 0.70)),
            _order_cell("mrpc", "without_ordering", seed, (0.18, 0.72), nas=(0.19, 0.69), importance=(0.183, 0.7)),
        ]
    assert "larger_recipe" not in benchmark.summarise(cells, [], [0, 1, 2])["tasks"]["mrpc"]
    larger = [
        _order_cell("mrpc", "reference_whole", 0, (0.10, 0.8)),
        _order_cell("mrpc", "with_ordering_whole", 0, (0.11, 0.8), nas=(0.12, 0.79), importance=(0.14, 0.78)),
        _order_cell("mrpc", "without_ordering_whole", 0, (0.12, 0.8), nas=(0.15, 0.77), importance=(0.16, 0.76)),
        _order_cell("mrpc", "reference_whole", 1, (0.14, 0.8)),  # seed 1: its super-networks not finished
    ]
    task = benchmark.summarise(cells + larger, [], [0, 1, 2])["tasks"]["mrpc"]
    assert task["reference_error"] == pytest.approx(0.166) and task["seeds"] == [0, 1, 2]
    whole = task["larger_recipe"]
    assert whole["seeds"] == [0] and whole["reference_error"] == pytest.approx(0.10)
    assert whole["error_at"]["with_ordering"]["0.5"] == pytest.approx(0.12)
    assert whole["error_at"]["importance_baseline"]["0.5"] == pytest.approx(0.16)  # from the unordered net
    assert whole["relative_drop_at_half_vs_reference"]["with_ordering"] == pytest.approx((0.90 - 0.88) / 0.90, abs=1e-4)
    assert whole["settings"]["epochs"] == 5 and not any(v.endswith("_whole") for v in task["extra_variants"])


# --- on a real cluster: two nodes of one CPU each, shared by the tests below ----------------------------------


@pytest.fixture(scope="module")
def two_nodes():
    """A real Ray cluster: a head and a worker node, one CPU each (two raylets on this host). The head also has
    the custom resource 'bench', which a grid can pin its profile stage to. One start for the module's tests."""
    from ray.cluster_utils import Cluster

    head = {"num_cpus": 1, "include_dashboard": False, "resources": {"bench": 1}}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_a_cell_needing_more_than_any_node_is_refused_in_one_line(two_nodes, tmp_path, monkeypatch, capsys):
    """2 CPUs a cell on two nodes of 1 CPU: the cluster has 2 CPUs in all, but no node can hold the cell. Refused
    before anything is written, naming the largest node; a GPU cell likewise; --workers is for a local Ray."""
    path = tmp_path / "wide.toml"
    path.write_text('[axes]\nmodel = "shape:bert-tiny"\n[resources]\ncpus = 2\n')
    out = tmp_path / "sweep"
    code, _, err = run_cli(["sweep", str(path), "--out", str(out), "--address", two_nodes.address], monkeypatch, capsys)
    line = _one_line(err)
    assert code == 2 and "a cell can never run here" in line and "needs 2 CPUs" in line and "on one node" in line
    assert "the largest node is" in line and ": 1 CPUs" in line, line
    assert not out.exists()

    path.write_text('[axes]\nmodel = "shape:bert-tiny"\ntarget = ["cpu", "t4"]\n[search.evaluation]\nworkers = 1\n')
    code, _, err = run_cli(["sweep", str(path), "--out", str(out), "--address", two_nodes.address], monkeypatch, capsys)
    line = _one_line(err)  # the cpu cell fits; the T4 cell refuses the sweep
    assert code == 2 and "a cell can never run here: bert-tiny-rotten_tomatoes-full-small-morea-t4" in line, line
    assert "needs 1 CPU, a T4 GPU" in line and "0 GPU" in line and not out.exists()

    code, _, err = run_cli(["sweep", str(path), "--out", str(out), "--address", two_nodes.address, "--workers", "2"],
                           monkeypatch, capsys)  # fmt: skip
    assert code == 2 and "--workers sets the CPUs of a local Ray" in _one_line(err)

    # With an autoscaler (--autoscale), the T4 cell waits for its node, then fails with that reason, never started
    path.write_text('[axes]\nmodel = "shape:bert-tiny"\ntarget = "t4"\n[search.evaluation]\nworkers = 1\n')
    code, stdout, err = run_cli(["sweep", str(path), "--out", str(out), "--address", two_nodes.address, "--autoscale",
                                 "--autoscale-timeout", "2"], monkeypatch, capsys)  # fmt: skip
    assert code == 1, stdout + err
    (cell,) = SweepDir(out).read()["cells"]
    assert cell["status"] == "failed" and cell["attempts"] == [] and not (out / cell["run_dir"]).exists()
    assert cell["error"].startswith("not run: no node could hold it within 2 s of waiting for the autoscaler: needs")


def test_a_node_lost_mid_cell_is_retried_on_the_other_node_in_the_same_sweep(two_nodes, tmp_path, monkeypatch, capsys):
    """Two cells, their profile stage pinned to the head's 'bench'. The worker node is killed (its raylet and
    workers, -9) a second into the cell it runs: Ray runs that cell again on the head, it resumes, and the sweep
    finishes with nothing failed. sweep.json keeps both attempts with node, start, end and why; a variable set only
    in the driver reached every attempt; Ray's raylet dump stays out of the terminal."""
    import threading
    import time

    from prunebench.sweep.runner import LOST, read_attempt_lines

    monkeypatch.setenv("PRUNEBENCH_TEST_MARK", "driver-only")  # set after the nodes started: not in their env
    head = next(n for n in two_nodes.list_all_nodes() if n.head)
    worker = next(n for n in two_nodes.list_all_nodes() if not n.head)
    path = tmp_path / "grid.toml"
    path.write_text(TINY_GRID.format(models='["shape:bert-tiny"]').replace('["standard", "one_shot"]', '"standard"')
                    + '[resources]\nprofile_on = "bench"\n')  # fmt: skip
    out = tmp_path / "sweep"
    killed: list[dict] = []

    def kill_the_worker_mid_cell():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            for attempts_file in (out / "logs").glob("*.attempts.jsonl"):
                started = [a for a in read_attempt_lines(attempts_file)
                           if a.get("event") == "start" and a.get("node") == worker.node_id]  # fmt: skip
                if started:
                    time.sleep(1.0)  # into the pipeline: the worker has imported everything already
                    two_nodes.remove_node(worker, allow_graceful=False)
                    killed.append({"file": attempts_file, **started[0]})
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_the_worker_mid_cell, daemon=True)
    killer.start()
    try:
        code, stdout, err = run_cli(["sweep", str(path), "--out", str(out), "--address", two_nodes.address],
                                    monkeypatch, capsys)  # fmt: skip
    finally:
        killer.join(timeout=10)
        two_nodes.add_node(num_cpus=1)  # the module's cluster has two nodes again
    assert killed, "no cell started on the worker node: " + stdout
    assert code == 0, stdout + err
    assert "2 cells: 2 ran, 0 finished before, 0 failed, 1 retried after a lost node or worker" in stdout
    assert "retrying: " in stdout and "state-dump" not in stdout + err

    record = SweepDir(out).read()
    lost_cell = next(c for c in record["cells"] if killed[0]["file"].name.startswith(c["name"] + "."))
    assert lost_cell["status"] == "done" and lost_cell["error"] is None
    first = [a for a in lost_cell["attempts"] if a["part"] == "first"]
    assert [(a["node"], a["why"]) for a in first] == [(worker.node_id, LOST), (head.node_id, "done")], first
    assert first[0]["start"] <= first[0]["end"] == first[1]["start"] <= first[1]["end"]  # lost: ended by its retry
    assert first[0]["host"] and first[0]["cpu"]["model"] and first[1]["peak_rss_mib"] > 0
    for cell in record["cells"]:
        assert cell["status"] == "done", cell
        (profiled,) = [a for a in cell["attempts"] if a["part"] == "profile"]
        assert profiled["node"] == head.node_id and profiled["why"] == "done"  # pinned to the head's 'bench'
        assert cell["machine"]["node"] == head.node_id and cell["resources"]["profile_on"] == "bench"
        assert all(a["env"]["PRUNEBENCH_TEST_MARK"] == "driver-only" for a in cell["attempts"])
        assert 0 < cell["resources"]["memory_gib"] < 4
    assert record["sessions"][-1]["retried"] == 1
    log = (out / lost_cell["log"]).read_text()
    assert "attempt 1 pid" in log and "attempt 2 pid" in log  # both attempts wrote to the cell's one log
    # Both profiled on the head: one machine, one latency table with both cells
    summary = json.loads((SweepDir(out).report_dir.path / "summary.json").read_text())
    ((machine, names),) = summary["latency_by_machine"].items()
    assert sorted(names) == sorted(c["name"] for c in record["cells"]) and socket.gethostname() in machine
    assert all(c["latency"]["full_ms"] > 0 for c in summary["cells"])


# --- without Ray ------------------------------------------------------------------------------------------------


def test_attempts_are_folded_from_their_lines():
    from prunebench.sweep.runner import LOST, STOPPED, attempts

    def start(n, when, session=2, part=None):
        return {"event": "start", "session": session, "part": part, "attempt": n, "start": when, "node": f"n{n}"}

    lines = [start(1, "t1"), start(2, "t3"), {"event": "end", "session": 2, "part": None, "attempt": 2, "end": "t4",
                                              "why": "done", "peak_rss_mib": 700}]  # fmt: skip
    lost, done = attempts(lines, live=True)
    assert (lost["node"], lost["end"], lost["why"]) == ("n1", "t3", LOST)  # ended by its retry's start
    assert (done["node"], done["end"], done["why"], done["peak_rss_mib"]) == ("n2", "t4", "done", 700)
    (running,) = attempts([start(1, "t1")], live=True)
    assert running["why"] is None and running["end"] is None
    (failed,) = attempts([start(1, "t1")], final_error="NodeDiedError: gone", live=True)
    assert failed["why"] == "NodeDiedError: gone" and failed["end"]
    old, new = attempts([start(1, "t1", session=1), start(1, "t5")], live=True)
    assert old["why"] == STOPPED and new["why"] is None  # an earlier session's open attempt was stopped


def test_placement_is_per_node_and_names_the_largest():
    from prunebench.sweep.cluster import fits, largest

    small = [Node(str(i), f"box{i}", f"10.0.0.{i}", {"CPU": 1.0, "memory": 4 * 2**30}) for i in range(2)]
    assert not any(fits(n, Needs(2)) for n in small)  # 2 CPUs in all, but not on one node
    assert "on one node; the largest node is box" in unplaceable(Needs(2), small)
    big = Node("9", "big", "10.0.0.9", {"CPU": 8.0, "memory": 2 * 2**30, "bench": 1.0})
    assert largest([*small, big]).host == "big"
    assert unplaceable(Needs(2), [*small, big]) is None
    assert "3.0 GiB" in unplaceable(Needs(2, memory=3 * 2**30), [*small, big])  # the CPUs fit, the memory not
    assert fits(big, Needs(1, resource="bench")) and not fits(small[0], Needs(1, resource="bench"))
    assert Needs(1, 0, None, 2**30, "bench").options() == {"num_cpus": 1, "num_gpus": 0.0, "memory": 2**30,
                                                           "resources": {"bench": 1.0}}  # fmt: skip


def test_a_node_with_other_versions_is_named_with_the_mismatch():
    from prunebench.sweep.cluster import version_mismatch, versions

    here = versions()
    assert version_mismatch(here, dict(here), "n1") is None
    line = version_mismatch(here, {**here, "torch": "1.0.0"}, "n1")
    assert f"node n1 has torch 1.0.0 (the driver has {here['torch']})" in line and "every node" in line


def test_cell_memory_grows_with_the_model_and_the_batch(tmp_path):
    from dataclasses import replace

    from prunebench.sweep.memory import GIB, cell_memory

    tiny = load_grid(_grid(tmp_path, ["shape:bert-tiny"])).cells[0].config
    minilm = replace(tiny, train=replace(tiny.train, model="minilm"))
    wide = replace(minilm, train=replace(minilm.train, batch_size=64, max_length=256))
    assert GIB <= cell_memory(tiny) < cell_memory(minilm) < cell_memory(wide) < 16 * GIB


def test_a_grid_pins_profiling_of_cpu_cells_only(tmp_path):
    from prunebench.sweep.runner import cell_needs

    path = tmp_path / "pin.toml"
    path.write_text('[axes]\nmodel = "shape:bert-tiny"\ntarget = ["cpu", "t4"]\n'
                    '[resources]\nprofile_on = "node:10.0.0.5"\nmemory_gib = 3\n')  # fmt: skip
    cpu, t4 = load_grid(path).cells
    assert cpu.profile_on == "node:10.0.0.5" and t4.profile_on is None
    main, pinned = cell_needs(cpu)
    assert main.resource is None and pinned.resource == "node:10.0.0.5" and main.memory == 3 * 2**30
    assert cell_needs(t4)[1] is None
    path.write_text('[axes]\ntarget = "t4"\n[resources]\nprofile_on = "bench"\n')
    with pytest.raises(PrunebenchError, match="profile_on pins the profile stage of cpu-target cells"):
        load_grid(path)
    path.write_text("[resources]\nprofile_on = 3\n")
    with pytest.raises(PrunebenchError, match="profile_on takes a Ray resource's name"):
        load_grid(path)


def test_a_cell_names_itself_in_its_run_lock_and_ctrl_c_of_sweep_says_run_it_again(tmp_path, monkeypatch, capsys):
    from prunebench.cli import _interrupted
    from prunebench.rundir import describe_command, writer_lock

    monkeypatch.setattr(sys, "argv", ["prunebench", "--node-ip-address=10.0.0.1", "--object-store-name=x"])
    describe_command("prunebench sweep, cell c1 (attempt 2)")
    try:
        with writer_lock(tmp_path / "run"):
            holder = json.loads((tmp_path / "run" / ".prunebench-lock").read_text())
    finally:
        describe_command(None)
    assert holder["command"] == "prunebench sweep, cell c1 (attempt 2)" and holder["host"] == socket.gethostname()
    monkeypatch.setattr(sys, "argv", ["prunebench", "sweep", "g.toml", "--out", "s"])
    with pytest.raises(SystemExit):
        _interrupted(KeyboardInterrupt())
    err = capsys.readouterr().err
    assert "run the same command again" in err and "--resume" not in err


def test_drops_are_also_taken_against_the_standard_fine_tune_of_the_same_task_and_seed():
    """A super-network's own full model can trail a plain fine-tune: the report gives each cell's drop against the
    finished 'standard' cell of its model, task and seed too, per cell and over seeds."""
    from prunebench.report.sweep import CellFacts, attach_references, groups

    def cell(name, strategy, seed, full, best, task="sst2", status="done"):
        axes = {"model": "minilm", "task": task, "strategy": strategy, "seed": seed, "space": "small",
                "method": "morea", "target": "cpu"}  # fmt: skip
        facts = CellFacts(name, axes, status, None, 1.0, None)
        facts.full_test_error = full
        facts.best_at_half = {
            "option": "p01 fp32",
            "test_error": best,
            "relative_accuracy_drop": (best - full) / (1 - full),
        }
        return facts

    cells = [
        cell("std-0", "standard", 0, 0.20, 0.40),
        cell("full-0", "full", 0, 0.25, 0.28),
        cell("std-1", "standard", 1, 0.10, 0.30),
        cell("full-1", "full", 1, 0.30, 0.31),
        cell("full-2", "full", 2, 0.20, 0.22),  # no standard cell of seed 2
        cell("rt-full-0", "full", 0, 0.20, 0.22, task="rotten_tomatoes"),  # nor of this task
        cell("std-3", "standard", 3, 0.10, 0.30, status="failed"),
        cell("full-3", "full", 3, 0.20, 0.22),
    ]
    attach_references(cells)
    by_name = {c.name: c.reference for c in cells}
    assert by_name["full-0"]["cell"] == "std-0" and by_name["full-0"]["full_test_error"] == 0.20
    assert by_name["full-0"]["relative_drop_at_half_encoder"] == pytest.approx((0.80 - 0.72) / 0.80)
    assert by_name["full-1"]["relative_drop_at_half_encoder"] == pytest.approx((0.90 - 0.69) / 0.90)
    assert by_name["std-0"]["relative_drop_at_half_encoder"] == pytest.approx(0.25)  # its own reference
    assert by_name["full-2"] is None and by_name["rt-full-0"] is None and by_name["full-3"] is None
    (full,) = [g for g in groups(cells) if g["strategy"] == "full" and g["task"] == "sst2"]
    against = full["relative_drop_vs_reference_at_half_encoder"]
    assert against["n"] == 2 and against["mean"] == pytest.approx(((0.80 - 0.72) / 0.80 + (0.90 - 0.69) / 0.90) / 2)
    assert full["relative_drop_at_half_encoder"]["n"] == 4  # the drop against its own full model: every cell


def test_the_report_tests_nas_against_each_baseline_by_rank_over_seeds_and_budgets_above_chance():
    """Over seeds, a group's main search is tested against each baseline by a one-sided Wilcoxon signed-rank test
    paired by seed and budget; a cell whose full model is at chance does not count, and too few pairs give no p."""
    from prunebench.report.sweep import BUDGETS, CellFacts, _groups_table, groups

    def cell(seed, nas, importance, at_chance=False):
        axes = {"model": "minilm", "task": "sst2", "strategy": "full", "seed": seed, "space": "small",
                "method": "morea", "target": "cpu"}  # fmt: skip
        facts = CellFacts(f"c{seed}", axes, "done", None, 1.0, None)
        facts.error_at = {str(f): nas + i / 100 for i, f in enumerate(BUDGETS)}
        facts.baselines = {"importance": {"error_at": {str(f): importance + i / 100 for i, f in enumerate(BUDGETS)}}}
        facts.chance = {"at_chance": at_chance}
        return facts

    cells = [cell(0, 0.20, 0.25), cell(1, 0.21, 0.24), cell(2, 0.19, 0.26), cell(3, 0.5, 0.3, at_chance=True)]
    (group,) = groups(cells)
    test = group["baselines"]["importance"]["rank_test"]
    assert test["pairs"] == 9  # 3 seeds above chance x 3 budgets; the cell at chance (NAS far worse) left out
    assert test["nas_below_p"] == pytest.approx(1 / 512) and test["baseline_below_nas_p"] > 0.99
    assert _groups_table([group], ["importance"]).rows[0][-1] == "0.002 (9)"
    (group,) = groups(cells[:1] + cells[3:])  # one seed above chance: 3 pairs, no p
    assert group["baselines"]["importance"]["rank_test"] == {"pairs": 3, "nas_below_p": None,
                                                             "baseline_below_nas_p": None}  # fmt: skip


def test_the_report_groups_latency_by_machine_and_never_across():
    from prunebench.report.sweep import CellFacts, by_machine, machine_label

    a = {"host": "a", "cpu": {"model": "EPYC", "isa": ["avx2", "avx512_vnni"]}}
    b = {"host": "b", "cpu": {"model": "Xeon", "isa": ["avx2", "amx_int8"]}}
    assert machine_label(a, "cpu") == "a · EPYC [avx2, avx512_vnni]" and machine_label(None, "cpu") is None
    assert machine_label(b, "t4").endswith("· t4")
    c = {"host": "c", "cpu": {"model": "AMD EPYC", "isa": [], "vendor": "AuthenticAMD", "family": "26",
                              "model_number": "2"}}  # fmt: skip
    assert machine_label(c, "cpu") == "c · AMD EPYC (AuthenticAMD family 26 model 2) [no AVX2]"

    def cell(name, machine, latency=True):
        facts = CellFacts(name, {"target": "cpu"}, "done", None, 1.0, None)
        facts.machine = machine_label(machine, "cpu")
        facts.latency = {"shape": "batch 1 x 32", "full_ms": 1.0, "best_ms": 0.5} if latency else None
        return facts

    groups = by_machine([cell("x", a), cell("y", b), cell("z", a), cell("w", b, latency=False), cell("v", None)])
    assert {k: [c.name for c in v] for k, v in groups.items()} == {
        "a · EPYC [avx2, avx512_vnni]": ["x", "z"],
        "b · Xeon [avx2, amx_int8]": ["y"],
        "machine not recorded": ["v"],
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--retries", "-1"], "--retries must be 0 or more, got -1"),
        (["--autoscale-timeout", "0"], "--autoscale-timeout must be positive, got 0"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
        (["--workers", "2", "--address", "127.0.0.1:1"], "--workers sets the CPUs of a local Ray"),
    ],
)
def test_bad_sweep_options_are_one_line_before_ray(tmp_path, monkeypatch, capsys, args, expected):
    grid = _grid(tmp_path, ["shape:bert-tiny"])
    code, out, err = run_cli(["sweep", str(grid), "--out", str(tmp_path / "s"), *args], monkeypatch, capsys)
    assert code == 2 and expected in _one_line(err) and out == "" and not (tmp_path / "s").exists()


def test_a_retry_waits_for_the_lost_attempts_run_lock(tmp_path, monkeypatch):
    """A lost attempt's lock outlives its node until the storage's lease expires: a retry waits for it (a first
    attempt does not), and takes it once it is free."""
    import time
    from contextlib import ExitStack

    import prunebench.sweep.runner as runner

    monkeypatch.setattr(runner, "LOCK_POLL_S", 0.1)
    run = tmp_path / "run"
    script = ("import sys, time\nfrom prunebench.rundir import writer_lock\n"
              f"with writer_lock({str(run)!r}):\n    print('held', flush=True)\n    time.sleep(2)\n")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with ExitStack() as stack, pytest.raises(PrunebenchError, match=f"is being written by pid {holder.pid}"):
            runner._take_run_lock(stack, run, wait=0.0)  # a first attempt: refused at once
        started = time.monotonic()
        with ExitStack() as stack:
            runner._take_run_lock(stack, run, wait=30.0)
            waited = time.monotonic() - started
        assert 1.0 < waited < 30  # the holder kept it about 2 s after saying so
    finally:
        holder.kill()
        holder.wait()
