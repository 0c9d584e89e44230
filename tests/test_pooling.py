"""Mean pooling for sentence-transformers checkpoints: declared, applied, kept through extraction and saving."""

import json

import numpy as np
import pytest
import torch

from helpers import TINY_MODELS, token_batch
from prunebench.errors import PrunebenchError
from prunebench.extract import extract
from prunebench.models import load_model
from prunebench.models.pooling import apply_pooling, declared_pooling
from prunebench.models.pruned import save_pruned
from prunebench.supernet import MaskedSuperNetwork, get_space


def _mean_pooled(spec: str):
    loaded = load_model(spec)
    apply_pooling(loaded.model, loaded.adapter, "mean")
    return loaded


@pytest.mark.parametrize("spec", TINY_MODELS)
def test_mean_pooling_feeds_the_head_the_masked_token_mean(spec):
    loaded = _mean_pooled(spec)
    batch = token_batch(loaded)
    captured = {}
    loaded.model.base_model.register_forward_hook(lambda m, a, out: captured.update(h=out.last_hidden_state))
    with torch.no_grad():
        logits = loaded.model(**batch).logits
        weights = batch["attention_mask"].unsqueeze(-1).float()
        mean = (captured["h"] * weights).sum(1) / weights.sum(1)
        reader = loaded.adapter.first_token_reader(loaded.model)
        head_input = reader(mean.unsqueeze(1))  # one token: its mean is itself
        expected = head_input if reader is loaded.model.classifier else loaded.model.classifier(head_input)
    assert torch.allclose(logits, expected, atol=1e-6)
    first_token = load_model(spec)  # same seed and weights, first-token pooling
    with torch.no_grad():
        assert not torch.allclose(first_token.model(**batch).logits, logits)


@pytest.mark.parametrize("spec", TINY_MODELS)
def test_extraction_and_saving_keep_mean_pooling(spec, tmp_path):
    loaded = _mean_pooled(spec)
    space, supernet, batch = get_space("medium", loaded.dims), MaskedSuperNetwork(loaded), token_batch(loaded)
    rng = np.random.default_rng(0)
    for config in [space.middle(), space.smallest(), *(space.sample(rng) for _ in range(5))]:
        masks = space.masks(config)
        with supernet.masked(masks), torch.no_grad():
            masked = loaded.model(**batch).logits
        pruned = extract(loaded, masks)
        with torch.no_grad():
            assert (pruned.model(**batch).logits - masked).abs().max() <= 1e-5
    reloaded = load_model(save_pruned(pruned, tmp_path / "p", {"config": config}))
    assert reloaded.model.config.prunebench_pooling == "mean"
    with torch.no_grad():
        assert torch.equal(reloaded.model(**batch).logits, pruned.model(**batch).logits)


def test_declared_pooling_follows_the_sentence_transformers_config(tmp_path):
    assert declared_pooling(tmp_path) == "cls"
    (tmp_path / "1_Pooling").mkdir()
    config = {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(config))
    assert declared_pooling(tmp_path) == "mean"
    with pytest.raises(PrunebenchError, match="unknown pooling 'max'"):
        apply_pooling(load_model("shape:bert-tiny").model, load_model("shape:bert-tiny").adapter, "max")


@pytest.mark.integration
def test_minilm_uses_its_declared_mean_pooling(minilm):
    assert minilm.model.config.prunebench_pooling == "mean"
