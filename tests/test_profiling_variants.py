"""Model variants: exact weight bytes, the head kept in floating point, the same model as transformers' loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers import BitsAndBytesConfig

from helpers import TINY_MODELS, token_batch
from prunebench.extract import extract
from prunebench.hardware.subject import subject_from_loaded
from prunebench.hardware.variants import (
    VARIANTS,
    VariantSkipped,
    analytic_weight_bytes,
    build_variant,
    plan_linears,
    quiet_bitsandbytes,
    static_skip_reason,
)
from prunebench.models import load_model
from prunebench.supernet import get_space


def _pruned(loaded, seed: int = 3):
    space = get_space("medium", loaded.dims)
    return extract(loaded, space.masks(space.sample(np.random.default_rng(seed))))


def _logits(model, inputs) -> torch.Tensor:
    with torch.no_grad(), quiet_bitsandbytes():
        return model(**inputs).logits.float()


def test_every_variant_builds_on_cpu_with_exact_weight_bytes(tiny):
    for loaded in (tiny, _pruned(tiny)):
        parameters = subject_from_loaded("m", loaded).parameters  # CostModel's exact count
        inputs = token_batch(loaded)
        reference = _logits(loaded.model, inputs)
        sizes = {}
        for spec in VARIANTS.values():
            built = build_variant(loaded, spec, "cpu")
            if not spec.is_onnx:  # ONNX: the export's initializers (tests/test_onnx_variants.py)
                assert built.weight_bytes == analytic_weight_bytes(loaded, spec, "cpu"), spec.name
            sizes[spec.name] = built.weight_bytes
            logits = _logits(built.model, inputs)
            assert logits.shape == reference.shape and torch.isfinite(logits).all()
            # the same model, approximately (ONNX Runtime's int8 also quantizes the embeddings, per tensor)
            assert (logits - reference).abs().max() < (0.1 if spec.is_onnx else 0.05), spec.name
        assert sizes["fp32"] == 4 * parameters
        assert sizes["fp16"] == sizes["bf16"] == 2 * parameters
        # the tiny models are mostly embeddings (kept in fp32): quantization only shrinks the linears
        assert sizes["nf4"] == sizes["fp4"] < sizes["int8"] < sizes["fp32"]
        assert sizes["dynamic-int8"] < sizes["fp32"]


def test_quantization_leaves_the_source_model_untouched(tiny):
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    build_variant(tiny, VARIANTS["nf4"])
    build_variant(tiny, VARIANTS["int8"])
    after = tiny.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(type(m) is not nn.Module for m in tiny.model.modules())


def test_heads_stay_in_floating_point_per_family():
    for spec_name, head in (
        ("shape:bert-tiny", ["classifier"]),
        ("shape:roberta-tiny", ["classifier.dense", "classifier.out_proj"]),
    ):
        loaded = load_model(spec_name)
        for variant in ("int8", "nf4", "fp4", "dynamic-int8"):
            built = build_variant(loaded, VARIANTS[variant])
            assert sorted(built.plan.kept) == head
            for name in head:
                assert type(built.model.get_submodule(name)) is nn.Linear
            encoder_linear = built.plan.quantized[0]
            assert type(built.model.get_submodule(encoder_linear)) is not nn.Linear


def test_pruned_odd_widths_are_still_quantized_on_cpu():
    loaded = _pruned(load_model("shape:bert-tiny"))
    plan = plan_linears(loaded, VARIANTS["nf4"], "cpu")
    assert plan.quantized and set(plan.unpacked) <= set(plan.quantized)
    widths = {loaded.model.get_submodule(n).out_features for n in plan.quantized}
    assert any(width % 32 for width in widths)  # the sample has an FFN block of odd width


@pytest.mark.parametrize("variant", ["int8", "nf4"])
def test_same_model_as_transformers_bitsandbytes_loader(tmp_path, variant):
    """Swapping modules gives what from_pretrained(quantization_config=...) gives, on an un-pruned model."""
    loaded = load_model("shape:bert-tiny")
    loaded.model.save_pretrained(tmp_path)
    if variant == "int8":
        config = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["classifier"])
    else:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", llm_int8_skip_modules=["classifier"])
    with quiet_bitsandbytes():
        reference = loaded.adapter.model_class("classification").from_pretrained(
            tmp_path, quantization_config=config, device_map={"": "cpu"}
        )
    built = build_variant(loaded, VARIANTS[variant])
    inputs = token_batch(loaded)
    assert torch.equal(_logits(built.model, inputs), _logits(reference, inputs))
    query = "bert.encoder.layer.0.attention.self.query"
    assert type(built.model.get_submodule(query)) is type(reference.get_submodule(query))


def test_unsupported_combinations_have_reasons():
    assert "compute capability >= 8.0" in static_skip_reason(VARIANTS["bf16"], "cuda", (7, 0))
    assert static_skip_reason(VARIANTS["bf16"], "cuda", (8, 0)) is None
    assert "CPU only" in static_skip_reason(VARIANTS["dynamic-int8"], "cuda", (9, 0))
    assert "6.0" in static_skip_reason(VARIANTS["nf4"], "cuda", (5, 2))
    assert static_skip_reason(VARIANTS["int8"], "cpu", None) is None
    assert "compute capability >= 7.5" in static_skip_reason(VARIANTS["int8"], "cuda", (7, 0))
    assert static_skip_reason(VARIANTS["int8"], "cuda", (7, 5)) is None
    assert static_skip_reason(VARIANTS["nf4"], "cuda", (7, 0)) is None  # 4-bit needs 6.0 only


def test_missing_bitsandbytes_is_a_skip_not_a_crash(monkeypatch):
    import prunebench.hardware.variants as variants

    monkeypatch.setattr(variants, "_bnb", lambda: None)
    loaded = load_model("shape:bert-tiny")
    with pytest.raises(VariantSkipped, match="bitsandbytes is not installed"):
        build_variant(loaded, VARIANTS["int8"])
    assert build_variant(loaded, VARIANTS["fp32"]).weight_bytes > 0


# Layer 0: 3 of 4 heads and 37 units; layer 1: no attention at all and 130 units. 37 and 130 are
# not multiples of 4, so LLM.int8 falls back to an fp32 matmul for both FFN output linears on CUDA.
UNEVEN = {"num_heads_0": 3, "num_units_0": 37, "num_heads_1": 0, "num_units_1": 130}


def _uneven(loaded):
    return extract(loaded, get_space("medium", loaded.dims).masks(UNEVEN))


@pytest.mark.parametrize("name", TINY_MODELS)
def test_layers_of_different_sizes_run_under_every_variant_with_padding_masked(name):
    pruned = _uneven(load_model(name))
    shapes = [(layer.heads, layer.units) for layer in pruned.structure.layers]
    assert len(shapes) == 2 and len(set(shapes)) == 2  # the two layers differ in size
    inputs = token_batch(pruned)  # row 0 is half padding
    padded = inputs["attention_mask"][0] == 0
    changed = {k: v.clone() for k, v in inputs.items()}
    changed["input_ids"][0, padded] = 1500  # other tokens where the mask says padding
    unmasked = {"attention_mask": torch.ones_like(inputs["attention_mask"])}
    reference = _logits(pruned.model, inputs)
    for spec in VARIANTS.values():  # every variant runs on CPU
        built = build_variant(pruned, spec, "cpu")
        floats = {p.dtype for p in built.model.parameters() if p.is_floating_point()}
        if spec.dtype is not None and not spec.is_onnx:  # an ONNX Runtime session holds no torch parameters
            assert floats == {spec.dtype}, spec.name  # weights (embeddings, LayerNorms, head) all cast
        logits = _logits(built.model, inputs)
        tolerance = 0.1 if spec.quantization == "onnx-dynamic-int8" else 0.02  # int8 embeddings there too
        assert torch.isfinite(logits).all() and (logits - reference).abs().max() < tolerance, spec.name
        if spec.quantization in ("torch-dynamic-int8", "onnx-dynamic-int8"):
            continue  # it scales activations per tensor, so padded tokens shift every row a little
        # the mask (int64 here; transformers turns it into the model's dtype) hides the padded tokens:
        # changing them changes nothing in row 0, while without the mask they do change it
        assert torch.equal(_logits(built.model, changed)[0], logits[0]), spec.name
        seen = _logits(built.model, {**changed, **unmasked})[0] - _logits(built.model, {**inputs, **unmasked})[0]
        assert seen.abs().max() > 0, spec.name


def test_int8_fallback_linears_are_recorded_from_shapes():
    pruned = _uneven(load_model("shape:bert-tiny"))
    model = pruned.model
    expected = ("bert.encoder.layer.0.output.dense", "bert.encoder.layer.1.output.dense")
    for device_kind in ("cpu", "cuda"):  # shapes only: the same figure on either device
        plan = plan_linears(pruned, VARIANTS["int8"], device_kind)
        assert plan.int8_fp32_fallback == expected
        weights = {name: model.get_submodule(name).weight.numel() for name in plan.quantized}
        assert plan.quantized_weight_elements == sum(weights.values())
        share = sum(weights[name] for name in expected) / sum(weights.values())
        assert plan.int8_fallback_weight_share == pytest.approx(share) and 0 < share < 1
    built = build_variant(pruned, VARIANTS["int8"], "cpu")
    assert any("2 of 9 LLM.int8 linears" in note and "fp32 matmul" in note for note in built.notes)
    assert plan_linears(pruned, VARIANTS["nf4"], "cpu").int8_fp32_fallback == ()
    unpruned = plan_linears(load_model("shape:bert-tiny"), VARIANTS["int8"], "cpu")
    assert unpruned.int8_fp32_fallback == () and unpruned.int8_fallback_weight_share == 0.0
    assert plan_linears(pruned, VARIANTS["fp16"], "cpu").int8_fallback_weight_share is None


def _fake_v100(monkeypatch):
    """torch answers as on a machine with one V100 (compute capability 7.0); nothing touches CUDA."""
    import prunebench.hardware.profiles as profiles
    from prunebench.hardware.profiles import DeviceReport, GpuDevice, detect_devices

    name = "Tesla V100-SXM2-16GB"
    gpu = GpuDevice(0, name, 16 * 2**30, (7, 0), "535.104", "nvml")
    report = DeviceReport((gpu,), detect_devices().cpu, None, True, "12.4")
    monkeypatch.setattr(profiles, "detect_devices", lambda: report)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))


def test_llm_int8_below_compute_capability_7_5_is_tried_apart_then_skipped(tmp_path, monkeypatch):
    from prunebench.hardware import variants

    _fake_v100(monkeypatch)
    # the int8 kernel is first run in a process of its own (variants.isolated_int8_probe); here it aborts
    monkeypatch.setattr(variants, "isolated_int8_probe", lambda index: "killed its process (SIGABRT)")
    with pytest.raises(VariantSkipped, match=r"compute capability 7.0, below the 7.5.*SIGABRT\); not measured"):
        build_variant(load_model("shape:bert-tiny"), VARIANTS["int8"], "cuda")
    from prunebench.profiling import profile_models

    frame = profile_models(["shape:bert-tiny"], tmp_path, target="v100", variants=["int8"], batch_sizes=(1, 8))
    assert (frame["status"] == "skipped").all() and (frame["mode"] == "measured").all()
    assert frame["reason"].str.contains("tried in a separate process first, killed its process").all()
    assert (frame["device"] == "Tesla V100-SXM2-16GB").all()
