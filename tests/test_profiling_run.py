"""``prunebench profile RUN``: the fine-tuned model and the run's exported Pareto models, profiled and scored."""

import os
import shutil

import pandas as pd
import pytest
from safetensors.torch import load_file, save_file

import prunebench.hardware.subject as subjects
from helpers import cli_error as _error
from helpers import make_tiny_run, run_cli
from prunebench.profiling import TimingConfig, profile_models, read_profile_table, read_scores, score_variants
from prunebench.profiling.profiler import to_subjects
from prunebench.search import SearchConfig, export_pareto

FAST = ["--device", "cpu", "--batch-sizes", "1", "--seq-lens", "16", "--max-seconds", "0.05"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run with a finished search (nothing exported yet)."""
    searches = (SearchConfig(method="random_search", samples=6, name="rs"),)
    return make_tiny_run(tmp_path_factory.mktemp("profile-run") / "run", searches=searches)


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


def test_estimates_for_a_gpu_go_to_their_own_folder_and_score_what_no_target_scored(run, monkeypatch, capsys):
    """An estimated GPU's answer needs every variant's error: those the CPU profile scored are borrowed, the rest
    (fp16 here, what a GPU deploys) are scored on this CPU by default, and the note says so."""
    code, _, err = run_cli(["profile", str(run), *FAST, "--variants", "fp32", "--score"], monkeypatch, capsys)
    assert code == 0, err
    args = ["profile", str(run), "--gpu", "t4", "--estimate", "--variants", "fp32,fp16", "--batch-sizes", "1"]
    code, stdout, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    frame = pd.read_parquet(run / "profile" / "t4" / "profile.parquet")
    assert (frame["mode"] == "estimated").all() and "full" in set(frame["model"])
    scores = pd.read_parquet(run / "profile" / "t4" / "scores.parquet")
    assert set(scores["variant"]) == {"fp16"} and set(scores["device"]) == {"cpu"}
    assert "fp16 are scored on this CPU" in stdout
    code, stdout, _ = run_cli([*args, "--no-score"], monkeypatch, capsys)
    assert code == 0 and "scored on this CPU" not in stdout


def test_python_api_takes_a_run_directory(run):
    subjects = to_subjects([run])
    assert subjects[0].label == "full" and not subjects[0].pruned
    assert all(s.label.startswith("rs/p") and s.pruned for s in subjects[1:])


def test_bad_input_gets_one_line(run, tmp_path, monkeypatch, capsys):
    line = _error(["profile", str(run), *FAST, "--model", "shape:bert-tiny"], monkeypatch, capsys)
    assert "is a run" in line and "drop --model" in line
    line = _error(
        ["profile", str(run), *FAST, "--model", "shape:bert-tiny", "--measure", "--estimate"], monkeypatch, capsys
    )
    assert "drop --model" in line and "--measure refuses estimates" in line  # every problem in one message
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


# --- points and scores follow the models' content, not their paths or labels -------------------------


def _fresh_copy(run, where):
    """The run copied without its profiles, its Pareto set exported."""
    shutil.copytree(run, where, ignore=shutil.ignore_patterns("profile"))
    export_pareto(where, show_progress=False)
    return where


def _profile_and_score(run_dir) -> tuple[list[str], list[str]]:
    """fp32 at one point into RUN/profile/cpu, profiled and scored; the labels of the rows written anew."""
    out, measured, scored = run_dir / "profile" / "cpu", [], []
    # No end-of-sweep re-measurement: these tests count the rows written anew, once each.
    timing = TimingConfig(warmup=1, min_repeats=2, max_repeats=3, max_seconds=0.05, remeasure_attempts=0)
    profile_models(
        [run_dir], out, variants=["fp32"], batch_sizes=[1], seq_lens=[16], timing=timing, on_row=measured.append
    )
    score_variants(run_dir, None, ["fp32"], out, max_examples=20, show_progress=False, on_row=scored.append)
    return sorted(r.model for r in measured), sorted(r.model for r in scored)


def _labels(run_dir) -> dict[str, str]:
    index = pd.read_parquet(run_dir / "search" / "rs" / "models" / "index.parquet")
    return {f"rs/{row.label}": row.config for row in index.itertuples()}


def _tables(run_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    out = run_dir / "profile" / "cpu"
    return read_profile_table(out).set_index("model"), read_scores(out).set_index("model")


def test_a_moved_or_copied_run_is_not_profiled_or_scored_again(run, tmp_path):
    first = _fresh_copy(run, tmp_path / "first")
    labels = sorted(["full", *_labels(first)])
    assert _profile_and_score(first) == (labels, labels)
    profile, scores = _tables(first)
    copy, moved = tmp_path / "copy", tmp_path / "moved"
    shutil.copytree(first, copy)
    first.rename(moved)
    for where in (copy, moved):
        machine = where / "profile" / "cpu" / "machine.json"
        sessions = machine.read_text()
        assert _profile_and_score(where) == ([], [])
        assert machine.read_text() == sessions  # nothing timed: no session whose load would warn in the report
        again, again_scores = _tables(where)
        for column in ("latency_mean_s", "timestamp", "model_key"):
            assert again[column].equals(profile[column])
        assert again_scores["metric"].equals(scores["metric"])
        assert again["model_key"].nunique() == len(labels)
        for table in (again, again_scores):  # the rows name where the models are now
            assert all(source.startswith(str(where)) for source in table["model_source"])


def test_another_pareto_selection_under_the_same_labels_is_profiled_and_scored_again(run, tmp_path):
    first = _fresh_copy(run, tmp_path / "first")
    # The tiny search's sub-networks all have the same error, so its Pareto set is the smallest alone.
    # A search that went on to find more members is stood in for by its pareto.parquet: every pruned candidate.
    search = first / "search" / "rs"
    candidates = pd.read_parquet(search / "candidates.parquet")
    candidates[candidates["encoder_params"] < 1].to_parquet(search / "pareto.parquet")
    export_pareto(first, max_models=2, overwrite=True, show_progress=False)  # p00, p01: smallest and largest
    two = _labels(first)
    assert _profile_and_score(first) == (sorted(["full", *two]),) * 2
    export_pareto(first, overwrite=True, show_progress=False)  # all of them: p01 is another model now
    everything = _labels(first)
    assert len(everything) >= 3
    changed = sorted(label for label, config in everything.items() if two.get(label) != config)
    assert "rs/p01" in changed and "rs/p00" not in changed
    assert _profile_and_score(first) == (changed, changed)
    out = first / "profile" / "cpu"
    for table in _tables(first):  # one row per label, of the model it names now
        assert sorted(table.index) == sorted(["full", *everything])
    aside = sorted(p.name for p in (out / "profile.parts" / "superseded").iterdir())
    assert len(aside) == len([label for label in changed if label in two])
    assert len(list((out / "scores.parts" / "superseded").iterdir())) == len(aside)


def test_models_with_new_weights_under_the_same_labels_are_profiled_and_scored_again(run, tmp_path):
    """The checkpoint trained again (here: its weights changed) and the same selection exported from it."""
    first = _fresh_copy(run, tmp_path / "first")
    labels = sorted(["full", *_labels(first)])
    assert _profile_and_score(first) == (labels, labels)
    before, before_scores = _tables(first)
    weights = first / "checkpoint" / "model.safetensors"
    state = load_file(weights)
    save_file({k: v * 1.01 if v.is_floating_point() else v for k, v in state.items()}, weights, {"format": "pt"})
    shutil.rmtree(first / "search" / "rs" / "models")  # export_pareto keeps a selection it already holds
    export_pareto(first, show_progress=False)
    assert _profile_and_score(first) == (labels, labels)  # same labels, same structures: other models
    after, scores = _tables(first)
    assert sorted(after.index) == sorted(scores.index) == labels
    assert (after["model_key"] != before["model_key"]).all() and (scores["model_key"] == after["model_key"]).all()
    assert scores["model_structure"].equals(before_scores["model_structure"])


def test_weights_are_hashed_once_while_their_files_are_unchanged(run, tmp_path, monkeypatch):
    checkpoint = shutil.copytree(run / "checkpoint", tmp_path / "checkpoint")
    hashed = []
    real = subjects.weights_hash
    monkeypatch.setattr(subjects, "weights_hash", lambda loaded: hashed.append(loaded) or real(loaded))
    key = subjects.load_subject("full", checkpoint).content_key
    assert subjects.load_subject("full", checkpoint).content_key == key and len(hashed) == 1  # loaded twice
    weights = checkpoint / "model.safetensors"
    # Rewritten as prunebench writes (a new file renamed over the old): safetensors < 0.8 writes in place, and a
    # loaded model's tensors map the file, so an in-place rewrite would change the model in memory too.
    save_file({k: -v for k, v in load_file(weights).items()}, weights.with_suffix(".new"), {"format": "pt"})
    os.replace(weights.with_suffix(".new"), weights)
    assert subjects.load_subject("full", checkpoint).content_key != key and len(hashed) == 2
    assert subjects.subject_from_loaded("full", hashed[0]).content_key == key  # the same model in memory


def test_damaged_parts_are_moved_aside_with_a_warning_and_redone(run, tmp_path, capsys):
    first = _fresh_copy(run, tmp_path / "first")
    labels = sorted(["full", *_labels(first)])
    _profile_and_score(first)
    out = first / "profile" / "cpu"
    damaged = {}
    for folder in ("profile.parts", "scores.parts"):
        parts = sorted((out / folder).glob("*.parquet"))
        assert len(parts) == len(labels) >= 2
        truncated, noise = parts[0], parts[1]
        truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
        noise.write_bytes(os.urandom(noise.stat().st_size))
        damaged |= {truncated: truncated.read_bytes(), noise: noise.read_bytes()}
    capsys.readouterr()
    measured, scored = _profile_and_score(first)
    err = capsys.readouterr().err
    assert len(measured) == len(scored) == 2 and set(measured) | set(scored) <= set(labels)
    warnings = [line for line in err.splitlines() if line.startswith("warning: damaged part")]
    assert len(warnings) == 4
    for path, data in damaged.items():
        assert sum(str(path) in line for line in warnings) == 1
        assert (path.parent / "damaged" / path.name).read_bytes() == data  # kept, not lost
    again, again_scores = _tables(first)
    assert sorted(again.index) == sorted(again_scores.index) == labels
    assert _profile_and_score(first) == ([], [])
