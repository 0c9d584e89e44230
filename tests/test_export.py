"""``prunebench export``: the folder runs without prunebench and computes what ``load_model`` computes.

Each check runs the exported files in a new Python process where ``import prunebench`` fails (a
meta-path blocker installed first), on real GLUE sentences (SST-2 singles, RTE pairs), and compares
the logits with ``load_model``'s in this process: ONNX fp32 and the ``transformers`` folder within
``VERIFY_TOLERANCE``, ONNX int8 within the check's measured int8 bound. The subject is a pruned bert-tiny
with layers of different sizes, a layer without heads and a trimmed vocabulary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import GLUE_DATA, run_cli
from prunebench.config import CompareConfig, ExtractConfig, ProfileConfig, TimingConfig
from prunebench.deploy.check import int8_bound
from prunebench.extract import VERIFY_TOLERANCE, extract_subnetworks
from prunebench.models import load_model
from prunebench.report.answer import export_command

UNEVEN = {"num_heads_0": 3, "num_units_0": 37, "num_heads_1": 0, "num_units_1": 130}
README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- deploy-commands", "<!-- /deploy-commands -->"

# Runs in a fresh interpreter: block prunebench, prove it is blocked, then run the folder as a user would.
BLOCKED = """
import importlib.abc, json, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "prunebench":
            raise ImportError("blocked")
sys.meta_path.insert(0, Blocked())
try:
    import prunebench
    raise SystemExit("prunebench is importable")
except ImportError:
    pass
folder, batches = sys.argv[1], json.loads(sys.argv[2])
"""
ONNX_CLIENT = (
    BLOCKED
    + """
import numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
tokenizer = Tokenizer.from_file(folder + "/tokenizer.json")
out = {}
for name in ("model.onnx", "model-int8.onnx"):
    session = ort.InferenceSession(folder + "/" + name, providers=["CPUExecutionProvider"])
    out[name] = []
    for batch in batches:
        encoded = tokenizer.encode_batch([text if pair is None else (text, pair) for text, pair in batch])
        inputs = {"input_ids": [e.ids for e in encoded], "attention_mask": [e.attention_mask for e in encoded],
                  "token_type_ids": [e.type_ids for e in encoded]}
        feed = {i.name: np.array(inputs[i.name], dtype=np.int64) for i in session.get_inputs()}
        out[name].append(session.run(["logits"], feed)[0].tolist())
print(json.dumps(out))
"""
)
TORCH_CLIENT = (
    BLOCKED
    + """
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # it reads config.json too
out = []
for batch in batches:
    texts, pairs = [t for t, _ in batch], [p for _, p in batch]
    inputs = tokenizer(texts, pairs if pairs[0] is not None else None, padding=True, return_tensors="pt")
    with torch.no_grad():
        out.append(model(**inputs).logits.tolist())
