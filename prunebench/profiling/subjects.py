"""Which models a profiling call takes: named on the command line, found in folders, or a run's own.

Accepted: ``minilm`` / ``shape:NAME`` / a Hugging Face model directory (the full model), a
pruned model directory written by ``prunebench extract``, or a folder of such directories
(``prunebench extract --random N`` output), or a run directory: its fine-tuned checkpoint as
``full`` and every Pareto model exported into it (``prunebench extract-pareto``) as
``NAME/LABEL``, e.g. ``morea-seed0/p03``.
"""

from __future__ import annotations

import json
from pathlib import Path

from prunebench.errors import PrunebenchError
from prunebench.extract.vocab import TRIMMED_SUFFIX, trim_is_current
from prunebench.hardware.subject import Subject, load_subject, subject_from_loaded
from prunebench.models import load_model
from prunebench.models.pruned import is_pruned_dir
from prunebench.rundir import RunDir


def _pruned_children(path: Path) -> list[Path]:
    return sorted(child for child in path.iterdir() if child.is_dir() and is_pruned_dir(child))


def run_subjects(run_dir: Path) -> list[Subject]:
    """``prunebench profile RUN``: the fine-tuned checkpoint as ``full`` and the run's exported Pareto models.

    Each search's models come from its export index (``RunDir.exports``, written by ``export_pareto``),
    labelled ``NAME/LABEL``; a run with no exported models gives ``full`` alone.
    """
    run_dir = Path(run_dir)
    folder = RunDir(run_dir)
    run = folder.read()
    task = run.get("task")
    if "train" not in run or not task:
        raise PrunebenchError(
            f"{run_dir} is not a super-network run (stage {run.get('stage', '?')!r}): it has no fine-tuned "
            "checkpoint to profile; profile its models by directory instead"
        )
    if not folder.has_checkpoint():
        raise PrunebenchError(
            f"{run_dir} has no checkpoint yet; run 'prunebench train --out {run_dir} --resume' until it writes one"
        )
    kind, labels = task["kind"], task.get("num_labels") or 2
    subjects = [load_subject("full", folder.checkpoint, task_kind=kind, num_labels=labels)]
    for search, index in folder.exports().items():
        for row in index.itertuples():
            path = run_dir / row.path
            if not is_pruned_dir(path):
                raise PrunebenchError(
                    f"{path} is listed in {folder.search_dir(search).models.index} but is not a pruned model; "
                    f"export it again with 'prunebench extract-pareto {run_dir} --search {search} --overwrite'"
                )
            subjects.append(load_subject(f"{search}/{row.label}", path))
    subjects += _trimmed_subjects(folder, {s.label for s in subjects})
    return subjects


def _trimmed_subjects(folder: RunDir, labels: set[str]) -> list[Subject]:
    """The run's models with a trimmed vocabulary (``extract.vocab.trim_run``), as ``LABEL+vocab``; a trimmed
    model whose untrimmed model is no longer among the run's, or has other weights now (a new Pareto export),
    is left out until ``trim_run`` trims it again."""
    found = []
    root = folder.vocab_root
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        summary = path / "trim.json"
        if not (is_pruned_dir(path) and summary.is_file()):
            continue
        label = json.loads(summary.read_text()).get("label")
        if label in labels and trim_is_current(path, folder.path):
            found.append(load_subject(f"{label}{TRIMMED_SUFFIX}", path))
    return found


def is_run_dir(path: Path) -> bool:
    return RunDir(path).is_run()


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
    if is_run_dir(path):
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
