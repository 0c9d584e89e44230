"""The on-disk format of a pruned model, and its loader.

A pruned model directory holds:

- ``config.json``: the family's Hugging Face config, ``num_hidden_layers`` = kept layers;
- ``model.safetensors``: the pruned weights;
- tokenizer files;
- ``prunebench.json``: ``{"format": "prunebench-pruned", "version": 1, "task_kind": ...,
  "structure": {"source_dims": {...}, "layers": [{"source_layer", "heads", "units"}, ...]},
  "provenance": {...}}``, where heads and units are indices in the model it was cut from
  and provenance records the source model, space and config; a model with a trimmed vocabulary
  (``models.vocab``) adds ``"vocab": {...}`` (``VocabTrim``), and when only its vocabulary was
  trimmed, ``"structure"`` is null.

Loading builds the family's model from ``config.json``, slices every layer to the
stored sizes and loads the weights strictly, so a wrong file fails loudly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoTokenizer

from prunebench.errors import PrunebenchError
from prunebench.models.adapters import adapter_for
from prunebench.models.dims import PrunedStructure
from prunebench.models.loaded import LoadedModel, quiet_transformers
from prunebench.models.pooling import apply_pooling
from prunebench.models.slicing import slice_layer
from prunebench.models.vocab import VocabTrim, empty_trimmed_table
from prunebench.rundir import (
    PRUNED_FORMAT,
    PRUNED_META,
    PRUNED_VERSION,
    check_output,
    real_path,
    remove_stale_staging,
    staging_path,
)

META_FILE = PRUNED_META
WEIGHTS_FILE = "model.safetensors"
FORMAT = PRUNED_FORMAT
VERSION = PRUNED_VERSION


def is_pruned_dir(path: Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def read_structure(path: Path) -> PrunedStructure | None:
    """What a pruned model directory kept of its source model, or None when it is not a readable pruned model."""
    try:
        structure = json.loads((Path(path) / META_FILE).read_text())["structure"]
        return PrunedStructure.from_dict(structure) if structure is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_pruned(loaded: LoadedModel, out_dir: Path, provenance: dict, overwrite: bool = False) -> Path:
    """Write ``loaded`` (a pruned model) to ``out_dir`` atomically: a failed write leaves any old one intact."""
    if loaded.structure is None and loaded.vocab is None:
        raise ValueError("save_pruned needs a model produced by extraction or vocabulary trimming")
    out_dir = Path(out_dir)
    check_output(out_dir, overwrite)
    out_dir = real_path(out_dir)  # a link to a folder is written through, on the target's disk
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_dir)  # left by a killed writer
    staging = staging_path(out_dir)
    staging.mkdir()
    try:
        loaded.model.config.save_pretrained(staging)
        state = {name: tensor.contiguous() for name, tensor in loaded.model.state_dict().items()}
        save_file(state, staging / WEIGHTS_FILE, metadata={"format": "pt"})
        loaded.tokenizer.save_pretrained(staging)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "task_kind": loaded.task_kind,
            "structure": loaded.structure.to_dict() if loaded.structure is not None else None,
            "provenance": provenance,
        }
        if loaded.vocab is not None:
            meta["vocab"] = loaded.vocab.to_dict()
        (staging / META_FILE).write_text(json.dumps(meta, indent=2))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out_dir.exists():
        retired = staging_path(out_dir)  # another unique hidden name, for the old version
        out_dir.rename(retired)
        staging.rename(out_dir)
        shutil.rmtree(retired) if retired.is_dir() else retired.unlink()
    else:
        staging.rename(out_dir)
    return out_dir


def load_pruned(path: Path) -> LoadedModel:
    path = Path(path)
    try:
        meta = json.loads((path / META_FILE).read_text())
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"format {meta.get('format')!r} version {meta.get('version')!r}")
        structure = PrunedStructure.from_dict(meta["structure"]) if meta["structure"] is not None else None
        vocab = VocabTrim.from_dict(meta["vocab"]) if meta.get("vocab") is not None else None
        if structure is None and vocab is None:
            raise ValueError("neither a pruned structure nor a trimmed vocabulary")
        task_kind = meta["task_kind"]
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PrunebenchError(
            f"{path} is not a readable prunebench pruned model ({error}); re-run 'prunebench extract'"
        ) from None
    if structure is not None and config.num_hidden_layers != len(structure.layers):
        raise PrunebenchError(
            f"{path}: config.json has {config.num_hidden_layers} layers but {META_FILE} lists "
            f"{len(structure.layers)}; the directory is mixed up, re-run 'prunebench extract'"
        )
    adapter = adapter_for(config)
    with quiet_transformers():
        model = adapter.model_class(task_kind)(config)
    for layer, kept in zip(adapter.encoder_layers(model), structure.layers if structure else (), strict=False):
        slice_layer(adapter, layer, list(range(len(kept.heads))), list(range(len(kept.units))))
    if vocab is not None:
        empty_trimmed_table(model, vocab)
    try:
        state = load_file(path / WEIGHTS_FILE)
        model.load_state_dict(state, strict=True)
    except (OSError, SafetensorError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PrunebenchError(
            f"weights in {path / WEIGHTS_FILE} are corrupt or do not match {META_FILE} ({first_line}); "
            "re-run 'prunebench extract'"
        ) from None
    apply_pooling(model, adapter)  # as recorded in config.json
    tokenizer = AutoTokenizer.from_pretrained(path)
    return LoadedModel(model.eval(), tokenizer, adapter, str(path), task_kind, structure, vocab)
