"""Every data reader over every format it claims, with missing cells and a nullable-string column.

The same table is written as CSV, TSV, JSON Lines, Parquet and gzip-compressed CSV, and read by the own-data
loader (``--task files``), the ``--trim-vocab`` text reader, and the GLUE and SWAG loaders (their hub data
arrives through the real ``datasets`` builders of each format). A missing cell must read as no words (never
'nan', 'None' or '<NA>') and be counted in the empty-text warning; a file that does not decode must say which
file, which encoding and which line.
"""

from __future__ import annotations

import gzip
import json
import logging

import datasets
import numpy as np
import pandas as pd
import pytest

from helpers import run_cli
from prunebench.config import TrainConfig
from prunebench.errors import PrunebenchError
from prunebench.extract.vocab import read_texts
from prunebench.tasks import FilesTaskOptions, load_run_task, load_task
from prunebench.tasks.tables import undecodable_line

FORMATS = ["csv", "tsv", "jsonl", "parquet", "csv.gz"]
NOT_TEXT = {"nan", "None", "<NA>", "NaN", "null"}
MISSING_REVIEW = (3, 7)  # rows whose review is missing (pandas' NA of a nullable-string column)
MISSING_TITLE = (5,)  # rows whose title is missing (None in an object column)


def write(frame: pd.DataFrame, path, fmt: str) -> None:
    if fmt in ("csv", "csv.gz"):
        frame.to_csv(path, index=False)  # pandas compresses by the .gz suffix
    elif fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)


def reviews(count: int, offset: int = 0) -> pd.DataFrame:
    """Reviews with a nullable-string text column holding NA, an object column holding None, and text labels."""
    review = [f"review {offset + i} was fine" for i in range(count)]
    title = [f"title {offset + i}" for i in range(count)]
    for i in MISSING_REVIEW:
        review[i] = None
    for i in MISSING_TITLE:
        title[i] = None
    review[1] = "1014"  # a text that looks like a number stays that text
    return pd.DataFrame(
        {
            "review": pd.array(review, dtype="string"),
            "title": pd.Series(title, dtype=object),
            "sentiment": ["pos" if i % 2 else "neg" for i in range(count)],
        }
    )


def _rows(data) -> dict[int, dict]:
    return {row["idx"]: row for split in (data.train, data.validation) for row in split}


@pytest.mark.parametrize("fmt", FORMATS)
def test_own_data_reads_missing_and_nullable_cells_as_empty_texts_in_every_format(fmt, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    train, test = tmp_path / f"train.{fmt}", tmp_path / f"test.{fmt}"
    write(reviews(40), train, fmt)
    write(reviews(10, offset=100), test, fmt)
    if fmt == "parquet":  # the file really holds a nullable-string column
        assert pd.read_parquet(train)["review"].dtype.na_value is pd.NA
    data = load_task("files", files=FilesTaskOptions(train, test, ("review", "title"), "sentiment"))
    assert data.spec.label_names == ("neg", "pos") and data.spec.pair
    rows = _rows(data)
    assert len(rows) == 40
    for i, row in rows.items():
        assert row["text_a"] == ("" if i in MISSING_REVIEW else "1014" if i == 1 else f"review {i} was fine")
        assert row["text_b"] == ("" if i in MISSING_TITLE else f"title {i}")
        assert row["label"] == i % 2
    assert not NOT_TEXT & {text for row in data.test for text in (row["text_a"], row["text_b"])}
    assert data.test[3]["text_a"] == "" and data.test[5]["text_b"] == ""
    warnings = [note for note in data.notes if "empty text" in note and "train file" in note]
    assert any("2 row(s)" in note and "'review'" in note and "data rows 4 and 8" in note for note in warnings)
    assert any("1 row(s)" in note and "'title'" in note and "data row 6" in note for note in warnings)


@pytest.mark.parametrize("name", ["t.jsonl.gz", "t.jsonl.bz2", "t.jsonl.xz", "t.jsonl.zip", "t.ndjson", "t.tsv.xz",
                                  "t.csv.bz2", "t.csv.zip", "t.pq"])  # fmt: skip
def test_own_data_reads_the_other_claimed_extensions_and_compressions(name, tmp_path):
    path = tmp_path / name
    frame = reviews(12)
    kind = name.split(".")[1]
    if kind in ("jsonl", "ndjson"):
        frame.to_json(path, orient="records", lines=True)  # pandas compresses by the suffix
    elif kind == "pq":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep="\t" if kind == "tsv" else ",", index=False)
    data = load_task("files", files=FilesTaskOptions(path, path, ("review", "title"), "sentiment"))
    texts = [(row["text_a"], row["text_b"]) for row in data.test]
    assert texts[:4] == [("review 0 was fine", "title 0"), ("1014", "title 1"), ("review 2 was fine", "title 2"),
                         ("", "title 3")]  # fmt: skip
    assert texts[5] == ("review 5 was fine", "")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "csv.gz"])
