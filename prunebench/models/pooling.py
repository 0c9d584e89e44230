"""How the task head reads the sequence: the first token ("cls") or the masked mean of all tokens ("mean").

Hugging Face heads read the first token. Sentence-transformers checkpoints such as
all-MiniLM-L6-v2 were trained with mean pooling instead, and their first token in
lower layers carries almost no information about the input: sub-networks that drop
layers then give constant predictions and barely learn. Such models declare their
pooling in ``1_Pooling/config.json``; prunebench follows that declaration and
records the choice in the model config (``prunebench_pooling``), so checkpoints and
pruned models keep it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import PreTrainedModel

from prunebench.errors import PrunebenchError
from prunebench.models.adapters import FamilyAdapter

POOLING_MODES = ("cls", "mean")
CONFIG_KEY = "prunebench_pooling"


def declared_pooling(model_dir: Path | None) -> str:
    """The pooling a sentence-transformers directory declares; "cls" when it declares none."""
    path = Path(model_dir) / "1_Pooling" / "config.json" if model_dir else None
    if path is None or not path.is_file():
        return "cls"
    declared = json.loads(path.read_text())
    return "mean" if declared.get("pooling_mode_mean_tokens") and not declared.get("pooling_mode_cls_token") else "cls"


def apply_pooling(model: PreTrainedModel, adapter: FamilyAdapter, mode: str | None = None) -> str:
    """Make the head read ``mode`` pooling (default: what the config records); returns the mode."""
    mode = mode or getattr(model.config, CONFIG_KEY, None) or "cls"
    if mode not in POOLING_MODES:
        raise PrunebenchError(f"unknown pooling {mode!r}; use one of {', '.join(POOLING_MODES)}")
    setattr(model.config, CONFIG_KEY, mode)
    if mode == "cls":
        return mode
    state: dict[str, torch.Tensor | None] = {}

    def remember_mask(module, args, kwargs):
        state["mask"] = kwargs.get("attention_mask")

    def mean_as_first_token(module, args):
        hidden = args[0]
        mask = state.get("mask")
        if mask is None or mask.shape != hidden.shape[:2]:
            pooled = hidden.mean(dim=1)
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return (torch.cat([pooled.unsqueeze(1), hidden[:, 1:]], dim=1), *args[1:])

    model.base_model.register_forward_pre_hook(remember_mask, with_kwargs=True)
    adapter.first_token_reader(model).register_forward_pre_hook(mean_as_first_token)
    return mode
