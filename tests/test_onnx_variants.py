"""ONNX Runtime variants: export with dynamic axes and verification, pruned layers of different sizes, skipped rows,
onnx-int8 profiled, scored and compared as its own kind."""

from __future__ import annotations

import shutil

import pytest
import torch

from helpers import TINY_MODELS, token_batch
from prunebench.config import CompareConfig, ProfileConfig, TimingConfig
from prunebench.extract import VERIFY_TOLERANCE, extract, verification_batch
from prunebench.hardware import onnx as onnx_room
from prunebench.hardware.variants import VARIANTS, VariantSkipped, build_variant
from prunebench.models import load_model
from prunebench.profiling import profile_models, profile_run
from prunebench.report import write_report
from prunebench.report.compare import answer_budgets, compare_run, parse_budget
from prunebench.supernet import get_space

pytest.importorskip("onnxruntime")

UNEVEN = {"num_heads_0": 3, "num_units_0": 37, "num_heads_1": 0, "num_units_1": 130}  # two layers, different sizes


def _uneven(name: str):
    loaded = load_model(name)
    return extract(loaded, get_space("medium", loaded.dims).masks(UNEVEN))


@pytest.mark.parametrize("name", TINY_MODELS)
def test_export_verifies_against_pytorch_on_real_sentences_at_any_batch_and_length(name):
    for loaded in (load_model(name), _uneven(name)):
        assert onnx_room.verify_onnx(loaded) <= VERIFY_TOLERANCE
        built = build_variant(loaded, VARIANTS["onnx-fp32"], "cpu")
        assert "max |logit - PyTorch fp32|" in built.notes[0]
        # the axes are dynamic: other batch sizes and lengths than the exporter traced (2 x 8), padding included
        for batch, length in ((1, 5), (5, 33)):
            inputs = token_batch(loaded, batch=batch, length=length)
            with torch.no_grad():
                reference = loaded.model(**inputs).logits
            assert (built.model(**inputs).logits - reference).abs().max() <= VERIFY_TOLERANCE
        sentences = verification_batch(loaded)
        int8 = build_variant(loaded, VARIANTS["onnx-int8"], "cpu")
        with torch.no_grad():
            difference = (int8.model(**sentences).logits - loaded.model(**sentences).logits).abs().max()
        assert 0 < difference < 0.1  # quantized: close, not equal
        assert int8.weight_bytes < built.weight_bytes
        if loaded.structure is not None:
            assert built.weight_bytes < build_variant(load_model(name), VARIANTS["onnx-fp32"]).weight_bytes


def test_onnx_fp32_weight_bytes_are_the_exports_float_weights():
    loaded = load_model("shape:bert-tiny")
    built = build_variant(loaded, VARIANTS["onnx-fp32"], "cpu")
    parameters = sum(p.numel() for p in loaded.model.parameters())
    # the initializers: the weights the traced forward pass uses (the exporter may fold or drop a few)
    assert built.weight_bytes == onnx_room.initializer_bytes(onnx_room.onnx_model(loaded, "fp32"))
    assert 0.99 * 4 * parameters <= built.weight_bytes <= 4 * parameters + 4096


def test_missing_onnxruntime_is_a_skipped_row_naming_the_package(monkeypatch, tmp_path):
    real = onnx_room._importable
    monkeypatch.setattr(onnx_room, "_importable", lambda name: name != "onnxruntime" and real(name))
    with pytest.raises(VariantSkipped, match="onnxruntime not installed"):
        build_variant(load_model("shape:bert-tiny"), VARIANTS["onnx-int8"])
    frame = profile_models(
        ["shape:bert-tiny"], tmp_path / "p", variants=["fp32", "onnx-fp32", "onnx-int8"], batch_sizes=[1],
        seq_lens=[16], timing=TimingConfig(max_seconds=0.05),
    )  # fmt: skip
    onnx_rows = frame[frame["variant"].str.startswith("onnx")]
    assert len(onnx_rows) == 2 and (onnx_rows["status"] == "skipped").all()
    assert (
        onnx_rows["reason"].str.contains("pip install").all() and onnx_rows["reason"].str.contains("onnxruntime").all()
    )
    assert (frame.loc[frame["variant"] == "fp32", "status"] == "ok").all()


