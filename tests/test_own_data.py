"""Your own data and model through the command line: the README's commands, run as they are written.

The commands are read from README.md between the ``own-data-commands`` markers and run, unchanged, through
the ``prunebench`` entry point in a temporary folder that holds the files they name (``data/...``, generated
here, and ``models/my-bert``, a tiny random BERT saved as a Hugging Face folder). One thing differs from a
user's run, so that the test takes seconds: the ``quick`` preset's sizes are cut down (``helpers.tiny_pipeline``:
one epoch on 96 examples, an 8-sample search, fp32 and dynamic int8); the command line is the README's.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import run_cli, tiny_pipeline
from prunebench.config import PRESETS
from prunebench.models import load_model

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- own-data-commands", "<!-- /own-data-commands -->"

GOOD = ["good", "great", "fun", "moving", "sharp", "warm", "clever", "lovely"]
BAD = ["dull", "flat", "weak", "tedious", "clumsy", "bland", "messy", "cold"]
FILLER = ["the", "film", "plot", "cast", "story", "was", "felt", "quite", "very", "and", "ending", "music"]


def readme_commands() -> list[list[str]]:
    """The ``prunebench ...`` lines between the markers, split as a shell would, without the program name."""
    text = README.read_text(encoding="utf-8")
    block = text[text.index(START) : text.index(END)]
    return [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("prunebench ")]


def _sentence(rng: np.random.Generator, words: list[str]) -> str:
    chosen = [*rng.choice(FILLER, size=4), *rng.choice(words, size=2)]
    return " ".join(rng.permutation(chosen))


def _reviews(rng: np.random.Generator, count: int) -> pd.DataFrame:
    labels = rng.choice(["positive", "negative"], size=count)
    return pd.DataFrame(
        {"text": [_sentence(rng, GOOD if label == "positive" else BAD) for label in labels], "label": labels}
    )


def _pairs(rng: np.random.Generator, count: int) -> pd.DataFrame:
    """Sentence pairs with whole-number scores 1-5: the number of good words shared (the kind is ambiguous)."""
    rows = []
    for _ in range(count):
        score = int(rng.integers(1, 6))
        first = _sentence(rng, GOOD)
        rows.append({"sentence1": first, "sentence2": first if score > 3 else _sentence(rng, BAD), "score": score})
    return pd.DataFrame(rows)


@pytest.fixture
def user_folder(tmp_path, monkeypatch) -> Path:
    """A folder laid out as the README's commands expect: data/ and models/my-bert; the cwd of the test."""
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    _reviews(rng, 160).to_csv(tmp_path / "data" / "train.csv", index=False)
    _reviews(rng, 48).to_csv(tmp_path / "data" / "test.csv", index=False)
    _pairs(rng, 120).to_json(tmp_path / "data" / "pairs.jsonl", orient="records", lines=True)
    _pairs(rng, 40).to_json(tmp_path / "data" / "pairs-test.jsonl", orient="records", lines=True)
    loaded = load_model("shape:bert-tiny")  # a local model folder, as save_pretrained writes it
    loaded.model.save_pretrained(tmp_path / "models" / "my-bert")
    loaded.tokenizer.save_pretrained(tmp_path / "models" / "my-bert")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_commands_for_your_own_data_and_model_run_as_written(user_folder, monkeypatch, capsys, caplog):
    caplog.set_level("WARNING")
    monkeypatch.setitem(PRESETS, "quick", tiny_pipeline("quick"))  # the preset's sizes only (module docstring)
    commands = readme_commands()
    assert [args[0] for args in commands] == ["train", "train", "run"]
    for args in commands:
        code, out, err = run_cli(args, monkeypatch, capsys)
        assert code == 0, (args, out[-2000:], err[-2000:])

    check = json.loads((user_folder / "runs" / "check" / "run.json").read_text())
    assert check["task"]["kind"] == "classification" and check["task"]["label_names"] == ["negative", "positive"]
    guess = [note for note in check["task"]["notes"] if "guessed as 'classification'" in note]
    assert guess and "the labels are text" in guess[0]
    assert any("guessed as 'classification'" in record.getMessage() for record in caplog.records)  # shown

    # --task-kind regression on whole-number scores, which would be guessed as five classes
    scores = json.loads((user_folder / "runs" / "check-scores" / "run.json").read_text())
    assert (scores["task"]["kind"], scores["task"]["metric"], scores["task"]["num_labels"]) == (
        "regression",
        "spearman",
        1,
    )
    assert scores["train"]["task_kind"] == "regression" and scores["train"]["text_columns"] == [
        "sentence1",
        "sentence2",
    ]
    assert not any("guessed" in note for note in scores["task"]["notes"])

    # the whole pipeline on the local model folder, with the (cut-down) quick preset applied to the files
    run = user_folder / "runs" / "mine"
    record = json.loads((run / "run.json").read_text())
    assert record["train"]["model"] == "models/my-bert" and record["train"]["task"] == "files"
    assert record["train"]["train_file"] == str((user_folder / "data" / "train.csv").resolve())  # found from any folder
    assert record["train"]["max_train_examples"] == 96
    stages = json.loads((run / "pipeline.json").read_text())["sessions"][-1]["stages"]
    assert all(stage["status"] == "done" for stage in stages.values()) and "report" in stages
    scores_table = pd.read_parquet(run / "profile" / "cpu" / "scores.parquet")
    assert set(scores_table["variant"]) == {"fp32", "dynamic-int8"} and scores_table["metric"].notna().all()
    assert (run / "report" / "report.html").is_file()