def test_own_data_labels_are_stripped_with_a_note_in_every_format(fmt, tmp_path):
    frame = reviews(20)
    frame.loc[[0, 2], "sentiment"] = [" neg", "neg "]
    train = tmp_path / f"train.{fmt}"
    write(frame, train, fmt)
    data = load_task("files", files=FilesTaskOptions(train, train, ("review",), "sentiment"))
    assert data.spec.label_names == ("neg", "pos")
    assert any("2 label(s)" in note and "stripped" in note for note in data.notes)


def test_jsonl_numbers_in_a_text_column_keep_their_text(tmp_path):
    lines = [{"text": 1014, "label": 1}, {"text": 3.10, "label": 0}, {"text": None, "label": 1},
             {"text": "plain words", "label": 0}, {"text": True, "label": 1}, {"text": 7, "label": 0}]  # fmt: skip
    path = tmp_path / "numbers.jsonl"
    # json.dumps would write 3.1: the file must hold the text 3.10
    path.write_text("\n".join(json.dumps(row).replace("3.1,", "3.10,") for row in lines) + "\n")
    assert '"text": 3.10,' in path.read_text()
    data = load_task("files", files=FilesTaskOptions(path, path, ("text",), "label"))
    assert [row["text_a"] for row in data.test] == ["1014", "3.10", "", "plain words", "true", "7"]
    assert data.spec.label_names == ("0", "1")  # numeric labels stay numbers


def test_a_json_array_file_and_pandas_column_layout_read_like_json_lines(tmp_path):
    frame = reviews(12)
    for name, orient in (("records.json", "records"), ("columns.json", "columns")):
        path = tmp_path / name
        frame.to_json(path, orient=orient)
        data = load_task("files", files=FilesTaskOptions(path, path, ("review",), "sentiment"))
        assert [row["text_a"] for row in data.test][:4] == ["review 0 was fine", "1014", "review 2 was fine", ""]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "csv.gz"])
def test_na_labels_are_missing_unless_kept(fmt, tmp_path):
    frame = reviews(30)
    frame["sentiment"] = [["NA", "None", "pos"][i % 3] for i in range(30)]
    train = tmp_path / f"train.{fmt}"
    write(frame, train, fmt)
    with pytest.raises(PrunebenchError) as info:
        load_task("files", files=FilesTaskOptions(train, train, ("review",), "sentiment"))
    message = str(info.value)
    assert "20 row(s)" in message and "no value in label column" in message and "--keep-na-labels" in message
    kept = load_task("files", files=FilesTaskOptions(train, train, ("review",), "sentiment", keep_na_labels=True))
    assert kept.spec.label_names == ("NA", "None", "pos")
    # a blank label is missing whatever the option says
    frame.loc[4, "sentiment"] = "  "
    write(frame, train, fmt)
    with pytest.raises(PrunebenchError, match=r"1 row\(s\) .* no value .*data row 5\)"):
        load_task("files", files=FilesTaskOptions(train, train, ("review",), "sentiment", keep_na_labels=True))