def test_a_model_the_exporter_refuses_is_skipped_with_the_exporters_reason(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise RuntimeError("Unsupported: ONNX export of operator foo\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    loaded = load_model("shape:roberta-tiny")  # a fresh model: no export of it is cached
    with pytest.raises(VariantSkipped, match="could not export the model: RuntimeError: Unsupported: ONNX export"):
        build_variant(loaded, VARIANTS["onnx-fp32"])
    frame = profile_models({"full": loaded}, tmp_path / "p", variants=["onnx-int8"], batch_sizes=[1], seq_lens=[8])
    assert frame["status"].tolist() == ["skipped"] and "operator foo" in frame["reason"].iloc[0]


def test_a_gpu_without_the_cuda_provider_is_skipped_with_the_reason(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    reason = onnx_room.skip_reason("cuda")
    assert "CUDAExecutionProvider" in reason and "onnxruntime-gpu" in reason
    assert onnx_room.skip_reason("cpu") is None
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert "not profiled yet" in onnx_room.skip_reason("cuda")  # its memory is outside torch's allocator


def test_onnx_int8_is_profiled_scored_and_compared_as_its_own_kind(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    settings = ProfileConfig(
        variants=("fp32", "dynamic-int8", "onnx-fp32", "onnx-int8"), batch_sizes=(1,), seq_lens=(16,),
        timing=TimingConfig(max_seconds=0.05), score_max_examples=48,
    )  # fmt: skip
    result = profile_run(run, settings, show_progress=False)
    table = result.table
    onnx_rows = table[table["variant"].isin(["onnx-fp32", "onnx-int8"])]
    assert len(onnx_rows) == 2 * table["model"].nunique()
    assert (onnx_rows["status"] == "ok").all(), onnx_rows["reason"].tolist()
    assert onnx_rows["latency_ratio"].notna().all() and (onnx_rows["memory_bytes"] >= onnx_rows["weight_bytes"]).all()
    full = table[table["model"] == "full"].set_index("variant")
    assert full.loc["onnx-int8", "weight_bytes"] < full.loc["onnx-fp32", "weight_bytes"]
    assert full.loc["onnx-int8", "quantization"] == "onnx-dynamic-int8"
    scores = result.scores.set_index(["model", "variant"])
    assert (scores["status"] == "ok").all(), scores["reason"].tolist()
    # fp32 in ONNX Runtime computes the same predictions as PyTorch fp32
    assert scores.loc[("full", "onnx-fp32"), "error"] == pytest.approx(scores.loc[("full", "fp32"), "error"], abs=1e-9)
    assert 0 <= scores.loc[("full", "onnx-int8"), "error"] <= 1
    comparison = compare_run(run, CompareConfig(latency_budgets=("100%",), memory_budgets=("100%",)))
    kinds = comparison.options.set_index("option")["kind"]
    assert kinds["full onnx-int8"] == kinds["full onnx-fp32"] == "onnx"
    pruned = [o for o in kinds.index if o.endswith("onnx-int8") and not o.startswith("full")]
    assert pruned and all(kinds[o] == "prune_onnx" for o in pruned)
    assert "onnx_option" in comparison.budgets.columns and "prune_onnx_option" in comparison.budgets.columns
    # the tiny run predicts at chance, so no option is an answer there; taken as useful, the answer names the new kinds
    useful = comparison.options.assign(chance=False)
    budget = parse_budget("1GB", "memory", None)
    answer = answer_budgets(useful, [budget])["answer"].iloc[0]
    assert "ONNX Runtime" in answer and "pruned + ONNX Runtime" in answer
    report = write_report([run], tmp_path / "report", formats=["html", "md"])
    markdown = report.markdown.read_text()
    assert "full onnx-int8" in markdown and "pruned + ONNX Runtime" in markdown  # the options table names the kind


def test_the_configs_onnx_names_are_the_onnx_runtime_variants():
    from prunebench.config import ONNX_VARIANT_NAMES

    assert ONNX_VARIANT_NAMES == tuple(name for name, spec in VARIANTS.items() if spec.is_onnx)