print(json.dumps({"logits": out, "config": model.config.to_dict()}))
"""
)


def glue_batches() -> list[list]:
    sst = pd.read_csv(GLUE_DATA / "SST-2" / "dev.tsv", sep="\t", quoting=3).head(6)
    rte = pd.read_csv(GLUE_DATA / "RTE" / "dev.tsv", sep="\t", quoting=3).head(4)
    return [
        [[text, None] for text in sst["sentence"]],
        [[a, b] for a, b in zip(rte["sentence1"], rte["sentence2"], strict=True)],
    ]


def reference(loaded, batches) -> list[np.ndarray]:
    found = []
    for batch in batches:
        texts, pairs = [t for t, _ in batch], [p for _, p in batch]
        inputs = loaded.tokenizer(texts, pairs if pairs[0] is not None else None, padding=True, return_tensors="pt",
                                  return_token_type_ids=loaded.adapter.uses_token_type_ids)  # fmt: skip
        with torch.no_grad():
            found.append(loaded.model(**inputs).logits.numpy())
    return found


def run_blocked(script: str, folder: Path, batches) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(folder), json.dumps(batches)], capture_output=True,
                          text=True, env=env, cwd=folder, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def pruned(tmp_path_factory) -> Path:
    """bert-tiny with 3 and 0 heads, 37 and 130 units, and the vocabulary of a few sentences."""
    folder = tmp_path_factory.mktemp("pruned")
    texts = folder / "texts.txt"
    texts.write_text("it 's a charming and often affecting journey .\nDana Reeve , the widow of the actor\n")
    config = ExtractConfig(space="medium", config=json.dumps(UNEVEN), trim_vocab=str(texts), verify=True)
    extract_subnetworks("shape:bert-tiny", config, folder / "model")
    return folder / "model"


@pytest.fixture(scope="module")
def exported(pruned, tmp_path_factory) -> Path:
    from prunebench.deploy.export import ExportConfig, export

    out = tmp_path_factory.mktemp("exported") / "deploy"
    export(pruned, out, ExportConfig(variant="onnx-int8"))
    return out


def test_the_onnx_files_run_with_onnxruntime_and_tokenizers_alone(pruned, exported):
    loaded = load_model(pruned)
    assert [len(k.heads) for k in loaded.structure.layers] == [3, 0] and loaded.vocab.kept < 100  # what is covered
    batches = glue_batches()
    got = run_blocked(ONNX_CLIENT, exported, batches)
    for want, fp32, int8 in zip(reference(loaded, batches), got["model.onnx"], got["model-int8.onnx"], strict=True):
        assert np.abs(np.array(fp32) - want).max() <= VERIFY_TOLERANCE
        assert np.abs(np.array(int8) - want).max() <= int8_bound(want)
        assert not np.allclose(np.array(int8), want, atol=1e-7)  # int8 is a different computation, really run


def test_the_folder_loads_in_transformers_with_trust_remote_code_alone(pruned, exported):
    loaded = load_model(pruned)
    batches = glue_batches()
    got = run_blocked(TORCH_CLIENT, exported, batches)
    for want, logits in zip(reference(loaded, batches), got["logits"], strict=True):
        assert np.abs(np.array(logits) - want).max() <= VERIFY_TOLERANCE
    config = got["config"]  # the config says what the model is
    assert (config["layer_heads"], config["layer_units"]) == ([3, 0], [37, 130])
    assert config["vocab_rows"] == loaded.vocab.kept and config["pooling"] == "cls"
    assert config["architectures"] == ["PrunedEncoderForSequenceClassification"]


def test_export_json_and_the_folder_readme(exported):
    meta = json.loads((exported / "export.json").read_text())
    assert meta["onnx"]["opset"] == 17 and meta["onnx"]["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert meta["written_as"] == ["onnx-fp32", "onnx-int8"] and meta["measured"] is None  # a model dir: not measured
    assert meta["check"]["max_abs_diff"]["onnx_fp32"] <= VERIFY_TOLERANCE
    assert set(meta["files"]["all"]) <= {p.name for p in exported.iterdir()}
    # the README's Python, as written, from the folder, without prunebench
    code = re.search(r"```python\n(.*?)```", (exported / "README.md").read_text(), re.S).group(1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", BLOCKED + code, ".", "[]"], cwd=exported, capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"\[\[.*\]\] \[[01] [01]\]", done.stdout.replace("\n", " "))  # two rows of logits, two classes


@pytest.mark.integration
def test_mean_pooling_is_in_the_config_and_the_graph(tmp_path):
    """MiniLM reads the mean of its tokens: both exports must, or its logits move (the issue saw 0.034)."""
    from prunebench.deploy.export import ExportConfig, export

    loaded = load_model("minilm")
    result = export("minilm", tmp_path / "minilm", ExportConfig())
    assert json.loads((tmp_path / "minilm" / "config.json").read_text())["pooling"] == "mean"
    assert result.check["max_abs_diff"]["onnx_fp32"] <= VERIFY_TOLERANCE
    assert result.check["max_abs_diff"]["pytorch"] <= VERIFY_TOLERANCE
    assert loaded.model.config.prunebench_pooling == "mean"
    assert "no trained task head" in result.note  # minilm's head is fresh: said, not hidden


@pytest.fixture(scope="module")
def compared_run(tiny_run, tmp_path_factory) -> Path:
    """The tiny run profiled with fp32 and dynamic-int8, scored and compared on the CPU."""
    from prunebench.profiling import profile_run
    from prunebench.report.compare import compare_run

    run = tmp_path_factory.mktemp("compared") / "run"
    shutil.copytree(tiny_run, run)
    settings = ProfileConfig(variants=("fp32", "dynamic-int8"), batch_sizes=(1,), seq_lens=(16,),
                             timing=TimingConfig(max_seconds=0.05), score_max_examples=48)  # fmt: skip
    profile_run(run, settings, show_progress=False)
    compare_run(run, CompareConfig(latency_budgets=("50%",), memory_budgets=("50%",)))
    return run


def _useful(run: Path) -> pd.DataFrame:
    """The tiny run predicts at chance, so no option is an answer; marked useful, each is (as a trained run's)."""
    table = run / "compare" / "cpu" / "options.parquet"
    options = pd.read_parquet(table).assign(chance=False)
    options.to_parquet(table)
    return options


def test_export_run_budget_writes_the_answer(compared_run, tmp_path, monkeypatch, capsys):
    from prunebench.report.compare import answer_budgets, build_options, full_model_value, parse_budget

    run = tmp_path / "run"
    shutil.copytree(compared_run, run)
    code, _, err = run_cli(["export", str(run), "--budget", "latency:50%", "--out", str(tmp_path / "x")],
                           monkeypatch, capsys)  # fmt: skip
    assert code == 2 and "better than chance" in err and not (tmp_path / "x").exists()  # the at-chance run: no answer
    options = _useful(run)
    evidence = build_options(run, "cpu", None, None)[1]["evidence"]  # ties resolve as the report's answer does
    for budget in ("latency:50%", "latency:1000%"):  # 1000%: every option fits, the cheapest of the tied
        axis, _, value = budget.partition(":")
        parsed = parse_budget(value, axis, full_model_value(options, "latency_s"))
        answer = answer_budgets(options, [parsed], evidence).iloc[0]
        out = tmp_path / budget.replace(":", "-").replace("%", "")
        code, stdout, err = run_cli(["export", str(run), "--budget", budget, "--out", str(out)], monkeypatch, capsys)
        if not isinstance(answer["best_option"], str):  # nothing that fast on this machine: the closest is named
            assert code == 2 and answer["closest_option"] in err and not out.exists()
            continue
        assert code == 0, err
        meta = json.loads((out / "export.json").read_text())
        row = options.set_index("option").loc[answer["best_option"]]
        assert meta["source"]["option"] == answer["best_option"] and meta["source"]["budget"] == budget
        assert meta["measured"]["test_error"] == pytest.approx(row["error"])
        assert meta["measured"]["latency_ms"] == pytest.approx(row["latency_s"] * 1e3)
        assert meta["measured"]["device"] == row["device"] and meta["measured"]["threads"] == 1
        int8 = row["variant"] == "dynamic-int8"
        assert (out / "model-int8.onnx").is_file() == int8 and (out / "model.onnx").is_file()
        assert (meta["note"] is not None) == int8 and (not int8 or "closest ONNX equivalent" in meta["note"])
        assert "checked without prunebench" in stdout
        # the report's summary.json names this command for the budget
        command = export_command(run, "cpu", answer.to_dict())
        assert command.startswith(f"prunebench export {run} --budget {budget} --target cpu --out ")


def test_the_export_command_gives_the_budget_back_as_compare_reads_it():
    from prunebench.report.compare import answer_budgets, parse_budget

    options = pd.DataFrame({"option": ["a fp32", "b fp32"], "kind": ["unpruned", "prune"], "error": [0.1, 0.2],
                            "latency_s": [0.04, 0.02], "memory_bytes": [2e8, 1e8], "estimated": [False, False],
                            "chance": [False, False]})  # fmt: skip
    budgets = [parse_budget("30ms", "latency", None), parse_budget("150MiB", "memory", None),
               parse_budget("60%", "latency", 0.04), parse_budget("1ms", "latency", None)]  # fmt: skip
    rows = answer_budgets(options, budgets).to_dict("records")
    commands = [export_command("runs/my run", "t4", row) for row in rows]
    assert (
        commands[0] == "prunebench export 'runs/my run' --budget latency:30ms --target t4 --out deploy-t4-latency-30ms"
    )
    assert "--budget memory:150MiB" in commands[1] and "--budget latency:60% --target t4" in commands[2]
    assert commands[3] is None  # nothing fits 1 ms


def test_export_run_option_with_a_pytorch_only_variant(compared_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(compared_run, run)
    options = pd.read_parquet(run / "compare" / "cpu" / "options.parquet")
    pruned = sorted(options.loc[options["pruned"] & (options["variant"] == "dynamic-int8"), "model"])[0]
    out = tmp_path / "opt"
    code, stdout, err = run_cli(["export", str(run), "--option", pruned, "--variant", "dynamic-int8", "--out", str(out),
                                 "--json"], monkeypatch, capsys)  # fmt: skip
    assert code == 0, err
    result = json.loads(stdout)
    assert result["written_as"] == ["fp32", "int8"] and "onnx-int8" in result["note"]
    assert result["source"]["option"] == f"{pruned} dynamic-int8" and result["measured"]["kind"] == "both"
    loaded = load_model(result["source"]["model_path"])
    got = run_blocked(ONNX_CLIENT, out, glue_batches())
    for want, fp32 in zip(reference(loaded, glue_batches()), got["model.onnx"], strict=True):
        assert np.abs(np.array(fp32) - want).max() <= VERIFY_TOLERANCE


def test_missing_onnx_is_one_line_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: find_spec gives None
    code, _, err = run_cli(["export", "shape:bert-tiny", "--out", str(tmp_path / "x")], monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "pip install 'prunebench[onnx]'" in err and not (tmp_path / "x").exists()


def _readme_commands() -> tuple[list[list[str]], str]:
    import shlex

    text = README.read_text(encoding="utf-8")
    block = text[text.index(START) : text.index(END)]
    commands = [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("prunebench ")]
    python = re.search(r"```python\n(.*?)```", block, re.S).group(1)
    return commands, python


def test_readme_deploy_section_runs_as_written(compared_run, tmp_path, monkeypatch, capsys):
    """The README's Deploy commands and its standalone Python, verbatim, in a folder holding runs/quick."""
    commands, python = _readme_commands()
    monkeypatch.chdir(tmp_path)
    shutil.copytree(compared_run, tmp_path / "runs" / "quick")
    _useful(tmp_path / "runs" / "quick")
    for args in commands:
        code, out, err = run_cli(args, monkeypatch, capsys)
        assert code == 0, (args, out[-2000:], err[-2000:])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", BLOCKED + python, ".", "[]"], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()


def test_a_model_the_onnx_exporter_refuses_is_one_line_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    from prunebench.hardware import onnx as onnx_room

    def refuse(loaded):
        raise onnx_room.OnnxExportFailed("torch.onnx.export could not export the model: UnsupportedOp: aten::foo")

    monkeypatch.setattr(onnx_room, "export_onnx", refuse)
    code, _, err = run_cli(["export", "shape:bert-tiny", "--out", str(tmp_path / "x")], monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "the ONNX exporter refused shape:bert-tiny: torch.onnx.export could not export the model" in err
    assert list(tmp_path.iterdir()) == []  # not even the staging folder is left


def test_the_report_and_summary_json_name_the_export_command_per_budget(tmp_path):
    from report_fixture import make_report_run

    from prunebench.report import write_report

    run = make_report_run(tmp_path / "run")
    result = write_report([run], tmp_path / "report", formats=["md"])
    markdown = result.markdown.read_text()
    summary = json.loads((result.out / "summary.json").read_text())
    answered = [b for t in summary["targets"] for b in t["budgets"] if b["winner"] is not None]
    unanswered = [b for t in summary["targets"] for b in t["budgets"] if b["winner"] is None]
    assert answered and all(b["export_command"].startswith(f"prunebench export {run} --budget ") for b in answered)
    assert all(b["export_command"] is None for b in unanswered)
    for budget in answered:
        assert budget["export_command"] in markdown


def test_a_pruned_roberta_regression_model_exports_and_checks(tmp_path):
    """The other family (positions after the padding index, dense + tanh head, no segment ids) and a 1-output head."""
    from prunebench.deploy.export import ExportConfig, export

    config = ExtractConfig(space="medium", config=json.dumps(UNEVEN), task_kind="regression")
    extract_subnetworks("shape:roberta-tiny", config, tmp_path / "model")
    result = export(tmp_path / "model", tmp_path / "out", ExportConfig(variant="onnx-int8"))
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (written["family"], written["num_labels"], written["layer_heads"]) == ("roberta", 1, [3, 0])
    assert result.check["max_abs_diff"]["pytorch"] <= VERIFY_TOLERANCE >= result.check["max_abs_diff"]["onnx_fp32"]
    assert result.check["int8_decisive"] == 0  # one output: no class to agree on
    assert json.loads((tmp_path / "out" / "export.json").read_text())["onnx"]["inputs"] == [
        "input_ids",
        "attention_mask",
    ]


def test_the_check_catches_a_folder_that_computes_something_else(pruned, exported, tmp_path):
    """A wrong model.onnx (another model's export) in the folder: the separate process runs it, the check refuses."""
    from prunebench.deploy.check import check_export
    from prunebench.errors import PrunebenchError
    from prunebench.hardware.onnx import onnx_model

    folder = tmp_path / "wrong"
    shutil.copytree(exported, folder)
    (folder / "model.onnx").write_bytes(onnx_model(load_model("shape:bert-tiny", seed=1), "fp32"))
    with pytest.raises(PrunebenchError, match=r"does not match load_model \(onnx_fp32 .* > 0.0001"):
        check_export(load_model(pruned), folder)


def test_int8_must_predict_the_same_class_where_fp32_decides_clearly(pruned, monkeypatch):
    """The argmax rule on made-up outputs: fp32 prefers class 0 by 0.15 on every sentence (decisive: above the
    0.1 bound); int8 logits within the bound but ranked the other way round still fail the check."""
    from prunebench.deploy import check
    from prunebench.errors import PrunebenchError

    loaded, original = load_model(pruned), check.reference_logits

    def decisive(model, batch):
        inputs, reference = original(model, batch)
        reference = reference.copy()
        reference[:, 0] = reference[:, 1] + 0.15
        return inputs, reference

    got = {}
    for index, batch in enumerate(check.CHECK_BATCHES):
        inputs, reference = decisive(loaded, batch)
        got |= {f"{name}_{index}": value for name, value in inputs.items()}
        got[f"onnx_int8_{index}"] = reference + 0.01
    monkeypatch.setattr(check, "reference_logits", decisive)
    monkeypatch.setattr(check, "run_standalone", lambda folder: got)
    result = check.check_export(loaded, Path("unused"))
    assert (result.int8_decisive, result.int8_argmax_agreement, result.max_abs_diff["onnx_int8"]) == (
        8,
        1.0,
        pytest.approx(0.01),
    )
    flipped = got["onnx_int8_0"].copy()
    flipped[0] += np.array([-0.09, 0.07])  # each logit 0.08 from fp32 (within 0.1), the ranking reversed
    got["onnx_int8_0"] = flipped
    with pytest.raises(PrunebenchError, match=r"match load_model \(onnx_int8 predicts another class on 1 of 8 sent"):
        check.check_export(loaded, Path("unused"))


def test_overwrite_replaces_an_export_and_without_it_nothing_changes(pruned, exported, tmp_path, monkeypatch, capsys):
    out = tmp_path / "again"
    shutil.copytree(exported, out)
    before = (out / "export.json").read_text()
    args = ["export", str(pruned), "--variant", "fp32", "--out", str(out)]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and "pass --overwrite" in err and (out / "export.json").read_text() == before
    code, _, err = run_cli([*args, "--overwrite"], monkeypatch, capsys)
    assert code == 0, err
    assert not (out / "model-int8.onnx").exists()  # the new export is fp32 only: the old folder was replaced
    assert json.loads((out / "export.json").read_text())["written_as"] == ["onnx-fp32"]
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no staging or retired folder left beside it
