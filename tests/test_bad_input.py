"""Bad input, command by command: exit status 2, one line on stderr, no traceback, and no file changed.

Each case runs the real ``prunebench`` entry point in-process against the shared tiny run (or a copy of
it that the case damages first) and compares the hash of every file before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from helpers import TINY_TRAIN, run_cli

# `prunebench train` arguments that reproduce the tiny run's config exactly (so --resume reaches its checkpoint)
TRAIN_ARGS = [
    *("--model", TINY_TRAIN["model"], "--task", TINY_TRAIN["task"], "--space", TINY_TRAIN["space"]),
    *("--strategy", TINY_TRAIN["strategy"], "--epochs", "1", "--batch-size", "16", "--learning-rate", "0.003"),
    *("--max-train-examples", "96", "--max-eval-examples", "64", "--max-length", "32"),
]
CPU = ["--device", "cpu", "--batch-sizes", "1", "--seq-lens", "16", "--max-seconds", "0.05", "--no-score"]
EXTRACT = ["extract", "--model", "shape:bert-tiny", "--space", "small"]


# --- ways to damage a copy of the run ------------------------------------------------------------------


def _replace(path: Path, data: bytes) -> None:
    """Write a new file (the copy's files are hard links to the shared run's: never write through them)."""
    path.unlink()
    path.write_bytes(data)


def _truncate(relative: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / relative
        _replace(path, path.read_bytes()[: max(1, path.stat().st_size // 3)])

    return damage


def _random_bytes(relative: str) -> Callable[[Path], None]:
    return lambda run: _replace(run / relative, os.urandom(4096))


def _pickled_weights(run: Path) -> None:
    path = run / "checkpoint" / "model.safetensors"
    path.unlink()
    torch.save({"weight": torch.zeros(3)}, path)


def _edit_json(relative: str, edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        data = json.loads((run / relative).read_text())
        edit(data)
        _replace(run / relative, json.dumps(data).encode())

    return damage


def _unfinished(run: Path) -> None:
    """run.json says training is still going, so `train --resume` reaches the checkpoint."""
    _edit_json("run.json", lambda d: d.update(status="training"))(run)


def _both(*damages: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        for each in damages:
            each(run)

    return damage


# --- things a case needs beside the run ------------------------------------------------------------------


def _a_file(tmp: Path) -> None:
    (tmp / "afile").write_text("not a folder")


def _foreign(tmp: Path) -> None:
    (tmp / "foreign").mkdir()
    (tmp / "foreign" / "thesis.tex").write_text("someone's work")


def _forged_marker(tmp: Path) -> None:
    (tmp / "proj" / "src").mkdir(parents=True)
    (tmp / "proj" / "src" / "main.py").write_text("print(1)\n")
    (tmp / "proj" / "prunebench.json").write_text('{"threshold": 0.5}')  # the user's own file of that name


def _empty(tmp: Path) -> None:
    (tmp / "empty").mkdir()


def _pickle_model(tmp: Path) -> None:
    from prunebench.models import load_model

    folder = tmp / "binmodel"
    loaded = load_model("shape:bert-tiny")
    loaded.model.config.save_pretrained(folder)
    torch.save(loaded.model.state_dict(), folder / "pytorch_model.bin")


def _data_files(tmp: Path) -> None:
    """Own-data files that cannot be read as they are (issues 31 and 33): each case names one."""
    (tmp / "latin.csv").write_bytes("text,label\ngood film,pos\nthe caf\u00e9 was dull,neg\n".encode("latin-1"))
    (tmp / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (tmp / "dup.csv").write_text("text,label,text\na,pos,b\nc,neg,d\n")
    (tmp / "na.csv").write_text("text,label\na,pos\nb,NA\nc,neg\n")
    (tmp / "bad.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n{"text": "c" "label": 1}\n')


def _own(name: str, *more: str) -> tuple[str, ...]:
    """`train` on one of ``_data_files`` as both files."""
    files = ("--train", f"{{tmp}}/{name}", "--test", f"{{tmp}}/{name}")
    columns = ("--text-columns", "text", "--label-column", "label")
    command = ("train", "--out", "{tmp}/r", "--model", "shape:bert-tiny", "--task", "files", "--epochs", "1")
    return (*command, *files, *columns, *more)


def _retrained_p00(run: Path) -> None:
    """Other weights under the label the profile measured (as a Pareto export redone since would leave)."""
    from safetensors.torch import load_file, save

    path = run / "search" / "rs" / "models" / "p00" / "model.safetensors"
    state = load_file(path)
    state["classifier.bias"] = state["classifier.bias"] + 1.0
    _replace(path, save(state))


def _multiple_choice_model(tmp: Path) -> None:
    from prunebench.config import ExtractConfig
    from prunebench.extract import extract_subnetworks

    config = ExtractConfig(space="layer", config='{"layer_0": 1, "layer_1": 0}', task_kind="multiple_choice")
    extract_subnetworks("shape:bert-tiny", config, tmp / "mc")


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # {run}: the run (or its damaged copy), {tmp}: the test's own folder
    expect: str  # a regular expression the error line must match
    damage: Callable[[Path], None] | None = None
    setup: Callable[[Path], None] | None = None


CASES = [
    # damaged run files (the audit's cases)
    Case("weights-truncated", ("search", "{run}", "--name", "new"), r"cannot load the model.*damaged",
         _truncate("checkpoint/model.safetensors")),
    Case("weights-random", ("search", "{run}", "--name", "new"), r"cannot load the model.*damaged",
         _random_bytes("checkpoint/model.safetensors")),
    Case("weights-pickled", ("search", "{run}", "--name", "new"), r"cannot load the model.*damaged", _pickled_weights),
    Case("weights-truncated-resume", ("train", "--out", "{run}", "--resume", *TRAIN_ARGS),
         r"checkpoint .* is corrupt.*--overwrite", _both(_unfinished, _truncate("checkpoint/model.safetensors"))),
    Case("candidates-damaged", ("extract-pareto", "{run}", "--search", "rs", "--overwrite"),
         r"candidates\.parquet is damaged.*--resume", _random_bytes("search/rs/candidates.parquet")),
    Case("pareto-damaged", ("extract-pareto", "{run}", "--search", "rs"), r"pareto\.parquet is damaged.*--resume",
         _truncate("search/rs/pareto.parquet")),
    Case("search-json-truncated", ("extract-pareto", "{run}", "--search", "rs"),
         r"search\.json is damaged \(not valid JSON", _truncate("search/rs/search.json")),
    Case("search-json-truncated-resume", ("search", "{run}", "--name", "rs", "--resume"),
         r"search\.json is damaged.*--overwrite", _truncate("search/rs/search.json")),
    Case("checkpoint-json-truncated", ("search", "{run}", "--name", "new"), r"checkpoint\.json is damaged",
         _truncate("checkpoint/checkpoint.json")),
    Case("checkpoint-json-truncated-resume", ("train", "--out", "{run}", "--resume", *TRAIN_ARGS),
         r"checkpoint\.json is damaged", _both(_unfinished, _truncate("checkpoint/checkpoint.json"))),
    Case("checkpoint-json-types", ("search", "{run}", "--name", "new"), r"checkpoint\.json is damaged.*step='x'",
         _edit_json("checkpoint/checkpoint.json", lambda d: d.update(step="x"))),
    Case("run-json-types", ("search", "{run}", "--name", "new"), r"run\.json is damaged.*epochs is 'five'",
         _edit_json("run.json", lambda d: d["train"].update(epochs="five"))),
    Case("run-json-types-export", ("extract-pareto", "{run}"), r"run\.json is damaged.*max_length is None",
         _edit_json("run.json", lambda d: d["train"].update(max_length=None))),
    Case("run-json-truncated", ("search", "{run}"), r"run\.json is damaged \(not valid JSON",
         _truncate("run.json")),
    Case("run-json-not-object", ("compare", "{run}", "--device", "cpu"), r"run\.json is damaged.*list",
         lambda run: _replace(run / "run.json", b"[1, 2]")),
    Case("index-damaged", ("profile", "{run}", *CPU), r"index\.parquet is damaged.*extract-pareto",
         _random_bytes("search/rs/models/index.parquet")),
    Case("markup-in-path", ("search", "{tmp}/a[/]b[bold]"), r"a\[/\]b\[bold\] is not a prunebench run"),
    # out of range or impossible values
    Case("train-batch-0", ("train", "--out", "{tmp}/r", "--batch-size", "0"), r"--batch-size must be at least 1"),
    Case("train-learning-rate", ("train", "--out", "{tmp}/r", "--learning-rate", "-1", "--epochs", "0"),
         r"--epochs must be at least 1.*--learning-rate must be positive"),
    Case("train-warmup", ("train", "--out", "{tmp}/r", "--warmup-ratio", "2"), r"--warmup-ratio must be in"),
    Case("train-max-length", ("train", "--out", "{tmp}/r", *TRAIN_ARGS[:-2], "--max-length", "4096"),
         r"--max-length 4096 is longer than .* takes \(512 tokens\)"),
    Case("search-samples-0", ("search", "{run}", "--samples", "0"), r"--samples must be at least 1"),
    Case("train-round-units-0", ("train", "--out", "{tmp}/r", "--round-units", "0"),
         r"--round-units must be at least 1"),
    Case("train-round-units-layer", ("train", "--out", "{tmp}/r", "--space", "layer", "--round-units", "8"),
         r"space 'layer' does not choose.*--space small or medium"),
    Case("search-round-units-negative", ("search", "{run}", "--round-units", "-4"),
         r"--round-units must be at least 1"),
    Case("run-round-units-0", ("run", "--out", "{tmp}/r", "--round-units", "0"), r"--round-units must be at least 1"),
    Case("train-order-layer", ("train", "--out", "{tmp}/r", "--space", "layer", "--order-by-importance"),
         r"--order-by-importance orders each layer's heads and FFN units, which the layer space does not choose"),
    Case("train-resume-ordered", ("train", "--out", "{run}", "--resume", *TRAIN_ARGS, "--order-by-importance"),
         r"holds a different run \(order_by_importance=False, asked True\)"),
    Case("run-order-epochs-0", ("run", "--out", "{tmp}/r", "--order-by-importance", "--order-epochs", "0"),
         r"--order-epochs must be positive, got 0"),
    Case("extract-round-units-large", (*EXTRACT[:4], "large", "--random", "1", "--round-units", "4", "--out",
                                       "{tmp}/x"), r"space 'large' does not choose"),
    Case("profile-batch-0", ("profile", "{run}", *CPU[:2], "--batch-sizes", "0"), r"batch size 0 is not positive"),
    Case("profile-batch-negative", ("profile", "{run}", *CPU[:2], "--batch-sizes", "-4"), r"batch size -4"),
    Case("profile-seq-len", ("profile", "--model", "shape:bert-tiny", "--device", "cpu", "--seq-lens", "4096",
                             "--out", "{tmp}/p"), r"sequence length 4096 does not fit"),
    Case("profile-score-max", ("profile", "{run}", "--device", "cpu", "--score-max-examples", "0"),
         r"--score-max-examples must be at least 1"),
    Case("export-max-models", ("extract-pareto", "{run}", "--max-models", "1"), r"--max-models must be at least 2"),
    Case("extract-random-0", (*EXTRACT, "--random", "0", "--out", "{tmp}/x"), r"--random must be at least 1"),
    Case("compare-budget", ("compare", "{run}", "--device", "cpu", "--latency-budgets", "fast"), r"budget"),
    Case("compare-max-drop-negative", ("compare", "{run}", "--device", "cpu", "--max-drop", "-1"),
         r"--max-drop must be 0 or more points"),
    Case("report-max-drop-not-a-number", ("report", "{run}", "--out", "{tmp}/r", "--max-drop", "lots"),
         r"--max-drop must be a number of points"),
    # unknown names
    Case("unknown-method", ("search", "{run}", "--method", "nope"), r"unknown search method 'nope'; known: "),
    Case("unknown-objective", ("search", "{run}", "--objectives", "error,nope"), r"nope"),
    Case("unknown-space", ("search", "{run}", "--space", "tiny"), r"unknown search space 'tiny'"),
    Case("unknown-variant", ("profile", "{run}", "--device", "cpu", "--variants", "fp64"), r"fp64"),
    Case("unknown-gpu", ("profile", "--model", "shape:bert-tiny", "--gpu", "nosuch", "--out", "{tmp}/p"), r"nosuch"),
    Case("unknown-gpu-compare", ("compare", "{run}", "--gpu", "nosuch"), r"nosuch"),
    Case("unknown-strategy", ("train", "--out", "{tmp}/r", "--strategy", "nope"), r"unknown strategy 'nope'"),
    Case("unknown-task", ("train", "--out", "{tmp}/r", "--task", "nope"), r"unknown task 'nope'"),
    Case("unknown-shape", (*EXTRACT, "--model", "shape:nope", "--random", "1", "--out", "{tmp}/x"),
         r"unknown model shape 'shape:nope'"),
    Case("unknown-search", ("extract-pareto", "{run}", "--search", "nope"), r"has no search 'nope'"),
    Case("unknown-nas-method", ("nas", "--out", "{tmp}/n", "--method", "nope"), r"nope"),
    Case("unknown-format", ("report", "{run}", "--out", "{tmp}/r", "--format", "pdf"), r"pdf"),
    Case("bad-search-name", ("search", "{run}", "--name", "../evil"), r"--name '../evil' is not a plain folder name"),
    # conflicting flags
    Case("train-resume-overwrite", ("train", "--out", "{tmp}/r", "--resume", "--overwrite"), r"contradict"),
    Case("search-resume-overwrite", ("search", "{run}", "--name", "rs", "--resume", "--overwrite"), r"contradict"),
    Case("profile-gpu-and-cpu", ("profile", "{run}", "--gpu", "t4", "--device", "cpu"), r"exactly one of --gpu"),
    Case("profile-device-gpu", ("profile", "{run}", "--device", "gpu"), r"--device takes only 'cpu'"),
    Case("compare-gpu-and-cpu", ("compare", "{run}", "--gpu", "t4", "--device", "cpu"), r"at most one of --gpu"),
    Case("extract-config-and-random", (*EXTRACT, "--random", "1", "--config", "{{}}", "--out", "{tmp}/x"),
         r"exactly one of --config"),
    # runs and outputs that are missing, taken or not ours
    Case("missing-run", ("search", "{tmp}/nothing"), r"is not a prunebench run .*prunebench train"),
    Case("missing-report-run", ("report", "{tmp}/nothing", "--out", "{tmp}/r"), r"nothing"),
    Case("train-existing-run", ("train", "--out", "{run}"), r"already holds a run.*--resume.*--overwrite"),
    Case("search-existing", ("search", "{run}", "--name", "rs"), r"already holds a search"),
    Case("train-resume-nothing", ("train", "--out", "{tmp}/empty", "--resume"), r"holds no run to resume", None,
         _empty),
    Case("train-out-in-file", ("train", "--out", "{tmp}/afile/run"), r"afile", None, _a_file),
    Case("report-out-in-file", ("report", "{run}", "--out", "{tmp}/afile/r"), r"afile", None, _a_file),
    Case("nas-out-in-file", ("nas", "--out", "{tmp}/afile/n"), r"afile", None, _a_file),
    Case("train-overwrite-foreign", ("train", "--out", "{tmp}/foreign", "--overwrite"), r"did not write", None,
         _foreign),
    Case("extract-overwrite-foreign", (*EXTRACT[:4], "layer", "--config", '{{"layer_0": 1, "layer_1": 0}}',
                                       "--out", "{tmp}/foreign", "--overwrite"), r"did not write", None, _foreign),
    Case("report-overwrite-foreign", ("report", "{run}", "--out", "{tmp}/foreign", "--overwrite"), r"did not write",
         None, _foreign),
    Case("run-overwrite-foreign", ("run", "--out", "{tmp}/foreign", "--overwrite"), r"did not write", None, _foreign),
    Case("report-overwrite-forged-marker", ("report", "{run}", "--out", "{tmp}/proj", "--overwrite"),
         r"did not write", None, _forged_marker),
    Case("train-overwrite-forged-marker", ("train", "--out", "{tmp}/proj", "--overwrite"), r"did not write", None,
         _forged_marker),
    Case("relocate-nothing-given", ("relocate", "{run}"), r"give --train NEW_PATH"),
    Case("relocate-no-own-data", ("relocate", "{run}", "--train", "{tmp}/x.csv"), r"reads no data files"),
    # prunebench export (tests/test_export.py has the missing-onnx case: it needs monkeypatch)
    Case("export-budget-axis", ("export", "{run}", "--budget", "speed:50%", "--out", "{tmp}/e"),
         r"cannot read --budget 'speed:50%'.*latency:50%"),
    Case("export-budget-value", ("export", "{run}", "--budget", "latency:fast", "--out", "{tmp}/e"),
         r"cannot read latency budget 'fast'"),
    Case("export-budget-unmet", ("export", "{run}", "--budget", "latency:1us", "--out", "{tmp}/e"),
         r"no option of .* meets latency .*: the closest is rs/p\d+ fp32 at [\d.]+x the budget"),
    Case("export-unknown-option", ("export", "{run}", "--option", "rs/p99 fp32", "--out", "{tmp}/e"),
         r"unknown option of .* 'rs/p99 fp32'; known: rs/p"),
    Case("export-run-no-choice", ("export", "{run}", "--out", "{tmp}/e"), r"say what to export with --budget"),
    Case("export-option-not-run", ("export", "shape:bert-tiny", "--option", "full", "--out", "{tmp}/e"),
         r"not a run directory"),
    Case("export-out-taken", ("export", "shape:bert-tiny", "--out", "{tmp}/foreign"),
         r"foreign already exists and is not empty; pick another --out or pass --overwrite", None, _foreign),
    Case("export-stale-model", ("export", "{run}", "--option", "rs/p00 fp32", "--out", "{tmp}/e"),
         r"rs/p00 of .* is not the one profiled on cpu.*prunebench profile", _retrained_p00),
    Case("export-refused", ("export", "{tmp}/mc", "--out", "{tmp}/e"), r"multiple_choice head.*classification",
         None, _multiple_choice_model),
    Case("export-nf4", ("export", "shape:bert-tiny", "--variant", "nf4", "--out", "{tmp}/e"),
         r"nf4 .*no ONNX Runtime equivalent.*--variant onnx-int8"),
    Case("export-unknown-variant", ("export", "shape:bert-tiny", "--variant", "fp64", "--out", "{tmp}/e"),
         r"unknown variant 'fp64'"),
    Case("pickled-model-dir", (*EXTRACT, "--model", "{tmp}/binmodel", "--random", "1", "--out", "{tmp}/x"),
         r"only pickled weights \(pytorch_model\.bin\).*safetensors", None, _pickle_model),
    # data files that cannot be read as they are: which file, which encoding, which line, and the fix
    Case("own-data-undecodable", _own("latin.csv"),
         r"cannot decode the train file .*latin\.csv as utf-8 at line 3 \(byte 0xe9\); pass --encoding", None,
         _data_files),
    Case("own-data-binary", _own("binary.csv"), r"binary\.csv is not text in utf-8: it holds NUL bytes.*convert it",
         None, _data_files),
    Case("own-data-repeated-column", _own("dup.csv"), r"dup\.csv has 2 columns named 'text' \(columns 1 and 3\)",
         None, _data_files),
    Case("own-data-na-label", _own("na.csv"), r"1 row\(s\) .*no value in label column 'label'.*--keep-na-labels",
         None, _data_files),
    Case("own-data-jsonl-line", _own("bad.jsonl"), r"line 3 of the train file .*bad\.jsonl is not valid JSON", None,
         _data_files),
    Case("own-data-unknown-encoding", _own("latin.csv", "--encoding", "utf9"), r"--encoding 'utf9' is not an encoding",
         None, _data_files),
    Case("encoding-without-files", ("train", "--out", "{tmp}/r", "--encoding", "latin-1"),
         r"--encoding is for --task files"),
    Case("keep-na-labels-without-files", ("run", "--out", "{tmp}/r", "--keep-na-labels"),
         r"--keep-na-labels is for --task files"),
    Case("trim-undecodable", (*EXTRACT, "--trim-vocab", "{tmp}/latin.csv", "--out", "{tmp}/x"),
         r"cannot decode --trim-vocab .*latin\.csv as utf-8 at line 3", None, _data_files),
    Case("trim-binary", (*EXTRACT, "--trim-vocab", "{tmp}/binary.csv", "--out", "{tmp}/x"),
         r"--trim-vocab .*binary\.csv is not text in utf-8", None, _data_files),
]  # fmt: skip


def _snapshot(*folders: Path) -> dict[str, str]:
    """Every file and folder under ``folders``: a file by its content's hash."""
    found = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


