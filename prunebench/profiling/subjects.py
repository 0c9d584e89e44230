"""What gets profiled: models named on the command line or passed in memory, with their exact counts.

A subject is one fp32 model (un-pruned, or pruned by extraction) plus the sub-network it is
of its source model (``Masks``), so parameter and MAC counts come from ``CostModel`` and
compare across pruned and un-pruned models.

Accepted: ``minilm`` / ``shape:NAME`` / a Hugging Face model directory (the full model), a
pruned model directory written by ``prunebench extract``, or a folder of such directories
(``prunebench extract --random N`` output), or a run directory (``run.json``): its fine-tuned
checkpoint as ``full`` and every Pareto model exported into it (``prunebench extract-pareto``,
``RUN/search/NAME/models/index.parquet``) as ``NAME/LABEL``, e.g. ``morea-seed0/p03``.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    full = load_model(checkpoint, task_kind=task["kind"], num_labels=task.get("num_labels") or 2)
    subjects = [subject_from_loaded("full", full)]
    for search, index in read_exports(run_dir).items():
        for row in index.itertuples():
            path = run_dir / row.path
            if not is_pruned_dir(path):
                raise PrunebenchError(
                    f"{path} is listed in {search}'s models/index.parquet but is not a pruned model; "
                    f"export it again with 'prunebench extract-pareto {run_dir} --search {search} --overwrite'"
                )
            subjects.append(subject_from_loaded(f"{search}/{row.label}", load_model(path)))
    return subjects


def is_run_dir(path: Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


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
