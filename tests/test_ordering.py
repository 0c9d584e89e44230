"""Importance-ordered super-networks: reordering is exact, the importance score finds what matters, and
training with ``order_by_importance`` orders, stores, resumes and extracts."""

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import GLUE_DATA, TINY_MODELS
from prunebench.errors import PrunebenchError
from prunebench.models import load_model
from prunebench.models.adapters import RobertaAdapter
from prunebench.supernet import get_space
from prunebench.supernet.importance import gradient_importance, importance_order, reorder
from prunebench.supernet.masking import MaskedSuperNetwork
from prunebench.tasks import get_task, make_collator


def _sentence_pairs(count: int = 12) -> pd.DataFrame:
    """Real RTE sentence pairs with their labels (the packaged GLUE sample)."""
    frame = pd.read_csv(GLUE_DATA / "RTE" / "train.tsv", sep="\t", quoting=3).head(count)
    frame["labels"] = (frame["label"] == "entailment").astype(int)
    return frame


def _inputs(loaded, frame: pd.DataFrame) -> dict:
    encoded = loaded.tokenizer(
        list(frame["sentence1"]), list(frame["sentence2"]), truncation=True, max_length=64, padding=True,
        return_tensors="pt", return_token_type_ids=loaded.adapter.uses_token_type_ids,
    )  # fmt: skip
    return dict(encoded)


def _logits(loaded, inputs: dict) -> torch.Tensor:
    loaded.model.eval()
    with torch.no_grad():
        return loaded.model(**inputs).logits


@pytest.mark.parametrize("shape", TINY_MODELS)
def test_reordering_leaves_the_logits_unchanged(shape):
    loaded = load_model(shape, task_kind="classification", num_labels=2, seed=0)
    inputs = _inputs(loaded, _sentence_pairs())
    dims = loaded.dims
    rng = np.random.default_rng(1)
    heads = np.stack([rng.permutation(dims.num_heads) for _ in range(dims.num_layers)])
    units = np.stack([rng.permutation(dims.intermediate_size) for _ in range(dims.num_layers)])
    space = get_space("small", dims)
    half = space.masks({"num_layers": dims.num_layers, "num_heads": 2, "num_units": dims.intermediate_size // 2})
    supernet = MaskedSuperNetwork(loaded)
    before, query = _logits(loaded, inputs), loaded.adapter.layer_parts(loaded.adapter.encoder_layers(loaded.model)[0])
    query_weight = query.query.weight
    with supernet.masked(half):
        half_before = _logits(loaded, inputs)
    reorder(loaded, heads, units)
    after = _logits(loaded, inputs)
    assert (after - before).abs().max().item() <= 1e-5
    assert query.query.weight is query_weight  # rewritten in place: an optimiser on the model keeps its tensors
    with supernet.masked(half):  # the first two heads and first half of units are other ones now
        assert (_logits(loaded, inputs) - half_before).abs().max().item() > 1e-4
    # and the weights moved as asked: the new first head of layer 0 is the old head heads[0][0]
    size = dims.head_size
    fresh = load_model(shape, task_kind="classification", num_labels=2, seed=0)
    old = fresh.adapter.layer_parts(fresh.adapter.encoder_layers(fresh.model)[0])
    moved = old.value.weight[heads[0][0] * size : (heads[0][0] + 1) * size]
    new_value = loaded.adapter.layer_parts(loaded.adapter.encoder_layers(loaded.model)[0]).value.weight
    assert torch.equal(new_value[:size], moved)


def _plant(loaded, layer_index: int, head: int, unit: int) -> None:
    """Make one head and one FFN unit of a layer carry (nearly) all of its output: the others' output
    columns shrink 100-fold, the planted ones' grow 5-fold."""
    parts = loaded.adapter.layer_parts(loaded.adapter.encoder_layers(loaded.model)[layer_index])
    size = loaded.dims.head_size
    with torch.no_grad():
        parts.attention_output.weight.mul_(0.01)
        parts.attention_output.weight[:, head * size : (head + 1) * size].mul_(500.0)
        parts.ffn_output.weight.mul_(0.01)
        parts.ffn_output.weight[:, unit].mul_(500.0)


def test_importance_ranks_a_planted_head_and_unit_first():
    loaded = load_model("shape:bert-tiny", task_kind="classification", num_labels=2, seed=0)
    planted = {0: (3, 200), 1: (1, 17)}  # layer -> (head, unit)
    for layer, (head, unit) in planted.items():
        _plant(loaded, layer, head, unit)
    frame = _sentence_pairs(24)
    spec = get_task("rte")
    collator = make_collator(spec, loaded.tokenizer)
    rows = []
    for _, row in frame.iterrows():
        encoded = loaded.tokenizer(row["sentence1"], row["sentence2"], truncation=True, max_length=64)
        rows.append({**encoded, "labels": int(row["labels"])})
    heads, units = gradient_importance(loaded, rows, collator, batch_size=8)
    head_order, unit_order = importance_order(heads), importance_order(units)
    assert [int(head_order[layer][0]) for layer in planted] == [head for head, _ in planted.values()]
    assert [int(unit_order[layer][0]) for layer in planted] == [unit for _, unit in planted.values()]
    # ordered, the planted head is the first one: the one every space keeps first
    value = loaded.adapter.layer_parts(loaded.adapter.encoder_layers(loaded.model)[0]).attention_output.weight
    planted_columns = value[:, 3 * loaded.dims.head_size : 4 * loaded.dims.head_size].clone()
    reorder(loaded, head_order, unit_order)
    assert torch.equal(value[:, : loaded.dims.head_size], planted_columns)


def test_a_family_that_cannot_reorder_is_refused(monkeypatch):
    loaded = load_model("shape:roberta-tiny", task_kind="classification", num_labels=2)
    monkeypatch.setattr(RobertaAdapter, "can_reorder", False)
    identity = np.tile(np.arange(loaded.dims.num_heads), (loaded.dims.num_layers, 1))
    units = np.tile(np.arange(loaded.dims.intermediate_size), (loaded.dims.num_layers, 1))
    with pytest.raises(PrunebenchError, match=r"model family \(roberta\) has no adapter for reordering") as error:
        reorder(loaded, identity, units)
    assert "\n" not in str(error.value)
