"""What gets profiled: models named on the command line or passed in memory, with their exact counts.

A subject is one fp32 model (un-pruned, or pruned by extraction) plus the sub-network it is
of its source model (``Masks``), so parameter and MAC counts come from ``CostModel`` and
compare across pruned and un-pruned models.

Accepted: ``minilm`` / ``shape:NAME`` / a Hugging Face model directory (the full model), a
pruned model directory written by ``prunebench extract``, or a folder of such directories
(``prunebench extract --random N`` output), or a run directory (``run.json``): its fine-tuned
checkpoint as ``full`` and every Pareto model exported into it (``prunebench extract-pareto``,
``RUN/search/NAME/models/index.parquet``) as ``NAME/LABEL``, e.g. ``morea-seed0/p03``.

Each subject has a ``content_key``: a hash of what the model computes (its pruned structure,
config and weights), so the profile and score tables recognise a model by what it is, not by
where it lies or what it is called (``content_key``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from prunebench.errors import PrunebenchError
from prunebench.models import LoadedModel, load_model
from prunebench.models.pruned import is_pruned_dir
from prunebench.rundir import CHECKPOINT_DIR, RUN_FILE, read_run, recover_dir
from prunebench.supernet import CostModel, Masks


@dataclass
class Subject:
    label: str  # unique within one profiling call: "full", a pruned directory's name, ...
    source: str  # what it was loaded from
    loaded: LoadedModel
    masks: Masks  # the sub-network of the source model that this model is
    cost: CostModel
    weights_stamp: tuple | None = None  # the weight files ``loaded`` was read from (``load_subject``)

    @cached_property
    def content_key(self) -> str:
        """What the model is: structure, config and weights hashed (``content_key``); computed once."""
        return content_key(self.loaded, self.weights_stamp)

    @property
    def pruned(self) -> bool:
        return self.loaded.structure is not None

    @property
    def parameters(self) -> int:
        return self.cost.parameters(self.masks)

    @property
    def relative_parameters(self) -> float:
        return self.cost.relative_parameters(self.masks)

    def macs(self, seq_len: int) -> int:
        return self.cost.macs(self.masks, seq_len)


def masks_of(loaded: LoadedModel) -> Masks:
    """The sub-network a model is: all ones for an un-pruned model, its kept heads/units for a pruned one."""
    dims = loaded.dims
    if loaded.structure is None:
        return Masks.full(dims)
    heads = torch.zeros(dims.num_layers, dims.num_heads)
    units = torch.zeros(dims.num_layers, dims.intermediate_size)
    layers = torch.zeros(dims.num_layers, dtype=torch.bool)
    for kept in loaded.structure.layers:
        layers[kept.source_layer] = True
        heads[kept.source_layer, list(kept.heads)] = 1.0
        units[kept.source_layer, list(kept.units)] = 1.0
    return Masks(heads, units, layers)


def subject_from_loaded(label: str, loaded: LoadedModel) -> Subject:
    return Subject(label, loaded.source, loaded, masks_of(loaded), CostModel.for_model(loaded))


def load_subject(label: str, path: Path, **options) -> Subject:
    """``load_model(path)`` as a subject whose weights hash is cached by ``path``'s weight files (``content_key``)."""
    stamp = weights_stamp(path)
    subject = subject_from_loaded(label, load_model(path, **options))
    subject.weights_stamp = stamp
    return subject


# --- content keys -----------------------------------------------------------------------------

# Config entries that describe the file, not the computation (a model saved and reloaded keeps its key).
_CONFIG_METADATA = ("transformers_version", "architectures", "dtype", "torch_dtype")
_WEIGHT_FILES = ("*.safetensors", "*.bin")
_DIGESTS: dict[tuple, str] = {}  # weights hashes by weights_stamp, in this process (see content_key)


