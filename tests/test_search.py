"""Search on a tiny fine-tuned run: every method, the log and --resume, baselines, objectives, bad input."""

import json
import os
import shutil
import signal
import time

import numpy as np
import pandas as pd
import psutil
import pytest
import torch

from helpers import TINY_TRAIN, ForkedCli, make_tiny_run, run_cli
from prunebench.config import TrainConfig
from prunebench.errors import PrunebenchError
from prunebench.extract import extract, shared_extract
from prunebench.models import load_model
from prunebench.search import METHODS, CandidateEvaluator, EvalSettings, ObjectiveSettings, SearchConfig, run_search
from prunebench.search.methods import RandomSearch, initial_design
from prunebench.supernet import MaskedSuperNetwork, get_space
from prunebench.supernet.importance import gradient_importance
from prunebench.tasks import make_collator
from prunebench.tasks.rows import load_run_task, tokenised_rows

# A tiny super-network on ~160 real Rotten Tomatoes examples (one short epoch: the search mechanics are under test).
TRAIN = TINY_TRAIN | {"learning_rate": 1e-3, "max_train_examples": 160, "max_length": 48}
SEARCH_METHODS = [m for m in METHODS if m not in ("layer_drop", "importance")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("search") / "run", TrainConfig(**TRAIN))


def _search(run, **kwargs) -> SearchConfig:
    options = {"samples": 6, "score_test": True} | kwargs
    return SearchConfig(**options)


def _log_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _snapshot(folder) -> dict:
    """Every file's bytes, less the hidden lock files: a kill -9 test on the shared run leaves its lock file behind,
    and the next command that takes the lock removes it (the kernel had dropped the lock itself)."""
    return {
        p.relative_to(folder): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".prunebench-lock")
    }


@pytest.mark.parametrize("method", SEARCH_METHODS)
def test_every_method_returns_valid_configs_and_its_tables(run, method):
    result = run_search(run, _search(run, method=method), show_progress=False)
    space = get_space("small", load_model(run / "checkpoint").dims)
    lines = _log_lines(result.search_dir / "log.jsonl")
    assert result.finished and len(lines) == len(result.candidates) == 6
    for line in lines:
        assert space.validate(line["config"]) == line["config"]
        assert set(line["objectives"]) == {"error", "encoder_params"}
        assert line["method"] == method and line["seed"] == 0
        assert 0 <= line["objectives"]["error"] <= 1 and 0 < line["objectives"]["encoder_params"] <= 1
    assert [line["config"] for line in lines[:3]] == initial_design(space)  # the same initial design for all
    assert lines[0]["objectives"]["encoder_params"] == 1.0
    for table in ("candidates", "pareto", "hypervolume"):
        assert (result.search_dir / f"{table}.parquet").is_file() and (result.search_dir / f"{table}.csv").is_file()
    pareto = pd.read_parquet(result.search_dir / "pareto.parquet")
    assert len(pareto) >= 1 and pareto["test_metric"].between(0, 1).all()
    curve = pd.read_parquet(result.search_dir / "hypervolume.parquet")
    assert curve["evaluations"].tolist() == list(range(1, 7))
    assert np.all(np.diff(curve["hypervolume"]) >= 0) and np.all(np.diff(curve["elapsed_seconds"]) >= 0)
    meta = json.loads((result.search_dir / "search.json").read_text())
    assert meta["status"] == "finished" and meta["reference_point"] == [1.1, 1.1]


@pytest.mark.parametrize("method", ["random_search", "local_search", "morea", "nsga2"])
def test_methods_are_reproducible_from_their_seed(run, method):
    first = run_search(
        run, _search(run, method=method, samples=8, name=f"{method}-a", score_test=False), show_progress=False
    )
    again = run_search(
        run, _search(run, method=method, samples=8, name=f"{method}-b", score_test=False), show_progress=False
    )
    other = run_search(
        run, _search(run, method=method, samples=8, seed=1, name=f"{method}-c", score_test=False), show_progress=False
    )
    assert first.candidates["config"].tolist() == again.candidates["config"].tolist()
    assert first.candidates["config"].tolist() != other.candidates["config"].tolist()