def _linked_copy(source: Path, target: Path) -> None:
    shutil.copytree(source, target, copy_function=os.link)


def test_there_are_at_least_40_cases():
    assert len(CASES) >= 40 and len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, tiny_run, tmp_path, monkeypatch, capsys):
    run = tiny_run
    if case.damage is not None:
        run = tmp_path / "run"
        _linked_copy(tiny_run, run)
        case.damage(run)
    if case.setup is not None:
        case.setup(tmp_path)
    before = _snapshot(tmp_path, tiny_run)
    code, out, err = run_cli([arg.format(run=run, tmp=tmp_path) for arg in case.args], monkeypatch, capsys)
    assert code == 2, out + err
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert re.search(case.expect, lines[0]), lines[0]
    assert _snapshot(tmp_path, tiny_run) == before


def test_a_read_only_output_folder_is_one_line(tmp_path, monkeypatch, capsys):
    """Root writes through a folder's mode bits, so as root the read-only place is /sys (EPERM even for root)."""
    if os.geteuid() == 0:
        if not Path("/sys/kernel").is_dir():
            pytest.skip(
                "as root, mode bits do not stop writes, and there is no /sys here to stand for a read-only place"
            )
        parent = Path("/sys/prunebench-test")
    else:
        parent = tmp_path / "locked"
        parent.mkdir()
        parent.chmod(0o555)
    code, out, err = run_cli(["train", "--out", str(parent / "run")], monkeypatch, capsys)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "cannot create" in lines[0] and "writable path" in lines[0], err
    assert not (parent / "run").exists()
