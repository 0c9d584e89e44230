"""Saved pruned models reload exactly, in a fresh process; bad or existing targets are handled safely."""

import json
import subprocess
import sys

import pytest
import torch

from helpers import token_batch
from prunebench.errors import PrunebenchError
from prunebench.extract import extract
from prunebench.models import load_model
from prunebench.models.pruned import META_FILE, WEIGHTS_FILE, save_pruned
from prunebench.supernet import get_space

RELOAD_SCRIPT = """
import sys, torch
from prunebench.models import load_model
torch.set_num_threads(1)
loaded = load_model(sys.argv[1])
batch = torch.load(sys.argv[2])
with torch.no_grad():
    torch.save(loaded.model(**batch).logits, sys.argv[3])
"""


def _pruned(loaded, space_name="medium"):
    space = get_space(space_name, loaded.dims)
    config = space.middle()
    return extract(loaded, space.masks(config)), {"model": loaded.source, "space": space_name, "config": config}


def test_reload_in_a_fresh_process_gives_identical_logits(tiny, tmp_path):
    pruned, provenance = _pruned(tiny)
    path = save_pruned(pruned, tmp_path / "pruned", provenance)
    batch = token_batch(tiny)
    torch.save(batch, tmp_path / "batch.pt")
    subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, str(path), str(tmp_path / "batch.pt"), str(tmp_path / "out.pt")],
        check=True,
    )
    with torch.no_grad():
        expected = pruned.model(**batch).logits
    assert torch.equal(torch.load(tmp_path / "out.pt"), expected)


def test_reloaded_model_keeps_structure_and_provenance(tmp_path):
    loaded = load_model("shape:bert-tiny", task_kind="regression")
    pruned, provenance = _pruned(loaded, "layer")
    reloaded = load_model(save_pruned(pruned, tmp_path / "p", provenance))
    assert reloaded.structure == pruned.structure
    assert reloaded.task_kind == "regression"
    assert reloaded.dims == loaded.dims  # the sizes it was cut from
    assert json.loads((tmp_path / "p" / META_FILE).read_text())["provenance"]["space"] == "layer"


def test_existing_target_is_refused_and_left_untouched(tmp_path):
    loaded = load_model("shape:bert-tiny")
    pruned, provenance = _pruned(loaded)
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(PrunebenchError, match="--overwrite"):
        save_pruned(pruned, target, provenance)
    assert (target / "notes.txt").read_text() == "keep me"
    # --overwrite replaces only what prunebench wrote: a folder of someone else's files stays as it is
    with pytest.raises(PrunebenchError, match="did not write"):
        save_pruned(pruned, target, provenance, overwrite=True)
    assert (target / "notes.txt").read_text() == "keep me"
    model_dir = tmp_path / "model"
    save_pruned(pruned, model_dir, provenance)
    (model_dir / "notes.txt").write_text("a file of the user's, put into the export")
    with pytest.raises(PrunebenchError, match=r"also holds notes\.txt"):  # --overwrite never deletes it
        save_pruned(pruned, model_dir, provenance, overwrite=True)
    assert (model_dir / "notes.txt").is_file()
    (model_dir / "notes.txt").unlink()
    save_pruned(pruned, model_dir, provenance, overwrite=True)
    assert (model_dir / WEIGHTS_FILE).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "out"]  # no staging or retired folders left


def test_corrupt_weights_give_a_clear_error(tmp_path):
    pruned, provenance = _pruned(load_model("shape:bert-tiny"))
    path = save_pruned(pruned, tmp_path / "p", provenance)
    weights = path / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(PrunebenchError, match="corrupt or do not match.*re-run 'prunebench extract'"):
        load_model(path)


def test_mismatched_structure_gives_a_clear_error(tmp_path):
    pruned, provenance = _pruned(load_model("shape:bert-tiny"))
    path = save_pruned(pruned, tmp_path / "p", provenance)
    meta = json.loads((path / META_FILE).read_text())
    meta["structure"]["layers"][0]["units"] = meta["structure"]["layers"][0]["units"][:-1]
    (path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(PrunebenchError, match="do not match"):
        load_model(path)
    (path / META_FILE).write_text("{not json")
    with pytest.raises(PrunebenchError, match="not a readable prunebench pruned model"):
        load_model(path)


def test_model_argument_errors(tmp_path):
    with pytest.raises(PrunebenchError, match="shape:bert-tiny"):
        load_model("shape:bert-huge")
    with pytest.raises(PrunebenchError, match="not 'minilm', 'shape:NAME' or an existing model directory"):
        load_model(tmp_path / "missing")
    with pytest.raises(PrunebenchError, match="no config.json"):
        load_model(tmp_path)
    with pytest.raises(PrunebenchError, match="unknown task kind"):
        load_model("shape:bert-tiny", task_kind="ranking")