def test_baselines_give_one_point_per_budget(run):
    dropped = run_search(run, _search(run, method="layer_drop", samples=10), show_progress=False)
    configs = [json.loads(c) for c in dropped.candidates["config"]]
    assert dropped.stop_reason == "exhausted" and dropped.meta["space"] == "layer"
    assert configs == [{"layer_0": 1, "layer_1": 1}, {"layer_0": 1, "layer_1": 0}]  # drop the top 0, then 1 layers
    ranked = run_search(run, _search(run, method="importance", samples=4), show_progress=False)
    assert ranked.meta["space"] == "large" and len(ranked.candidates) == 4
    kept = [json.loads(c) for c in ranked.candidates["config"]]
    heads = [sum(v for k, v in c.items() if k.startswith("head_")) for c in kept]
    units = [sum(v for k, v in c.items() if k.startswith("unit_")) for c in kept]
    assert heads == [8, 6, 4, 2] and units == [512, 384, 256, 128]  # fractions 1, 3/4, 1/2, 1/4 of 2x4 and 2x256
    assert ranked.candidates["encoder_params"].is_monotonic_decreasing


def test_importance_scores_are_per_layer_normalised_gradients(run):
    loaded, rows, collator = _rows(run)
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in loaded.model.modules())
    heads, units = gradient_importance(loaded, rows["train"][:48], collator, batch_size=16)
    assert heads.shape == (2, 4) and units.shape == (2, 256)
    assert (heads >= 0).all() and np.allclose(np.linalg.norm(heads, axis=1), 1.0)
    assert np.allclose(np.linalg.norm(units, axis=1), 1.0)
    assert all(p.requires_grad for p in loaded.model.parameters())  # restored afterwards
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in loaded.model.modules()) == hooks


def _rows(run):
    config = TrainConfig(**TRAIN)
    data = load_run_task(config)
    loaded = load_model(run / "checkpoint", task_kind="classification", num_labels=2)
    return loaded, tokenised_rows(data, loaded, config.max_length), make_collator(data.spec, loaded.tokenizer)


