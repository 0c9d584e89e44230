"""What gets profiled: models named on the command line or passed in memory, with their exact counts.

A subject is one fp32 model (un-pruned, or pruned by extraction) plus the sub-network it is
of its source model (``Masks``), so parameter and MAC counts come from ``CostModel`` and
compare across pruned and un-pruned models.

Accepted: ``minilm`` / ``shape:NAME`` / a Hugging Face model directory (the full model), a
pruned model directory written by ``prunebench extract``, or a folder of such directories
(``prunebench extract --random N`` output). A run directory (``run.json``) is recognised and
goes through ``run_subjects``, the hook where the run's Pareto models will be listed once
search and extraction write them into the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from prunebench.errors import PrunebenchError
from prunebench.models import LoadedModel, load_model
from prunebench.models.pruned import is_pruned_dir
from prunebench.rundir import RUN_FILE
from prunebench.supernet import CostModel, Masks


@dataclass
class Subject:
    label: str  # unique within one profiling call: "full", a pruned directory's name, ...
    source: str  # what it was loaded from
    loaded: LoadedModel
    masks: Masks  # the sub-network of the source model that this model is
    cost: CostModel

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


def _pruned_children(path: Path) -> list[Path]:
    return sorted(child for child in path.iterdir() if child.is_dir() and is_pruned_dir(child))


def run_subjects(run_dir: Path) -> list[Subject]:
    """Hook for ``prunebench profile RUN``: the run's Pareto models, once the run holds them.

    Search and extraction do not write into run directories yet; when they do, list the
    extracted Pareto models here (and the un-pruned fine-tuned checkpoint as ``full``).
    """
    raise PrunebenchError(
        f"{run_dir} is a training run; profiling a run's Pareto models comes with search and extraction. "
        "For now extract sub-networks with 'prunebench extract' and profile that folder"
    )


def resolve_subjects(model: str | None = None, model_dir: Path | None = None) -> list[Subject]:
    """Subjects for ``prunebench profile [MODEL_DIR] [--model M]``; both may be given (a model and its sub-networks)."""
    if model is None and model_dir is None:
        raise PrunebenchError("give a model directory or --model (minilm, shape:NAME or a directory)")
    subjects = []
    if model is not None:
        subjects.append(subject_from_loaded("full", load_model(model)))
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
        return [subject_from_loaded(path.name, load_model(path))]
    children = _pruned_children(path)
    if not children:
        raise PrunebenchError(
            f"{path} is not a model directory (no config.json or prunebench.json) and holds no pruned models; "
            "pass a Hugging Face model directory, a folder written by 'prunebench extract', or --model"
        )
    return [subject_from_loaded(child.name, load_model(child)) for child in children]
