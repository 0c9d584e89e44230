"""Model variants: exact weight bytes, the head kept in floating point, the same model as transformers' loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers import BitsAndBytesConfig

from helpers import token_batch
from prunebench.models import load_model
from prunebench.profiling.subjects import subject_from_loaded
from prunebench.profiling.variants import (
    VARIANTS,
    VariantSkipped,
    analytic_weight_bytes,
    build_variant,
    plan_linears,
    quiet_bitsandbytes,
    static_skip_reason,
    variant_notes,
)
from prunebench.supernet import extract, get_space


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
            assert built.weight_bytes == analytic_weight_bytes(loaded, spec, "cpu"), spec.name
            sizes[spec.name] = built.weight_bytes
            logits = _logits(built.model, inputs)
            assert logits.shape == reference.shape and torch.isfinite(logits).all()
            assert (logits - reference).abs().max() < 0.05, spec.name  # the same model, approximately
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
    assert "slow fallback" in variant_notes(VARIANTS["int8"], "cuda", (7, 0))[0]
    assert variant_notes(VARIANTS["int8"], "cuda", (7, 5)) == []


def test_missing_bitsandbytes_is_a_skip_not_a_crash(monkeypatch):
    import prunebench.profiling.variants as variants

    monkeypatch.setattr(variants, "_bnb", lambda: None)
    loaded = load_model("shape:bert-tiny")
    with pytest.raises(VariantSkipped, match="bitsandbytes is not installed"):
        build_variant(loaded, VARIANTS["int8"])
    assert build_variant(loaded, VARIANTS["fp32"]).weight_bytes > 0