def test_labels_named_na_in_json_and_parquet_are_classes_and_nulls_are_missing(tmp_path):
    frame = reviews(30)
    frame["sentiment"] = pd.array([["NA", "null", "pos"][i % 3] for i in range(30)], dtype="string")
    for fmt in ("jsonl", "parquet"):
        path = tmp_path / f"data.{fmt}"
        write(frame, path, fmt)
        data = load_task("files", files=FilesTaskOptions(path, path, ("review",), "sentiment"))
        assert data.spec.label_names == ("NA", "null", "pos"), fmt
    frame.loc[2, "sentiment"] = pd.NA
    for fmt in ("jsonl", "parquet"):
        path = tmp_path / f"data.{fmt}"
        write(frame, path, fmt)
        with pytest.raises(PrunebenchError, match=r"1 row\(s\) .*no value in label column .*data row 3\)"):
            load_task("files", files=FilesTaskOptions(path, path, ("review",), "sentiment"))


def test_nullable_integer_labels_read_as_numbers(tmp_path):
    frame = reviews(20)
    frame["stars"] = pd.array([i % 3 + 1 for i in range(20)], dtype="Int64")
    path = tmp_path / "stars.parquet"
    frame.to_parquet(path, index=False)
    data = load_task("files", files=FilesTaskOptions(path, path, ("review",), "stars"))
    assert data.spec.label_names == ("1", "2", "3")
    forced = load_task("files", files=FilesTaskOptions(path, path, ("review",), "stars", task_kind="regression"))
    assert sorted(set(forced.test["label"])) == [1.0, 2.0, 3.0]


# --- repeated columns and files that do not decode ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "tsv", "csv.gz", "jsonl", "parquet"])
def test_a_column_named_twice_is_refused_in_one_line(fmt, tmp_path):
    path = tmp_path / f"dup.{fmt}"
    if fmt == "jsonl":
        path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0, "text": "c"}\n')
        expect = r"line 2 of the train file .*dup\.jsonl has the key 'text' twice"
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = [pa.array(["a", "b"]), pa.array([1, 0]), pa.array(["c", "d"])]
        table = pa.table(columns, names=["text", "label", "text"])
        pq.write_table(table, path)
        expect = r"dup\.parquet has 2 columns named 'text' \(columns 1 and 3\)"
    else:
        sep = "\t" if fmt == "tsv" else ","
        text = sep.join(["text", "label", "text"]) + "\n" + sep.join(["a", "1", "b"]) + "\n"
        path.write_bytes(gzip.compress(text.encode()) if fmt.endswith("gz") else text.encode())
        expect = r"has 2 columns named 'text' \(columns 1 and 3\); .*rename"
    with pytest.raises(PrunebenchError, match=expect) as info:
        load_task("files", files=FilesTaskOptions(path, path, ("text",), "label"))
    assert "\n" not in str(info.value)


def test_a_header_that_pandas_would_rename_is_not_mistaken_for_a_repeat(tmp_path):
    path = tmp_path / "dotted.csv"
    path.write_text("text,text.1,label\na,b,1\nc,d,0\n")
    data = load_task("files", files=FilesTaskOptions(path, path, ("text", "text.1"), "label"))
    assert data.test[0]["text_b"] == "b"


LATIN = "text,label\ngood film,pos\nthe café was dull,neg\nfine,pos\n"