def test_sliced_masked_and_two_worker_evaluation_agree(run):
    loaded, rows, collator = _rows(run)
    data = load_run_task(TrainConfig(**TRAIN))
    validation = rows["validation"][:200]
    space = get_space("small", loaded.dims)
    configs = [space.middle(), {"num_layers": 1, "num_heads": 3, "num_units": 100}, space.largest()]
    results = {}
    for name, settings in {
        "masked": EvalSettings(slicing="never", bucketed=False, batch_size=32),
        "sliced": EvalSettings(slicing="always", batch_size=32),
        "workers": EvalSettings(workers=2, batch_size=32),
    }.items():
        with CandidateEvaluator(loaded, data.spec, validation, collator, settings, run / "checkpoint") as evaluator:
            results[name] = [evaluator.predict(space.masks(c))[0] for c in configs]
            assert (evaluator.pool is not None) == (name == "workers")
    for name in ("sliced", "workers"):
        for got, want in zip(results[name], results["masked"], strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_shared_slicing_equals_extraction_and_leaves_the_supernet_alone(run):
    loaded = load_model(run / "checkpoint")
    supernet = MaskedSuperNetwork(loaded)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    masks = get_space("medium", loaded.dims).masks(
        {"num_heads_0": 0, "num_units_0": 17, "num_heads_1": 3, "num_units_1": 0}
    )
    inputs = {"input_ids": torch.randint(1000, 2000, (3, 9)), "attention_mask": torch.ones(3, 9, dtype=torch.long)}
    with torch.no_grad():
        shared = shared_extract(loaded, masks).model(**inputs).logits
        copied = extract(loaded, masks).model(**inputs).logits
        with supernet.masked(masks):
            masked = loaded.model(**inputs).logits
    assert torch.equal(shared, copied)
    torch.testing.assert_close(shared, masked, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())


def test_cost_objectives_with_estimated_latency_and_memory(run):
    objectives = ObjectiveSettings(
        names="error,encoder_params,total_params,macs,latency,memory", target="cpu", seq_len=64
    )
    result = run_search(run, _search(run, objectives=objectives, samples=3, name="costs"), show_progress=False)
    lines = _log_lines(result.search_dir / "log.jsonl")
    full, smallest = lines[0], lines[1]
    assert {k: full["objectives"][k] for k in ("encoder_params", "total_params", "macs", "latency", "memory")} == {
        "encoder_params": 1.0,
        "total_params": 1.0,
        "macs": 1.0,
        "latency": 1.0,
        "memory": 1.0,
    }
    for name in ("encoder_params", "total_params", "macs", "latency", "memory"):
        assert smallest["objectives"][name] < 1.0
    assert full["details"]["latency_source"] == smallest["details"]["latency_source"] == "estimated"
    assert smallest["objectives"]["macs"] == smallest["details"]["macs_count"] / full["details"]["macs_count"]
    assert result.candidates["macs"].tolist() == [line["objectives"]["macs"] for line in lines]
    assert result.meta["reference_point"] == [1.1] * 6


def test_measured_latency_table_is_used_where_it_has_the_shape(run, tmp_path):
    from prunebench.extract.export import export_subnetworks
    from prunebench.profiling import TimingConfig, profile_models

    loaded = load_model(run / "checkpoint")
    space = get_space("small", loaded.dims)
    export_subnetworks(loaded, space, {"middle": space.middle()}, tmp_path / "pruned")
    timing = TimingConfig(warmup=1, min_repeats=2, max_repeats=3, max_seconds=0.2)
    table = tmp_path / "profile"
    common = dict(target="cpu", variants=["fp32"], batch_sizes=[1], seq_lens=[32], timing=timing)
    profile_models([run / "checkpoint", tmp_path / "pruned"], table, **common)
    objectives = ObjectiveSettings(names="error,latency", target="cpu", seq_len=32, latency_table=str(table))
    result = run_search(run, _search(run, objectives=objectives, samples=4, name="measured"), show_progress=False)
    sources = [line["details"]["latency_source"] for line in _log_lines(result.search_dir / "log.jsonl")]
    assert sources[0] == "measured" and sources[2] == "measured"  # the full model and the middle one
    assert sources[1] == "estimated"  # the smallest was not profiled


def test_resume_after_kill_9_evaluates_nothing_twice_and_loses_nothing(run):
    samples, name = 30, "killed"
    args = ["search", str(run), "--method", "random_search", "--samples", str(samples), "--max-eval-examples", "1200"]
    settings = dict(samples=samples, max_eval_examples=1200, score_test=False)
    straight = run_search(run, _search(run, name="straight", **settings), show_progress=False)
    log = run / "search" / name / "log.jsonl"
    process = ForkedCli([*args, "--name", name])
    deadline = time.time() + 120
    while process.poll() is None and time.time() < deadline:
        if log.is_file() and log.read_text().count("\n") >= 5:
            break
        time.sleep(0.02)
    assert process.poll() is None, process.stderr.read().decode()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kept = log.read_bytes()
    with open(log, "ab") as handle:  # what a kill in the middle of a write leaves behind
        handle.write(b'{"index": 999, "config": {"num_lay')
    done = kept.count(b"\n")
    assert 5 <= done < samples
    resumed = run_search(run, _search(run, name=name, **settings), resume=True, show_progress=False)
    assert resumed.replayed == done and resumed.evaluated == samples - done
    text = log.read_bytes()
    assert text.startswith(kept) and text.count(b"\n") == samples  # the torn line is gone, nothing else is
    lines = _log_lines(log)
    assert [line["index"] for line in lines] == list(range(samples))
    assert [line["session"] for line in lines] == [0] * done + [1] * (samples - done)
    assert [line["config"] for line in lines] == [json.loads(c) for c in straight.candidates["config"]]
    np.testing.assert_allclose(
        [line["objectives"]["error"] for line in lines], straight.candidates["error"].to_numpy(), atol=1e-12
    )
    again = run_search(run, _search(run, name=name, **settings), resume=True, show_progress=False)
    assert again.evaluated == 0 and again.replayed == samples and log.read_bytes() == text


def test_resuming_a_finished_search_asks_its_method_nothing(run, monkeypatch):
    first = run_search(run, _search(run, name="done-once", samples=4, score_test=False), show_progress=False)

    def no_ask(self):
        raise AssertionError("a spent budget asks for nothing (ehvi would fit a GP per replayed entry)")

    monkeypatch.setattr(RandomSearch, "ask", no_ask)
    again = run_search(run, _search(run, name="done-once", samples=4, score_test=False), resume=True,
                       show_progress=False)  # fmt: skip
    assert again.evaluated == 0 and again.replayed == 4 and again.stop_reason == "samples"
    assert again.meta["final_hypervolume"] == first.meta["final_hypervolume"]


def _gone(process: psutil.Process) -> bool:
    try:  # a dead worker may stay a zombie here: PID 1 of a container need not reap orphans
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:  # gone, or a zombie, since the listing (a short-lived helper process)
        return []


def test_evaluation_workers_exit_when_the_search_is_killed_9(run):
    args = ["search", str(run), "--samples", "100000", "--workers", "2", "--max-eval-examples", "1200"]
    log = run / "search" / "orphans" / "log.jsonl"
    process = ForkedCli([*args, "--name", "orphans"])
    parent, children = psutil.Process(process.pid), []
    try:
        deadline = time.time() + 240  # generous: a loaded 2-core machine starts workers slowly
        while process.poll() is None and time.time() < deadline:  # workers loaded and scoring
            children = parent.children(recursive=True)
            workers = [c for c in children if "spawn_main" in " ".join(_cmdline(c))]
            if workers and log.is_file() and log.read_text().count("\n") >= 2:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.stderr.read().decode()
        assert workers, [c.cmdline() for c in children]
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.time() + 30  # workers notice the dead parent within their poll interval
        while time.time() < deadline and not all(_gone(c) for c in children):
            time.sleep(0.05)
        assert [c.pid for c in children if not _gone(c)] == []
    finally:
        for child in children:
            if not _gone(child):
                child.kill()
        if process.poll() is None:
            process.kill()
            process.wait()


def test_time_budget_and_repeated_configs(run):
    result = run_search(
        run,
        _search(run, samples=None, time_budget_s=1.5, method="local_search", name="budget", score_test=False),
        show_progress=False,
    )
    # a new evaluation starts while the budget lasts, so the last one ends a little before or after it
    assert result.stop_reason == "time" and 1.0 < result.candidates["elapsed_seconds"].iloc[-1] < 3.0
    # 4 configs exist in all: the search stops when each is evaluated, however many samples were asked for
    layer = run_search(run, _search(run, space="layer", samples=12, name="tiny-space"), show_progress=False)
    assert layer.stop_reason == "exhausted" and len(layer.candidates) == 4
    assert layer.candidates["config"].nunique() == 4 and not layer.candidates["cached"].any()


# --- bad input: one clear error, nothing on disk changed -----------------------------------------


def test_a_run_without_checkpoint_is_refused(run, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "untrained"
    empty.mkdir()
    shutil.copy(run / "run.json", empty / "run.json")
    with pytest.raises(PrunebenchError, match="has no checkpoint to search; run 'prunebench train"):
        run_search(empty, _search(empty), show_progress=False)
    code, _, err = run_cli(["search", str(empty)], monkeypatch, capsys)
    assert code == 2 and "no checkpoint" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in empty.iterdir()) == ["run.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objectives", "error,latency"], "objective 'latency' needs a hardware profile; pass --hardware"),
        (["--samples", "0"], "--samples must be at least 1"),
        (["--time-budget", "0"], "--time-budget must be positive"),
        (["--method", "bayes"], "unknown search method 'bayes'; known: random_search"),
        (["--method", "rsbo"], "method 'rsbo' is not available"),
        (["--objectives", "error,latency", "--hardware", "tpu9"], "'tpu9'; known: a10"),
        (["--method", "ehvi", "--space", "large"], "space 'large' has 520 of them"),
    ],
)
def test_bad_search_input_is_one_line_and_writes_nothing(run, args, message, monkeypatch, capsys):
    before = _snapshot(run)
    code, _, err = run_cli(["search", str(run), *args], monkeypatch, capsys)
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert _snapshot(run) == before


