"""Extracted sub-networks compute exactly what the masked super-network computes, and counts are exact."""

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from helpers import token_batch
from prunebench.errors import PrunebenchError
from prunebench.extract import extract
from prunebench.models import load_model
from prunebench.supernet import SPACES, CostModel, MaskedSuperNetwork, get_space

TOLERANCE = 1e-5


def _outputs(model, batch):
    """Logits and the encoder's last hidden state (O(1) values, unlike a fresh head's tiny logits)."""
    captured = {}
    hook = model.base_model.register_forward_hook(lambda m, a, out: captured.update(hidden=out.last_hidden_state))
    with torch.no_grad():
        logits = model(**batch).logits
    hook.remove()
    return logits, captured["hidden"]


def _configs(space, count, seed):
    rng = np.random.default_rng(seed)
    return [space.largest(), space.smallest(), space.middle()] + [space.sample(rng) for _ in range(count)]


@pytest.mark.parametrize("space_name", list(SPACES))
def test_extracted_equals_masked_on_tiny_models(tiny, space_name):
    space = get_space(space_name, tiny.dims)
    supernet, cost = MaskedSuperNetwork(tiny), CostModel.for_model(tiny)
    batch = token_batch(tiny)
    _, full_hidden = _outputs(tiny.model, batch)
    for config in _configs(space, 50, seed=len(space_name)):
        masks = space.masks(config)
        with supernet.masked(masks):
            masked_logits, masked_hidden = _outputs(tiny.model, batch)
        pruned = extract(tiny, masks)
        logits, hidden = _outputs(pruned.model, batch)
        assert (logits - masked_logits).abs().max() <= TOLERANCE, config
        assert (hidden - masked_hidden).abs().max() <= TOLERANCE, config
        assert sum(p.numel() for p in pruned.model.parameters()) == cost.parameters(masks)
        # masking really takes effect: every smaller sub-network computes something else
        assert masks.is_full == torch.equal(masked_hidden, full_hidden), config


def test_reset_restores_the_full_network(tiny):
    batch = token_batch(tiny)
    before, _ = _outputs(tiny.model, batch)
    supernet = MaskedSuperNetwork(tiny)
    space = get_space("small", tiny.dims)
    supernet.apply(space.masks(space.smallest()))
    masked, _ = _outputs(tiny.model, batch)
    supernet.reset()
    after, _ = _outputs(tiny.model, batch)
    assert not torch.allclose(before, masked)
    assert torch.equal(before, after)


def test_masks_work_in_training(tiny):
    """Gradients reach only the kept heads, units and layers."""
    supernet = MaskedSuperNetwork(tiny)
    tiny.model.train()
    masks = get_space("small", tiny.dims).masks({"num_layers": 1, "num_heads": 2, "num_units": 100})
    supernet.apply(masks)
    labels = torch.tensor([0, 1, 1])
    tiny.model(**token_batch(tiny), labels=labels).loss.backward()
    layers = tiny.adapter.encoder_layers(tiny.model)
    parts = tiny.adapter.layer_parts(layers[0])
    head_size = tiny.dims.head_size
    query_grad = parts.query.weight.grad.abs().sum(dim=1)
    assert query_grad[: 2 * head_size].min() > 0 and query_grad[2 * head_size :].max() == 0
    unit_grad = parts.intermediate_dense.weight.grad.abs().sum(dim=1)
    assert unit_grad[:100].min() > 0 and unit_grad[100:].max() == 0
    dropped = tiny.adapter.layer_parts(layers[1]).query.weight.grad
    assert dropped is None or dropped.abs().max() == 0