@pytest.mark.parametrize("suffix", ["csv", "csv.gz", "tsv", "jsonl"])
def test_an_undecodable_file_names_file_encoding_and_line_and_the_option_fixes_it(suffix, tmp_path):
    text = LATIN.replace(",", "\t") if suffix == "tsv" else LATIN
    if suffix == "jsonl":
        rows = [line.split(",") for line in LATIN.splitlines()[1:]]
        text = "".join(json.dumps({"text": t, "label": label}, ensure_ascii=False) + "\n" for t, label in rows)
    data = text.encode("latin-1")
    path = tmp_path / f"latin.{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith("gz") else data)
    line = 2 if suffix == "jsonl" else 3
    with pytest.raises(PrunebenchError) as info:
        load_task("files", files=FilesTaskOptions(path, path, ("text",), "label"))
    message = str(info.value)
    assert "\n" not in message
    assert f"the train file {path}" in message and "as utf-8" in message and f"at line {line}" in message
    assert "0xe9" in message and "--encoding" in message
    data = load_task("files", files=FilesTaskOptions(path, path, ("text",), "label", encoding="latin-1"))
    assert "the café was dull" in list(data.test["text_a"])


def test_utf16_files_read_with_their_encoding(tmp_path):
    path = tmp_path / "wide.tsv"
    path.write_text(LATIN.replace(",", "\t"), encoding="utf-16")
    expect = r"wide\.tsv is not text in utf-8: it starts with the byte-order mark of UTF-16; pass --encoding"
    with pytest.raises(PrunebenchError, match=expect):
        load_task("files", files=FilesTaskOptions(path, path, ("text",), "label"))
    data = load_task("files", files=FilesTaskOptions(path, path, ("text",), "label", encoding="utf-16"))
    assert list(data.test["text_a"]) == ["good film", "the café was dull", "fine"]


def test_the_undecodable_line_is_counted_in_lines_not_bytes(tmp_path):
    path = tmp_path / "long.txt"
    path.write_bytes(("x" * 5000 + "\n").encode() * 300 + "caf\xe9\n".encode("latin-1"))
    assert undecodable_line(path, "utf-8") == (301, b"\xe9")
    assert undecodable_line(path, "latin-1") is None


def test_a_binary_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "photo.csv"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(PrunebenchError) as info:
        load_task("files", files=FilesTaskOptions(path, path, ("text",), "label"))
    message = str(info.value)
    assert "\n" not in message and f"the train file {path} is not text in utf-8" in message
    assert "NUL bytes (line 1)" in message and "binary" in message and "--encoding" in message
    parquet = tmp_path / "table.parquet"
    reviews(10).to_parquet(parquet)
    renamed = tmp_path / "table.jsonl"
    renamed.write_bytes(parquet.read_bytes())
    with pytest.raises(PrunebenchError, match=r"table\.jsonl is not text in utf-8: .*binary"):
        load_task("files", files=FilesTaskOptions(renamed, renamed, ("review",), "sentiment"))


def test_the_encoding_is_stored_in_the_run_config_and_old_configs_read_as_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes((LATIN + "more,neg\n").encode("latin-1"))
    config = TrainConfig(task="files", train_file=str(path), test_file=str(path), text_columns=("text",),
                         label_column="label", encoding="latin-1", keep_na_labels=True)  # fmt: skip
    stored = config.to_dict()
    assert stored["encoding"] == "latin-1" and stored["keep_na_labels"] is True
    assert "the café was dull" in list(load_run_task(TrainConfig.from_dict(stored)).test["text_a"])
    old = {key: value for key, value in stored.items() if key not in ("encoding", "keep_na_labels")}
    assert (TrainConfig.from_dict(old).encoding, TrainConfig.from_dict(old).keep_na_labels) == ("utf-8", False)
    with pytest.raises(PrunebenchError, match="cannot decode"):
        load_run_task(TrainConfig.from_dict(old))
    with pytest.raises(PrunebenchError, match="'utf9' is not an encoding"):
        TrainConfig(**{**stored, "text_columns": ("text",), "encoding": "utf9"})
    with pytest.raises(PrunebenchError, match="--encoding is for --task files.*--keep-na-labels is for --task files"):
        TrainConfig(encoding="latin-1", keep_na_labels=True)