def test_a_log_written_for_another_space_is_refused(run):
    result = run_search(run, _search(run, samples=3, name="spaces"), show_progress=False)
    before = _snapshot(result.search_dir)
    with pytest.raises(PrunebenchError, match="written by a search with another space \\('small'; this one has"):
        run_search(run, _search(run, samples=5, name="spaces", space="medium"), resume=True, show_progress=False)
    assert _snapshot(result.search_dir) == before
    with pytest.raises(PrunebenchError, match="with another objective_settings"):  # MACs at another length
        objectives = ObjectiveSettings(seq_len=64)
        run_search(run, _search(run, samples=5, name="spaces", objectives=objectives), resume=True, show_progress=False)
    assert _snapshot(result.search_dir) == before
    # a log whose lines hold another space's configs (copied in by hand) is refused line by line
    log = result.search_dir / "log.jsonl"
    lines = _log_lines(log)
    lines[1]["config"] = {"layer_0": 1, "layer_1": 0}
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    edited = _snapshot(result.search_dir)
    with pytest.raises(PrunebenchError, match="line 2 was not written by a 'small' search"):
        run_search(run, _search(run, samples=5, name="spaces"), resume=True, show_progress=False)
    assert _snapshot(result.search_dir) == edited
    with pytest.raises(PrunebenchError, match="already holds a search; pass --resume"):
        run_search(run, _search(run, samples=5, name="spaces"), show_progress=False)
    with pytest.raises(PrunebenchError, match="holds no search to resume"):
        run_search(run, _search(run, samples=5, name="never-ran"), resume=True, show_progress=False)