@pytest.mark.parametrize("task_kind", ["regression", "multiple_choice"])
def test_other_heads_extract_exactly(task_kind):
    loaded = load_model("shape:bert-tiny", task_kind=task_kind)
    space = get_space("medium", loaded.dims)
    supernet, batch = MaskedSuperNetwork(loaded), token_batch(loaded)
    for config in _configs(space, 5, seed=1):
        masks = space.masks(config)
        with supernet.masked(masks):
            masked, _ = _outputs(loaded.model, batch)
        logits, _ = _outputs(extract(loaded, masks).model, batch)
        assert logits.shape == masked.shape
        assert (logits - masked).abs().max() <= TOLERANCE


def test_macs_equal_the_extracted_models_matrix_products(tiny):
    tiny.model.config._attn_implementation = "eager"  # attention as plain matmuls the flop counter sees
    cost, space = CostModel.for_model(tiny), get_space("medium", tiny.dims)
    for config in _configs(space, 5, seed=3):
        masks = space.masks(config)
        pruned = extract(tiny, masks)
        batch = {k: v[:1] for k, v in token_batch(tiny, batch=1, length=24).items()}
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            pruned.model(**batch)
        assert counter.get_total_flops() == 2 * cost.macs(masks, seq_len=24)


def test_cost_model_relative_counts(tiny):
    cost, space = CostModel.for_model(tiny), get_space("small", tiny.dims)
    assert cost.relative_parameters(space.masks(space.largest())) == 1.0
    half = space.masks({"num_layers": 1, "num_heads": 4, "num_units": 256})
    assert cost.encoder_fraction(half) == pytest.approx(0.5)
    assert cost.parameters(half) == sum(p.numel() for p in tiny.model.parameters()) - cost.encoder_parameters(half)


@pytest.mark.parametrize("shape", ["bert-tiny", "minilm"])
def test_encoder_and_total_fractions_are_exact_against_the_extracted_model(shape):
    """The two counts the report names, counted on the saved model's own tensors: the encoder's (what pruning
    removes) and all of them (embeddings and head included)."""
    torch.manual_seed(0)
    loaded = load_model(f"shape:{shape}")
    cost, space = CostModel.for_model(loaded), get_space("medium", loaded.dims)

    def counts(model) -> tuple[int, int]:
        encoder = sum(p.numel() for p in model.adapter.encoder_layers(model.model).parameters())
        return encoder, sum(p.numel() for p in model.model.parameters())

    full_encoder, full_total = counts(loaded)
    assert cost.embedding_share == pytest.approx(1 - full_encoder / full_total)
    for config in _configs(space, 3, seed=5):
        masks = space.masks(config)
        encoder, total = counts(extract(loaded, masks))
        assert cost.encoder_fraction(masks) == encoder / full_encoder  # exact: the same integers divided
        assert cost.relative_parameters(masks) == total / full_total
    if shape == "minilm":  # all-MiniLM-L6-v2's shape: the embeddings are over half of its weights
        assert cost.embedding_share == pytest.approx(0.531, abs=0.001)


def test_extracting_a_pruned_model_is_refused(tiny):
    space = get_space("small", tiny.dims)
    pruned = extract(tiny, space.masks(space.middle()))
    with pytest.raises(PrunebenchError, match="already pruned"):
        extract(pruned, space.masks(space.middle()))


@pytest.mark.integration
@pytest.mark.parametrize("space_name", list(SPACES))
def test_extracted_equals_masked_on_real_minilm(minilm, space_name):
    space = get_space(space_name, minilm.dims)
    supernet, cost = MaskedSuperNetwork(minilm), CostModel.for_model(minilm)
    batch = token_batch(minilm, length=32)
    try:
        for config in _configs(space, 3, seed=7):
            masks = space.masks(config)
            with supernet.masked(masks):
                masked_logits, masked_hidden = _outputs(minilm.model, batch)
            pruned = extract(minilm, masks)
            logits, hidden = _outputs(pruned.model, batch)
            assert (logits - masked_logits).abs().max() <= TOLERANCE
            assert (hidden - masked_hidden).abs().max() <= TOLERANCE
            assert sum(p.numel() for p in pruned.model.parameters()) == cost.parameters(masks)
    finally:
        supernet.remove()