# --- the --trim-vocab text reader ------------------------------------------------------------------------


def _texts_of(frame: pd.DataFrame) -> set[str]:
    return {text for column in ("review", "title", "sentiment") for text in frame[column].dropna()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_trim_reader_reads_every_text_column_and_skips_missing_cells(fmt, tmp_path):
    frame = reviews(12)
    frame["stars"] = np.arange(12)  # a number column is not text
    path = tmp_path / f"texts.{fmt}"
    write(frame, path, fmt)
    texts = read_texts(path)
    assert not NOT_TEXT & set(texts) and not {str(i) for i in range(12)} & set(texts)
    # CSV reads the column of texts with one "1014" as text; so does every other format
    assert set(texts) == _texts_of(frame)
    assert len(texts) == 3 * 12 - len(MISSING_REVIEW) - len(MISSING_TITLE)


def test_trim_reader_refuses_an_undecodable_file_with_its_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(LATIN.encode("latin-1"))
    with pytest.raises(PrunebenchError, match=r"cannot decode --trim-vocab .*latin\.csv as utf-8 at line 3"):
        read_texts(path)
    gz = tmp_path / "latin.txt.gz"
    gz.write_bytes(gzip.compress(LATIN.encode("latin-1")))
    with pytest.raises(PrunebenchError, match=r"latin\.txt\.gz as utf-8 at line 3"):
        read_texts(gz)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet", "csv.gz"])
def test_extract_trim_vocab_on_a_table_file(fmt, tmp_path, monkeypatch, capsys):
    path = tmp_path / f"reviews.{fmt}"
    write(reviews(12), path, fmt)
    out = tmp_path / "trimmed"
    args = ["extract", "--model", "shape:bert-tiny", "--space", "small", "--trim-vocab", str(path), "--out", str(out)]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    summary = json.loads((out / "trim.json").read_text())
    assert f"reviews.{fmt} (33 texts)" in summary["source"]  # 3 columns of 12, 3 cells missing
    # the words of the reviews, titles and labels, and the special tokens: far fewer than the full vocabulary
    assert 10 < summary["kept_tokens"] < 200 < summary["source_vocab_size"]


# --- the GLUE and SWAG loaders ---------------------------------------------------------------------------

_REAL_LOAD = datasets.load_dataset


def _hub_from_files(monkeypatch, tmp_path, fmt: str, splits: dict[str, pd.DataFrame], hub: tuple[str, ...]):
    """``datasets.load_dataset(*hub)`` answered by the real ``datasets`` builder of ``fmt`` on files of the splits."""
    files = {}
    for split, frame in splits.items():
        files[split] = str(tmp_path / f"{split}.{fmt}")
        write(frame, files[split], fmt)
    builder = {"csv": "csv", "tsv": "csv", "csv.gz": "csv", "jsonl": "json", "parquet": "parquet"}[fmt]
    options = {"delimiter": "\t"} if fmt == "tsv" else {}

    def fake(*args, **kwargs):
        assert args == hub
        return _REAL_LOAD(builder, data_files=files, cache_dir=str(tmp_path / "cache"), **options)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


def _swag(count: int) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "sent1": pd.array([None if i == 1 else f"ctx {i}." for i in range(count)], dtype="string"),
            "sent2": pd.Series([None if i == 2 else f"He{i}" for i in range(count)], dtype=object),
            **{f"ending{j}": [None if (i, j) == (3, 1) else f"does {j}." for i in range(count)] for j in range(4)},
            "label": [i % 4 for i in range(count)],
        }
    )
    return frame