def test_search_command_prints_the_pareto_set(run, monkeypatch, capsys):
    code, out, err = run_cli(
        ["search", str(run), "--method", "nsga2", "--samples", "5", "--name", "cli"], monkeypatch, capsys
    )
    assert code == 0, err
    assert "Pareto set (nsga2)" in out and "hypervolume" in out and "finished (samples)" in out
    code, out, _ = run_cli(
        ["search", str(run), "--method", "nsga2", "--samples", "5", "--name", "cli", "--resume"], monkeypatch, capsys
    )
    assert code == 0 and "0 new" in out


def test_shared_slicing_keeps_mean_pooling(minilm):
    assert minilm.model.config.prunebench_pooling == "mean"
    masks = get_space("small", minilm.dims).masks({"num_layers": 2, "num_heads": 5, "num_units": 300})
    inputs = minilm.tokenizer(
        ["a fine film", "an awful, dull and far too long film"], padding=True, return_tensors="pt"
    )
    supernet = MaskedSuperNetwork(minilm)
    try:
        with torch.no_grad():
            sliced = shared_extract(minilm, masks).model(**inputs).logits
            with supernet.masked(masks):
                masked = minilm.model(**inputs).logits
    finally:
        supernet.remove()
    torch.testing.assert_close(sliced, masked, atol=1e-5, rtol=1e-5)


def test_search_command_summarises_large_space_configs(run, monkeypatch, capsys):
    code, out, err = run_cli(
        ["search", str(run), "--method", "importance", "--samples", "2", "--name", "cli-large"], monkeypatch, capsys
    )
    assert code == 0, err
    assert "head: 8/8 kept; unit: 512/512 kept" in out or "head: 4/8 kept; unit: 256/512 kept" in out


@pytest.mark.parametrize("method", ["ehvi", "lsbo"])
def test_model_based_methods_do_not_spend_evaluations_on_repeats(run, method):
    # On this tiny run every sub-network has the same error, where botorch's proposals keep repeating.
    result = run_search(
        run, _search(run, method=method, samples=10, name=f"{method}-fresh", score_test=False), show_progress=False
    )
    assert len(result.candidates) == 10 and not result.candidates["cached"].any()


def test_search_lines_say_the_time_left_from_this_sessions_pace():
    from prunebench.search.runner import _time_left

    # 3 evaluated in 30 s this session (2 replayed from the log), 5 of 10 done: 5 x 10 s left
    assert _time_left(30.0, 3, 10, 5) == " · 0:50 left"
    assert _time_left(30.0, 3, None, 5) == "" and _time_left(30.0, 0, 10, 5) == "" and _time_left(9.0, 3, 10, 10) == ""


