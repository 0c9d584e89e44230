"""Vocabulary trimming: identical logits on kept tokens, the unknown token's row for the others, exact counts,
save and load, composition with pruning and the quantized variants, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from helpers import TINY_MODELS, run_cli
from helpers import cli_error as _error
from prunebench.extract import extract, verification_batch
from prunebench.extract.export import _SAMPLE_PAIRS
from prunebench.extract.vocab import token_counts, trim_vocabulary
from prunebench.hardware.subject import subject_from_loaded
from prunebench.hardware.variants import VARIANTS, build_variant
from prunebench.models import load_model
from prunebench.models.pruned import save_pruned
from prunebench.models.vocab import TrimmedEmbedding
from prunebench.supernet import CostModel, Masks, get_space

UNEVEN = {"num_heads_0": 3, "num_units_0": 37, "num_heads_1": 0, "num_units_1": 130}


@pytest.fixture
def sentences(tmp_path):
    """A data file holding exactly the verification sentences (so every token of that batch is kept)."""
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(text for pair in _SAMPLE_PAIRS for text in pair) + "\n")
    return path


def _logits(loaded, batch):
    with torch.no_grad():
        return loaded.model(**batch).logits


@pytest.mark.parametrize("name", TINY_MODELS)  # WordPiece (BERT) and BPE (RoBERTa) tokenizers
def test_kept_tokens_give_identical_logits_and_unseen_ones_the_unknown_row(name, sentences):
    loaded = load_model(name)
    result = trim_vocabulary(loaded, sentences)
    trimmed = result.loaded
    batch = verification_batch(loaded)
    assert torch.equal(_logits(trimmed, batch), _logits(loaded, batch))  # bit for bit
    assert loaded.model.get_input_embeddings().weight.shape[0] == loaded.model.config.vocab_size  # left as it was
    table = trimmed.model.get_input_embeddings()
    assert isinstance(table, TrimmedEmbedding) and table.num_embeddings == result.kept < 200
    # an id never seen in the source reads the unknown token's row, exactly as the unknown token itself does
    unknown = loaded.tokenizer.unk_token_id
    unseen = next(i for i in range(3000, 4000) if int(table.vocab_map[i]) == int(table.vocab_map[unknown]))
    original = loaded.model.get_input_embeddings().weight
    assert torch.equal(table(torch.tensor([unseen])), original[unknown].unsqueeze(0))
    swapped = {**batch, "input_ids": batch["input_ids"].clone()}
    swapped["input_ids"][:, 1] = unseen
    as_unknown = {**batch, "input_ids": batch["input_ids"].clone()}
    as_unknown["input_ids"][:, 1] = unknown
    assert torch.equal(_logits(trimmed, swapped), _logits(loaded, as_unknown))
    assert not torch.equal(_logits(trimmed, swapped), _logits(loaded, swapped))


def test_exact_parameter_counts_and_bytes_survive_save_and_load(sentences, tmp_path):
    loaded = load_model("shape:bert-tiny")
    result = trim_vocabulary(loaded, sentences, top_k=10)
    hidden, vocab = loaded.model.config.hidden_size, loaded.model.config.vocab_size
    specials = len(set(loaded.tokenizer.all_special_ids))
    assert result.kept == specials + 10
    assert result.parameters == result.parameters_before - (vocab - result.kept) * hidden
    assert result.parameters == sum(p.numel() for p in result.loaded.model.parameters())
    assert result.weight_bytes == 4 * result.parameters + 4 * vocab  # fp32 rows + the int32 id lookup
    cost = CostModel.for_model(result.loaded)
    full = Masks.full(loaded.dims)
    assert cost.parameters(full) == result.parameters
    assert cost.relative_parameters(full) == pytest.approx(result.parameters / result.parameters_before)
    path = save_pruned(result.loaded, tmp_path / "trimmed", {"model": "shape:bert-tiny"})
    again = load_model(path)
    assert again.structure is None and again.vocab == result.loaded.vocab
    assert sum(p.numel() for p in again.model.parameters()) == result.parameters
    batch = verification_batch(loaded)
    assert torch.equal(_logits(again, batch), _logits(result.loaded, batch))
    subject = subject_from_loaded("t", again)
    assert not subject.pruned and subject.parameters == result.parameters
    assert build_variant(again, VARIANTS["fp32"]).weight_bytes == 4 * result.parameters + 4 * vocab


def test_trimming_composes_with_pruning_and_every_quantized_variant(sentences):
    loaded = load_model("shape:bert-tiny")
    pruned = extract(loaded, get_space("medium", loaded.dims).masks(UNEVEN))
    both = trim_vocabulary(pruned, sentences).loaded
    assert both.structure == pruned.structure and both.vocab is not None
    batch = verification_batch(loaded)
    reference = _logits(pruned, batch)
    assert torch.equal(_logits(both, batch), reference)
    for name in ("fp32", "dynamic-int8", "int8", "nf4", "onnx-fp32", "onnx-int8"):
        spec = VARIANTS[name]
        if spec.is_onnx:
            pytest.importorskip("onnxruntime")
        built = build_variant(both, spec, "cpu")
        assert (_logits(built, batch) - reference).abs().max() < 0.05, name
        untrimmed = build_variant(pruned, spec, "cpu")
        assert built.weight_bytes < untrimmed.weight_bytes, name


def test_extract_cli_trims_a_pruned_model_from_a_run_and_reports_the_unseen_share(
    tiny_run, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "pruned"
    config = json.dumps({"num_layers": 1, "num_heads": 2, "num_units": 64})
    args = ["extract", "--model", "shape:bert-tiny", "--space", "small", "--config", config, "--out", str(out)]
    code, stdout, err = run_cli([*args, "--trim-vocab", str(tiny_run), "--verify"], monkeypatch, capsys)
    assert code == 0, err
    summary = json.loads((out / "trim.json").read_text())
    assert 0 < summary["test_unseen_token_share"] < 0.5 and "training split of run" in summary["source"]
    assert "test-split tokens outside it" in stdout and "vocabulary trimmed to" in stdout
    loaded = load_model(out)
    assert loaded.structure is not None and loaded.vocab.kept == summary["kept_tokens"]
    assert sum(p.numel() for p in loaded.model.parameters()) == summary["parameters"]
    # trimming it again is refused in one line: never a silent double remap
    line = _error(["extract", "--model", str(out), "--space", "small", "--trim-vocab", str(tiny_run), "--out",
                   str(tmp_path / "again")], monkeypatch, capsys)  # fmt: skip
    assert "already" in line and not (tmp_path / "again").exists()


def test_trim_vocab_alone_trims_the_unpruned_model(sentences, tmp_path, monkeypatch, capsys):
    out = tmp_path / "trimmed"
    args = ["extract", "--model", "shape:roberta-tiny", "--space", "small", "--trim-vocab", str(sentences)]
    code, _, err = run_cli([*args, "--verify", "--out", str(out)], monkeypatch, capsys)
    assert code == 0, err
    loaded = load_model(out)
    assert loaded.structure is None and loaded.vocab.source_vocab_size == 50265


def test_bad_trim_sources_are_one_line_before_anything_is_written(tmp_path, monkeypatch, capsys):
    base = ["extract", "--model", "shape:bert-tiny", "--space", "small", "--out", str(tmp_path / "o")]
    line = _error([*base, "--trim-vocab", str(tmp_path / "missing.txt")], monkeypatch, capsys)
    assert "--trim-vocab" in line and "does not exist" in line
    (tmp_path / "notes.docx").write_text("x")
    line = _error([*base, "--trim-vocab", str(tmp_path / "notes.docx")], monkeypatch, capsys)
    assert ".txt" in line and ".csv" in line
    line = _error([*base, "--trim-vocab", str(tmp_path)], monkeypatch, capsys)
    assert "not a run" in line
    (tmp_path / "empty.txt").write_text("\n \n")
    line = _error([*base, "--trim-vocab", str(tmp_path / "empty.txt")], monkeypatch, capsys)
    assert "no text" in line
    line = _error([*base, "--trim-top-k", "5"], monkeypatch, capsys)
    assert "--trim-top-k needs --trim-vocab" in line
    assert not (tmp_path / "o").exists()


def test_a_bad_trim_path_is_refused_before_torch_is_imported(tmp_path):
    code = (
        "import sys\nfrom prunebench.cli import main\n"
        f"sys.argv = ['prunebench', 'extract', '--space', 'small', '--out', {str(tmp_path / 'o')!r}, "
        f"'--trim-vocab', {str(tmp_path / 'nope.csv')!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False False", done.stdout + done.stderr
    assert "does not exist" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_counts_come_from_the_runs_training_split(tiny_run):
    loaded = load_model("shape:bert-tiny")
    found = token_counts(tiny_run, loaded)
    assert found.test_ids and sum(found.counts.values()) > 1000


def test_a_runs_trimmed_models_are_profiled_scored_and_compared_as_their_own_kinds(tiny_run, tmp_path):
    import shutil

    from prunebench.config import CompareConfig, ProfileConfig, TimingConfig
    from prunebench.extract.vocab import trim_run
    from prunebench.profiling import profile_run, run_subjects
    from prunebench.report.compare import compare_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    trimmed = trim_run(run)
    labels = {s.label for s in run_subjects(run)}
    assert {t.label for t in trimmed} <= labels and "full+vocab" in labels
    stamps = {t.label: (t.path / "model.safetensors").stat().st_mtime_ns for t in trim_run(run)}
    assert stamps == {t.label: (t.path / "model.safetensors").stat().st_mtime_ns for t in trimmed}  # kept, not redone
    # a Pareto model written again (new weights under the same label): its old trim is stale, left out, redone
    pareto = next(t for t in trimmed if t.label != "full+vocab")
    weights = run / pareto.summary["source_path"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes())
    assert pareto.label not in {s.label for s in run_subjects(run)}
    again = {t.label: t for t in trim_run(run)}
    assert again[pareto.label].summary["source_stamp"] != pareto.summary["source_stamp"]
    assert pareto.label in {s.label for s in run_subjects(run)}
    settings = ProfileConfig(
        variants=("fp32", "dynamic-int8"), batch_sizes=(1,), seq_lens=(16,), timing=TimingConfig(max_seconds=0.05),
        score_max_examples=48,
    )  # fmt: skip
    result = profile_run(run, settings, show_progress=False)
    table = result.table.set_index(["model", "variant"])
    assert table.loc[("full+vocab", "fp32"), "vocab_kept"] == trimmed[0].summary["kept_tokens"]
    assert table.loc[("full+vocab", "fp32"), "weight_bytes"] < table.loc[("full", "fp32"), "weight_bytes"]
    assert pd.isna(table.loc[("full", "fp32"), "vocab_kept"])
    scores = result.scores.set_index(["model", "variant"])
    assert scores.loc[("full+vocab", "fp32"), "status"] == "ok"  # the test error after trimming, beside before
    kinds = compare_run(run, CompareConfig(memory_budgets=("50%",))).options.set_index("option")["kind"]
    assert kinds["full+vocab fp32"] == "trim" and kinds["full+vocab dynamic-int8"] == "trim_quantize"
    assert {kinds[o] for o in kinds.index if "/" in o and o.endswith("+vocab fp32")} == {"trim_prune"}
