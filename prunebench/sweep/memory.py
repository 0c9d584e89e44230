"""The memory a sweep cell asks Ray for: an estimate from its model's sizes and its batches, not a measurement.

Ray admits a task onto a node only while the memory its tasks asked for fits; a cell that asks for nothing
can land beside others until the node swaps or its kernel kills one. The estimate is deliberately generous
where it is unsure (the process floor, the profile's copies) and is recorded beside the peak RSS each
attempt measured, so it can be checked. ``[resources] memory_gib`` overrides it.

    process floor (Python, torch, transformers, datasets, Ray's worker)         ~1 GiB
  + training: fp32 weights, gradients and Adam's two moments                    16 B x parameters
  + training activations of one batch (kept for the backward pass)              per layer, batch x length
  + search evaluation processes beyond the first: a floor and fp32 weights each
  + profiling: the full model and up to three quantized or exported copies      4 x 4 B x parameters
  + profiling activations of the largest batch x length it times
"""

from __future__ import annotations

import json
from pathlib import Path

from prunebench.config import PipelineConfig

GIB = 2**30
PROCESS_FLOOR = 1 * GIB  # measured: ~0.54 GiB after importing prunebench's pipeline; Ray's worker and data on top
TRAIN_STATE_BYTES = 16  # per parameter: fp32 weight, gradient, Adam's two moments
PROFILE_COPIES = 4  # the full fp32 model and up to three variants of it alive while profiling
ROUND = 64 * 2**20


def _sizes(model: str) -> dict:
    """The model's config: hidden size, layers, heads, FFN width, vocabulary, positions ({} when unreadable)."""
    if model.startswith("shape:"):
        from prunebench.models.shapes import shape_config

        try:
            return shape_config(model.split(":", 1)[1]).to_dict()
        except Exception:  # the cell reports an unknown shape itself, with the valid names
            return {}
    if model == "minilm":
        from prunebench.models.loading import minilm_path

        folder = minilm_path()
    else:
        folder = Path(model)
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def parameters(sizes: dict) -> int:
    """An encoder's parameter count from its config (embeddings, layers, pooler; the task head is negligible)."""
    h, layers = int(sizes.get("hidden_size", 768)), int(sizes.get("num_hidden_layers", 12))
    ffn = int(sizes.get("intermediate_size", 4 * h))
    embeddings = (int(sizes.get("vocab_size", 30522)) + int(sizes.get("max_position_embeddings", 512)) + 2) * h
    layer = 4 * (h * h + h) + 2 * h * ffn + ffn + h + 4 * h  # attention, FFN, two layer norms
    return embeddings + layers * layer + h * h + h


def _activations(sizes: dict, batch: int, length: int, backward: bool) -> int:
    """fp32 bytes of one forward pass's activations: every layer's when kept for backward, else about one."""
    h, layers = int(sizes.get("hidden_size", 768)), int(sizes.get("num_hidden_layers", 12))
    ffn, heads = int(sizes.get("intermediate_size", 4 * h)), int(sizes.get("num_attention_heads", 12))
    per_layer = batch * length * (10 * h + 2 * ffn + 2 * heads * length) * 4
    return per_layer * (layers if backward else 2)


def cell_memory(config: PipelineConfig) -> int:
    """Bytes of memory to ask Ray for one cell of ``config`` (see the module docstring)."""
    sizes = _sizes(config.train.model)
    weights = 4 * parameters(sizes)
    train = config.train
    training = TRAIN_STATE_BYTES * weights // 4 + _activations(sizes, train.batch_size, train.max_length, True)
    evaluation = config.search.evaluation
    if evaluation.device != "cpu":  # scored on a GPU: the host keeps a copy only
        extra_workers = 0
    else:
        extra_workers = max(0, evaluation.workers - 1) * (PROCESS_FLOOR + weights)
    profile = config.profile
    timed = _activations(sizes, max(profile.batch_sizes or (1,)), max(profile.seq_lens or (128,)), False)
    profiling = PROFILE_COPIES * weights + timed if profile.target == "cpu" else weights
    needed = PROCESS_FLOOR + max(training, profiling) + extra_workers
    return -(-needed // ROUND) * ROUND