@pytest.mark.parametrize("method", ["local_search", "nsga2"])
def test_round_units_search_logs_extracts_and_resumes_rounded_sub_networks(run, tmp_path, method):
    """--round-units 8: every logged config has unit counts in multiples of 8 (what was evaluated), search.json
    records it, the exported Pareto models have those widths, and a search.json written before the setting
    existed resumes as one without rounding."""
    from prunebench.search import export_pareto

    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("search"))
    result = run_search(copy, _search(copy, method=method, samples=8, round_units=8, name="r8"), show_progress=False)
    assert result.meta["round_units"] == 8
    units = [line["config"]["num_units"] for line in _log_lines(result.search_dir / "log.jsonl")]
    assert len(units) == 8 and all(value % 8 == 0 for value in units)
    exported = export_pareto(copy, "r8", show_progress=False)
    widths = [
        module.out_features
        for row in exported.rows
        for name, module in load_model(exported.models_dir / row["label"]).model.named_modules()
        if name.endswith("intermediate.dense")
    ]
    assert widths and all(value % 8 == 0 for value in widths)

    plain = run_search(copy, _search(copy, method=method, samples=3, name="old"), show_progress=False)
    assert plain.meta["round_units"] == 1  # the run trained without rounding
    meta_path = plain.search_dir / "search.json"
    meta = json.loads(meta_path.read_text())
    del meta["round_units"]  # as written by an earlier version
    meta_path.write_text(json.dumps(meta))
    resumed = run_search(copy, _search(copy, method=method, samples=5, name="old"), resume=True, show_progress=False)
    assert resumed.replayed == 3 and resumed.evaluated == 2
    with pytest.raises(PrunebenchError, match="another round_units \\(1; this one has 8\\)"):
        run_search(
            copy, _search(copy, method=method, samples=6, name="old", round_units=8), resume=True, show_progress=False
        )


def test_search_record_says_whether_estimated_latency_was_corrected(run, tmp_path, monkeypatch):
    """search.json labels the estimated latency corrected (with the record) or not; each candidate logs its factor;
    a search cannot be resumed under another correction, which would mix two scales in one log."""
    from prunebench.hardware import corrections

    monkeypatch.setenv(corrections.CORRECTIONS_ENV, str(tmp_path / "corrections"))
    objectives = ObjectiveSettings(names="error,latency", target="a10", variant="fp16", seq_len=32)
    plain = run_search(run, _search(run, objectives=objectives, samples=2, name="a10-plain"), show_progress=False)
    assert plain.meta["latency_correction"] is None
    assert plain.meta["latency_estimates"].startswith("not corrected: ESTIMATE, error unknown")
    regimes = ("host/launch", "memory", "compute")
    corrections.save(corrections.from_pairs("a10", "NVIDIA A10", [("fp16", r, -0.5) for r in regimes], "2026-12-02"))
    fixed = run_search(run, _search(run, objectives=objectives, samples=2, name="a10-fixed"), show_progress=False)
    saved = json.loads((fixed.search_dir / "search.json").read_text())
    assert saved["latency_estimates"].startswith("corrected per regime with the fp16 correction measured on NVIDIA A10")
    assert saved["latency_correction"]["device"] == "NVIDIA A10" and saved["latency_correction"]["variant"] == "fp16"
    plain_lines, fixed_lines = _log_lines(plain.search_dir / "log.jsonl"), _log_lines(fixed.search_dir / "log.jsonl")
    assert [line["config"] for line in plain_lines] == [line["config"] for line in fixed_lines]
    for before, after in zip(plain_lines, fixed_lines, strict=True):
        assert before["details"]["latency_correction"] is None
        assert after["details"]["latency_correction"] == pytest.approx(2.0)
        assert after["details"]["latency_s"] == pytest.approx(2 * before["details"]["latency_s"])
    with pytest.raises(PrunebenchError, match="another latency_correction \\(None; this one has"):
        run_search(
            run, _search(run, objectives=objectives, samples=4, name="a10-plain"), resume=True, show_progress=False
        )