def structure_hash(loaded: LoadedModel) -> str | None:
    """A short hash of what a pruned model kept of its source (None: an un-pruned model)."""
    if loaded.structure is None:
        return None
    return hashlib.sha256(json.dumps(loaded.structure.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def weights_hash(loaded: LoadedModel) -> str:
    """sha256 over every tensor of the state dict in name order: name, dtype, shape and bytes.

    Hashed from memory rather than from the files, so an in-memory model and the same model on disk
    agree and nothing is read twice; about 0.08 s for MiniLM's 90 MB on one core (sha256 runs at
    memory speed here), so a run's models cost well under a second per profiling call.
    """
    digest = hashlib.sha256()
    state = loaded.model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def _config_text(loaded: LoadedModel) -> str:
    config = {
        k: v
        for k, v in loaded.model.config.to_dict().items()
        if not k.startswith("_") and k not in _CONFIG_METADATA  # _name_or_path is where it lies
    }
    return json.dumps(config, sort_keys=True, default=str)


def weights_stamp(path: Path) -> tuple | None:
    """A model directory's weight files as (directory, (name, size, mtime, inode) ...); None without any."""
    path = Path(path).resolve()
    files = sorted(f for pattern in _WEIGHT_FILES for f in path.glob(pattern)) if path.is_dir() else []
    if not files:
        return None
    stats = [(f.name, f.stat()) for f in files]
    return (str(path), *((name, st.st_size, st.st_mtime_ns, st.st_ino) for name, st in stats))


def content_key(loaded: LoadedModel, stamp: tuple | None = None) -> str:
    """The identity of a model for the profile and score tables: structure hash + config + weights hash.

    Two models with the same key compute the same thing, wherever they lie and whatever their
    label, so a moved or copied run keeps its measurements, and a label that now names another
    model (a new Pareto export reusing p00, p01, ...) is measured again.

    ``stamp``: ``weights_stamp`` of the directory, taken just before ``loaded`` was read from it.
    While the files still carry that stamp, the weights hash is kept for this process under it, so
    a run profiled and then scored (two loads) hashes each model once.
    """
    cache_key = None
    if stamp is not None and weights_stamp(stamp[0]) == stamp:  # not rewritten since it was loaded
        cache_key = (*stamp, loaded.task_kind, getattr(loaded.model.config, "num_labels", None))
    weights = _DIGESTS.get(cache_key) if cache_key is not None else None
    if weights is None:
        weights = weights_hash(loaded)
        if cache_key is not None:
            _DIGESTS[cache_key] = weights
    parts = [structure_hash(loaded), _config_text(loaded), weights]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def _pruned_children(path: Path) -> list[Path]:
    return sorted(child for child in path.iterdir() if child.is_dir() and is_pruned_dir(child))


def run_subjects(run_dir: Path) -> list[Subject]:
    """``prunebench profile RUN``: the fine-tuned checkpoint as ``full`` and the run's exported Pareto models.

    Each search's models come from its ``models/index.parquet`` (``export_pareto``), labelled
    ``NAME/LABEL``; a run with no exported models gives ``full`` alone.
    """
    from prunebench.search.export import read_exports  # search imports profiling: import it when needed

    run_dir = Path(run_dir)
    run = read_run(run_dir)
    task = run.get("task")
    if "train" not in run or not task:
        raise PrunebenchError(
            f"{run_dir} is not a super-network run (stage {run.get('stage', '?')!r}): it has no fine-tuned "
            "checkpoint to profile; profile its models by directory instead"
        )
    checkpoint = recover_dir(run_dir / CHECKPOINT_DIR)
    if not (checkpoint / "model.safetensors").is_file():
        raise PrunebenchError(
            f"{run_dir} has no checkpoint yet; run 'prunebench train --out {run_dir} --resume' until it writes one"
        )
    subjects = [load_subject("full", checkpoint, task_kind=task["kind"], num_labels=task.get("num_labels") or 2)]
    for search, index in read_exports(run_dir).items():
        for row in index.itertuples():
            path = run_dir / row.path
            if not is_pruned_dir(path):
                raise PrunebenchError(
                    f"{path} is listed in {search}'s models/index.parquet but is not a pruned model; "
                    f"export it again with 'prunebench extract-pareto {run_dir} --search {search} --overwrite'"
                )
            subjects.append(load_subject(f"{search}/{row.label}", path))
    return subjects


def is_run_dir(path: Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def resolve_subjects(model: str | None = None, model_dir: Path | None = None) -> list[Subject]:
    """Subjects for ``prunebench profile [MODEL_DIR] [--model M]``; both may be given (a model and its sub-networks)."""
    if model is None and model_dir is None:
        raise PrunebenchError("give a model directory or --model (minilm, shape:NAME or a directory)")
    subjects = []
    if model is not None:
        named = model == "minilm" or model.startswith("shape:")  # load_model tries these names first
        subjects.append(load_subject("full", model) if not named else subject_from_loaded("full", load_model(model)))
    if model_dir is not None:
        subjects += _directory_subjects(Path(model_dir))
    labels = [s.label for s in subjects]
    if len(set(labels)) != len(labels):
        raise PrunebenchError(f"two models would share a label in {labels}; rename one of the directories")
    return subjects


def _directory_subjects(path: Path) -> list[Subject]:
    if not path.is_dir():
        raise PrunebenchError(f"{path} is not a directory; pass a model directory or use --model")
    if (path / RUN_FILE).is_file():
        return run_subjects(path)
    if is_pruned_dir(path) or (path / "config.json").is_file():
        return [load_subject(path.name, path)]
    children = _pruned_children(path)
    if not children:
        raise PrunebenchError(
            f"{path} is not a model directory (no config.json or prunebench.json) and holds no pruned models; "
            "pass a Hugging Face model directory, a folder written by 'prunebench extract', or --model"
        )
    return [load_subject(child.name, child) for child in children]