def test_whole_number_labels_are_guessed_as_classes_with_the_way_to_say_otherwise(
    user_folder, monkeypatch, capsys, caplog
):
    caplog.set_level("WARNING")
    args = ["train", "--task", "files", "--train", "data/pairs.jsonl", "--test", "data/pairs-test.jsonl",
            "--text-columns", "sentence1,sentence2", "--label-column", "score", "--model", "shape:bert-tiny",
            "--epochs", "1", "--max-length", "32", "--out", "runs/guessed"]  # fmt: skip
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, out + err
    # not a terminal: plain progress lines, with the loss split, the time per step and the time left
    assert re.search(
        r"step \d+/\d+ \(epoch 1\) loss [\d.]+ to labels, [\d.]+ to teacher · [\d.]+ s/step · \d+:\d\d left", out
    )
    notes = [record.getMessage() for record in caplog.records if "guessed" in record.getMessage()]
    assert len(notes) == 1 and "'classification'" in notes[0] and "pass --task-kind regression" in notes[0]
    assert json.loads((user_folder / "runs" / "guessed" / "run.json").read_text())["task"]["num_labels"] == 5


def test_own_data_options_without_task_files_are_refused_before_anything_is_written(user_folder, monkeypatch, capsys):
    args = ["run", "--train", "data/train.csv", "--task-kind", "regression", "--out", "runs/x"]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--train: only for your own data; add --task files" in err and "--task-kind is for --task files" in err
    assert not (user_folder / "runs").exists()


def test_encoding_and_na_labels_are_options_kept_with_the_run_for_later_stages(user_folder, monkeypatch, capsys):
    """A latin-1 file whose classes are 'NA', 'neg' and 'pos' (some with spaces): refused as it is, with the
    options to say so; trained with them; and `search` reads the files the same way from run.json."""
    rng = np.random.default_rng(1)
    for name, count in (("latin.csv", 90), ("latin-test.csv", 24)):
        frame = _reviews(rng, count)
        frame["label"] = [["NA", "neg ", "pos"][i % 3] for i in range(count)]
        frame.loc[::5, "text"] = "un café " + frame.loc[::5, "text"]
        (user_folder / "data" / name).write_bytes(frame.to_csv(index=False).encode("latin-1"))
    base = ["train", "--task", "files", "--train", "data/latin.csv", "--test", "data/latin-test.csv",
            "--text-columns", "text", "--label-column", "label", "--model", "shape:bert-tiny", "--epochs", "1",
            "--max-length", "16", "--out", "runs/latin"]  # fmt: skip
    code, _, err = run_cli(base, monkeypatch, capsys)
    assert code == 2 and "as utf-8 at line 2 (byte 0xe9)" in err and "--encoding" in err
    code, _, err = run_cli([*base, "--encoding", "latin-1"], monkeypatch, capsys)
    assert code == 2 and "30 row(s)" in err and "--keep-na-labels" in err
    assert not (user_folder / "runs").exists()
    code, out, err = run_cli([*base, "--encoding", "latin-1", "--keep-na-labels"], monkeypatch, capsys)
    assert code == 0, out + err
    record = json.loads((user_folder / "runs" / "latin" / "run.json").read_text())
    assert record["train"]["encoding"] == "latin-1" and record["train"]["keep_na_labels"] is True
    assert record["task"]["label_names"] == ["NA", "neg", "pos"]
    assert any("30 label(s)" in note and "stripped" in note for note in record["task"]["notes"])
    code, out, err = run_cli(["search", "runs/latin", "--samples", "3"], monkeypatch, capsys)
    assert code == 0, out + err


def test_texts_stay_text_missing_cells_are_counted_and_labels_are_stripped(user_folder, monkeypatch, capsys):
    """JSON numbers in a text column keep their text, a Parquet nullable-string NA is an empty text (warned
    about with its rows), and 'positive ' is the class 'positive' (with a note): as trained and as read back."""
    from prunebench.config import TrainConfig
    from prunebench.tasks import load_run_task

    rng = np.random.default_rng(2)
    train = _reviews(rng, 60)
    lines = [json.dumps({"text": 1014 if i == 0 else 3.5 if i == 1 else text, "label": label + " " * (i % 2)})
             for i, (text, label) in enumerate(zip(train["text"], train["label"], strict=True))]  # fmt: skip
    lines[1] = lines[1].replace('"text": 3.5', '"text": 3.10')  # as a person types it; pandas would read 3.1
    (user_folder / "data" / "numbers.jsonl").write_text("\n".join(lines) + "\n")
    test = _reviews(rng, 20)
    test["text"] = pd.array([None if i in (2, 9) else t for i, t in enumerate(test["text"])], dtype="string")
    test.to_parquet(user_folder / "data" / "nullable.parquet", index=False)
    args = ["train", "--task", "files", "--train", "data/numbers.jsonl", "--test", "data/nullable.parquet",
            "--text-columns", "text", "--label-column", "label", "--model", "shape:bert-tiny", "--epochs", "1",
            "--max-length", "16", "--out", "runs/kinds"]  # fmt: skip
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, out + err
    record = json.loads((user_folder / "runs" / "kinds" / "run.json").read_text())
    assert record["task"]["label_names"] == ["negative", "positive"]
    notes = record["task"]["notes"]
    assert any("30 label(s)" in note and "stripped" in note for note in notes)
    assert any("2 row(s) of the test file" in note and "empty text" in note and "data rows 3 and 10" in note
               for note in notes)  # fmt: skip
    data = load_run_task(TrainConfig.from_dict(record["train"]))
    texts = {row["idx"]: row["text_a"] for split in (data.train, data.validation) for row in split}
    assert (texts[0], texts[1]) == ("1014", "3.10")
    assert [data.test[i]["text_a"] for i in (2, 9)] == ["", ""] and "<NA>" not in data.test["text_a"]