@pytest.mark.parametrize("fmt", FORMATS)
def test_swag_reads_missing_and_nullable_cells_as_no_words(fmt, tmp_path, monkeypatch):
    splits = {"train": _swag(12), "validation": _swag(8)}
    _hub_from_files(monkeypatch, tmp_path, fmt, splits, ("allenai/swag", "regular"))
    data = load_task("swag")
    rows = list(data.test)
    assert rows[1]["context"] == "" and rows[2]["endings"] == ["does 0.", "does 1.", "does 2.", "does 3."]
    assert rows[3]["endings"] == ["He3 does 0.", "He3", "He3 does 2.", "He3 does 3."]
    assert rows[5] == {"context": "ctx 5.", "endings": [f"He5 does {j}." for j in range(4)], "label": 1, "idx": 5}
    texts = [row["context"] for row in rows] + [ending for row in rows for ending in row["endings"]]
    assert not any(word in text.split() for text in texts for word in NOT_TEXT)
    assert len(data.train) + len(data.validation) == 12


@pytest.mark.parametrize("fmt", FORMATS)
def test_swag_missing_label_is_refused(fmt, tmp_path, monkeypatch):
    broken = _swag(6)
    broken["label"] = pd.array([0, 1, None, 3, 0, 1], dtype="Int64")
    _hub_from_files(monkeypatch, tmp_path, fmt, {"train": broken, "validation": _swag(4)}, ("allenai/swag", "regular"))
    with pytest.raises(PrunebenchError, match=r"hub allenai/swag train: 1 label\(s\) missing or outside 0\.\.3"):
        load_task("swag")


def _rte(count: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sentence1": pd.array([None if i == 0 else f"premise {i}" for i in range(count)], dtype="string"),
            "sentence2": [None if i == 1 else f"hypothesis {i}" for i in range(count)],
            "label": [i % 2 for i in range(count)],
            "idx": list(range(count)),
        }
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_glue_hub_reads_missing_and_nullable_cells_as_empty_texts(fmt, tmp_path, monkeypatch):
    _hub_from_files(monkeypatch, tmp_path, fmt, {"train": _rte(20), "validation": _rte(6)}, ("nyu-mll/glue", "rte"))
    data = load_task("rte")
    assert data.test[0] == {"text_a": "", "text_b": "hypothesis 0", "label": 0, "idx": 0}
    assert data.test[1] == {"text_a": "premise 1", "text_b": "", "label": 1, "idx": 1}
    assert len(data.train) + len(data.validation) == 20


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_glue_hub_regression_refuses_missing_scores(fmt, tmp_path, monkeypatch):
    frame = _rte(6).drop(columns="label").assign(label=[1.0, 2.5, None, 4.0, 0.5, 3.0])
    _hub_from_files(monkeypatch, tmp_path, fmt, {"train": frame, "validation": frame}, ("nyu-mll/glue", "stsb"))
    with pytest.raises(PrunebenchError, match=r"1 row\(s\) have no score \(data row 3\)"):
        load_task("stsb")


def test_glue_dir_reads_empty_and_short_rows_as_empty_texts(tmp_path):
    folder = tmp_path / "RTE"
    folder.mkdir()
    rows = ["index\tsentence1\tsentence2\tlabel", "0\t\tsome hypothesis\tentailment",
            "1\tNA\tnull\tnot_entailment", "2\tp\th\tentailment"]  # fmt: skip
    (folder / "train.tsv").write_text("\n".join(rows) + "\n")
    (folder / "dev.tsv").write_text("\n".join(rows) + "\n")
    data = load_task("rte", data_dir=tmp_path)
    pairs = [(row["text_a"], row["text_b"]) for row in data.test]
    assert pairs == [("", "some hypothesis"), ("NA", "null"), ("p", "h")]
    (folder / "dev.tsv").write_bytes("\n".join(rows).replace("some", "s\xf6me").encode("latin-1"))
    with pytest.raises(PrunebenchError, match=r"RTE/dev\.tsv as utf-8-sig at line 2 \(byte 0xf6\).*original GLUE"):
        load_task("rte", data_dir=tmp_path)
